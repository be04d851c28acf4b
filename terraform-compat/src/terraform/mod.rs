//! `main.tf` (dcos-terraform modules, Terraform 0.11 or 0.12+ syntax) -> dcform definition.
//!
//! ```text
//! *.tf ──parse──> blocks + attributes (lines) ──collect──> variables, locals, module calls, provider
//!                                                                  │
//!      module calls ──modules::classify──> cluster / infrastructure / pool / install / support
//!                                                                  │
//!      inputs ──expr::Resolver (locals, "${}", constant functions; var.x kept)──> pools, provider, ssh
//!                                                                  │
//!                                        Definition (variables actually used) + Report (all the rest)
//! ```

pub(crate) mod expr;
mod modules;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::Expression;
use hcl::expr::{TemplateExpr, Traversal, TraversalOperator};

use crate::Conversion;
use crate::definition::{self, Definition, Pool, Role, Size, Variable, sanitize_name};
use crate::error::CompatError;
use crate::report::{Report, SourceKind};
use expr::Resolver;
use modules::ModKind;
pub(crate) use parse::too_deep;

/// Module arguments that are Terraform's own, not module inputs.
const META: &[&str] = &["source", "version", "providers", "depends_on"];

struct VarDecl {
    name: String,
    file: PathBuf,
    line: usize,
    type_expr: Option<String>,
    default: Option<Expression>,
    description: Option<String>,
}

struct ModuleCall {
    label: String,
    file: PathBuf,
    line: usize,
    source: String,
    version: Option<String>,
    kind: ModKind,
    attrs: Vec<parse::Attr>,
}

/// Converts one Terraform configuration: the `.tf` files of one folder (or one file).
pub fn convert(files: &[(PathBuf, String)]) -> Result<Conversion, CompatError> {
    convert_with_values(files, &[])
}

/// Converts a configuration with the variable values Terraform would read beside it
/// (`terraform.tfvars`, `*.auto.tfvars`, in that order): they become the variables' defaults, so the
/// definition plans what `terraform plan` would have.
///
/// # Errors
///
/// As [`convert`], for the value files too.
pub fn convert_with_values(
    files: &[(PathBuf, String)],
    values: &[(PathBuf, String)],
) -> Result<Conversion, CompatError> {
    let parsed: Vec<parse::TfFile> = files
        .iter()
        .map(|(p, t)| parse::parse(p, t))
        .collect::<Result<_, _>>()?;
    let value_files: Vec<parse::TfFile> = values
        .iter()
        .map(|(p, t)| parse::parse(p, t))
        .collect::<Result<_, _>>()?;
    let mut report = Report::new(
        files.iter().chain(values).map(|(p, _)| p.clone()).collect(),
        SourceKind::Terraform,
    );

    let mut vars: Vec<VarDecl> = Vec::new();
    let mut locals: BTreeMap<String, Expression> = BTreeMap::new();
    let mut modules: Vec<ModuleCall> = Vec::new();
    let mut aws_providers: Vec<(PathBuf, parse::Blk)> = Vec::new();
    for f in &parsed {
        for a in &f.attrs {
            report.drop_input(
                &a.key,
                &f.path,
                a.line,
                "a top-level attribute (a variable value?): pass values to dcform with -var or *.auto.hcl",
            );
        }
        for b in &f.blocks {
            match b.ident.as_str() {
                "variable" => vars.push(var_decl(&f.path, b, &mut report)),
                "locals" => {
                    for a in &b.attrs {
                        locals.insert(a.key.clone(), a.value.clone());
                    }
                }
                "module" => modules.push(module_call(&f.path, b)?),
                "provider" if b.label(0) == "aws" => aws_providers.push((f.path.clone(), b.clone())),
                "provider" => report.drop_input(
                    format!("provider.{}", b.label(0)),
                    &f.path,
                    b.line,
                    "a Terraform provider dcform does not use",
                ),
                "output" => report.drop_input(
                    format!("output.{}", b.label(0)),
                    &f.path,
                    b.line,
                    "outputs are not converted: after apply, `dcform output` has master_url, masters-ips, private-agents-ips, public-agents-ips and cluster-address",
                ),
                "data" => report.drop_input(
                    format!("data.{}.{}", b.label(0), b.label(1)),
                    &f.path,
                    b.line,
                    "a data source only Terraform reads; inputs that use it are listed with it",
                ),
                "resource" => report.drop_input(
                    format!("{}.{}", b.label(0), b.label(1)),
                    &f.path,
                    b.line,
                    "a resource outside the dcos-terraform modules: dcform makes its own machines and keys, the rest stays Terraform's",
                ),
                "terraform" => report.drop_input(
                    "terraform",
                    &f.path,
                    b.line,
                    "Terraform settings (backend, versions): dcform keeps its state beside the definition",
                ),
                other => report.drop_input(
                    other,
                    &f.path,
                    b.line,
                    "a block dcform does not convert",
                ),
            }
        }
    }
    let converted: Vec<&ModuleCall> = modules
        .iter()
        .filter(|m| !matches!(m.kind, ModKind::Support(_) | ModKind::Install))
        .collect();
    if converted.is_empty() {
        let (file, line) = modules.first().map_or(
            (files.first().map(|(p, _)| p.clone()).unwrap_or_default(), 0),
            |m| (m.file.clone(), m.line),
        );
        return Err(CompatError::Unsupported {
            file,
            line,
            message: "no dcos-terraform module that makes cluster nodes".into(),
            hint: "dcform converts configurations calling dcos-terraform/dcos/aws, dcos-terraform/infrastructure/aws or the masters/private-agents/public-agents modules".into(),
        });
    }

    let clusters: Vec<&&ModuleCall> = converted
        .iter()
        .filter(|m| matches!(m.kind, ModKind::Cluster | ModKind::Infrastructure))
        .collect();
    if let [first, second, ..] = clusters.as_slice() {
        return Err(CompatError::Unsupported {
            file: second.file.clone(),
            line: second.line,
            message: format!(
                "module \"{}\" makes a second cluster (module \"{}\" on line {} makes one already)",
                second.label, first.label, first.line
            ),
            hint: "one dcform definition describes one cluster: convert each cluster's configuration on its own".into(),
        });
    }
    for f in &value_files {
        for b in &f.blocks {
            report.drop_input(
                &b.ident,
                &f.path,
                b.line,
                "a variable value file holds attributes only",
            );
        }
        for a in &f.attrs {
            match vars.iter_mut().find(|v| v.name == a.key) {
                Some(v) if expr::is_literal(&a.value) => {
                    report.note(
                        format!("var.{}", a.key),
                        &f.path,
                        a.line,
                        format!(
                            "default {} taken from this file, which Terraform reads itself",
                            definition::expr_text(&a.value)
                        ),
                    );
                    v.default = Some(a.value.clone());
                }
                Some(_) => report.drop_input(
                    format!("var.{}", a.key),
                    &f.path,
                    a.line,
                    "a variable value that is not a literal",
                ),
                None => report.drop_input(
                    format!("var.{}", a.key),
                    &f.path,
                    a.line,
                    "a value for a variable the configuration does not declare",
                ),
            }
        }
    }
    let var_names: BTreeSet<String> = vars.iter().map(|v| v.name.clone()).collect();
    let resolver = Resolver::new(&var_names, &locals);
    let mut b = Builder {
        r: &resolver,
        report: &mut report,
        vars: &vars,
        pools: Vec::new(),
        cluster_name: None,
        ssh_user: None,
        private_key: None,
        ami: None,
        pool_modules: converted.iter().map(|m| m.label.clone()).collect(),
    };
    for m in &modules {
        b.module(m);
    }
    let Builder {
        pools,
        cluster_name,
        ssh_user,
        private_key,
        ami,
        ..
    } = b;

    let mut provider_attrs: Vec<(String, Expression)> = Vec::new();
    for (i, (file, p)) in aws_providers.iter().enumerate() {
        for a in &p.attrs {
            if i == 0 && a.key == "region" {
                match resolver.resolve(&a.value) {
                    Ok(e) => provider_attrs.push(("region".into(), e)),
                    Err(why) => report.drop_input("provider.aws.region", file, a.line, why),
                }
            } else if i > 0 {
                report.drop_input(
                    format!("provider.aws.{}", a.key),
                    file,
                    a.line,
                    "a second aws provider (alias): a dcform cluster lives in one region",
                );
            } else {
                report.drop_input(
                    format!("provider.aws.{}", a.key),
                    file,
                    a.line,
                    "AWS credentials and settings come from the environment (AWS_PROFILE, AWS_REGION, ...)",
                );
            }
        }
    }
    if !provider_attrs.iter().any(|(k, _)| k == "region") {
        let file = aws_providers
            .first()
            .map_or_else(|| report.sources[0].clone(), |(f, _)| f.clone());
        let line = aws_providers.first().map_or(0, |(_, p)| p.line);
        report.note(
            "provider.aws.region",
            &file,
            line,
            "no region given: dcform's aws provider takes it from AWS_REGION / AWS_DEFAULT_REGION, as Terraform does",
        );
    }
    if let Some(ami) = ami {
        provider_attrs.push(("ami".into(), ami));
    }

    let (cluster, name_line, name_file) = match cluster_name {
        Some(c) => c,
        None => {
            let first = converted[0];
            report.note(
                format!("module.{}.cluster_name", first.label),
                &first.file,
                first.line,
                "not set: dcos-terraform's default \"dcos-example\" is used",
            );
            ("dcos-example".to_string(), first.line, first.file.clone())
        }
    };
    let cluster = match sanitize_name(&cluster) {
        Some(n) if n == cluster => n,
        Some(n) => {
            report.note(
                "cluster_name",
                &name_file,
                name_line,
                format!("\"{cluster}\" written as \"{n}\": dcform cluster names are lowercase letters, digits and -"),
            );
            n
        }
        None => {
            report.note(
                "cluster_name",
                &name_file,
                name_line,
                format!("\"{cluster}\" has no usable letters: written as \"dcos\""),
            );
            "dcos".into()
        }
    };

    let mut ssh: Vec<(String, Expression)> = Vec::new();
    if let Some(u) = ssh_user {
        ssh.push(("user".into(), Expression::String(u)));
    }
    if let Some(k) = private_key {
        ssh.push(("private_key".into(), k));
    }

    let used = resolver.used.borrow().clone();
    let mut variables = Vec::new();
    for v in &vars {
        if used.contains(&v.name) {
            variables.push(Variable {
                name: v.name.clone(),
                type_expr: v.type_expr.clone(),
                default: v.default.clone(),
                description: v.description.clone(),
            });
        } else {
            report.drop_input(
                format!("var.{}", v.name),
                &v.file,
                v.line,
                "a variable that nothing carried over uses",
            );
        }
    }

    let mut header = vec![format!(
        "Converted by `dcform convert` from {}.",
        files
            .iter()
            .map(|(p, _)| file_name(p))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for m in &converted {
        header.push(format!(
            "module \"{}\": {}{}",
            m.label,
            m.source,
            m.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        ));
    }
    header.push(
        "Inputs with no place here are listed by `dcform convert` (stderr, or --json).".into(),
    );
    let def = Definition {
        header,
        variables,
        cluster,
        provider: "aws".into(),
        provider_attrs,
        ssh,
        pools,
    };
    report.cluster = def.cluster.clone();
    report.provider = def.provider.clone();
    report.pools = def.pool_summaries();
    report.sort();
    Ok(Conversion {
        definition: def.render(),
        report,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn var_decl(file: &Path, b: &parse::Blk, report: &mut Report) -> VarDecl {
    let name = b.label(0).to_string();
    let mut d = VarDecl {
        name: name.clone(),
        file: file.to_path_buf(),
        line: b.line,
        type_expr: None,
        default: None,
        description: None,
    };
    for a in &b.attrs {
        match a.key.as_str() {
            "type" => d.type_expr = Some(definition::expr_text(&a.value)),
            "default" => d.default = Some(a.value.clone()),
            "description" => {
                d.description = match &a.value {
                    Expression::String(s) => Some(s.clone()),
                    Expression::TemplateExpr(t) => match &**t {
                        TemplateExpr::Heredoc(h) => Some(h.template.trim().to_string()),
                        TemplateExpr::QuotedString(s) => Some(s.clone()),
                    },
                    _ => None,
                }
            }
            other => report.drop_input(
                format!("var.{name}.{other}"),
                file,
                a.line,
                "dcform variables have type, default and description only",
            ),
        }
    }
    for inner in &b.blocks {
        report.drop_input(
            format!("var.{name}.{}", inner.ident),
            file,
            inner.line,
            "dcform variables have type, default and description only (a validation block is not checked)",
        );
    }
    d
}

fn module_call(file: &Path, b: &parse::Blk) -> Result<ModuleCall, CompatError> {
    let label = b.label(0).to_string();
    let unsupported = |line: usize, message: String| CompatError::Unsupported {
        file: file.to_path_buf(),
        line,
        message,
        hint: format!("dcform converts these module sources: {}", modules::KNOWN),
    };
    let Some(src) = b.attr("source") else {
        return Err(unsupported(
            b.line,
            format!("module \"{label}\" has no source"),
        ));
    };
    let Expression::String(source) = &src.value else {
        return Err(unsupported(
            src.line,
            format!("module \"{label}\": source must be a string literal"),
        ));
    };
    let Some(canonical) = modules::canonical_source(source) else {
        return Err(unsupported(
            src.line,
            format!("module \"{label}\": source \"{source}\" is not a dcos-terraform module"),
        ));
    };
    let kind = modules::classify(&canonical).map_err(|why| {
        unsupported(
            src.line,
            format!("module \"{label}\": source \"{source}\": {why}"),
        )
    })?;
    Ok(ModuleCall {
        label,
        file: file.to_path_buf(),
        line: b.line,
        source: source.clone(),
        version: b.attr("version").and_then(|a| match &a.value {
            Expression::String(s) => Some(s.clone()),
            _ => None,
        }),
        kind,
        attrs: b.attrs.clone(),
    })
}

/// Collects what the module calls give the definition.
struct Builder<'a, 'r> {
    r: &'a Resolver<'r>,
    report: &'a mut Report,
    vars: &'a [VarDecl],
    pools: Vec<Pool>,
    /// Cluster name, its line and file.
    cluster_name: Option<(String, usize, PathBuf)>,
    ssh_user: Option<String>,
    private_key: Option<Expression>,
    ami: Option<Expression>,
    /// Labels of modules that make pools (to recognise `additional_*_ips = module.X.private_ips`).
    pool_modules: BTreeSet<String>,
}

/// The inputs of one role's pool in a module: count input, instance type input, default count.
struct PoolInputs {
    role: Role,
    count: &'static str,
    instance_type: &'static str,
    default_count: u64,
}

const CLUSTER_POOLS: [PoolInputs; 3] = [
    PoolInputs {
        role: Role::Master,
        count: "num_masters",
        instance_type: "masters_instance_type",
        default_count: 3,
    },
    PoolInputs {
        role: Role::Agent,
        count: "num_private_agents",
        instance_type: "private_agents_instance_type",
        default_count: 2,
    },
    PoolInputs {
        role: Role::PublicAgent,
        count: "num_public_agents",
        instance_type: "public_agents_instance_type",
        default_count: 1,
    },
];

/// dcos-terraform's default instance type for every role.
const DEFAULT_INSTANCE_TYPE: &str = "m4.xlarge";
/// dcos-terraform's default `dcos_instance_os` (0.2 and later).
const DEFAULT_OS: &str = "centos_7.5";

impl Builder<'_, '_> {
    fn module(&mut self, m: &ModuleCall) {
        let input = |k: &str| format!("module.{}.{k}", m.label);
        match m.kind {
            ModKind::Support(why) => {
                self.report
                    .drop_input(format!("module.{}", m.label), &m.file, m.line, why);
                return;
            }
            ModKind::Install => {}
            ModKind::Cluster | ModKind::Infrastructure => {
                for p in &CLUSTER_POOLS {
                    self.pool(m, p);
                }
            }
            ModKind::Pool(role) => {
                let count = match role {
                    Role::Master => "num_masters",
                    Role::Agent => "num_private_agents",
                    Role::PublicAgent => "num_public_agents",
                };
                self.pool(
                    m,
                    &PoolInputs {
                        role,
                        count,
                        instance_type: "aws_instance_type",
                        default_count: 1,
                    },
                );
            }
        }
        let mut handled: BTreeSet<&str> = META.iter().copied().collect();
        if matches!(m.kind, ModKind::Cluster | ModKind::Infrastructure) {
            for p in &CLUSTER_POOLS {
                handled.insert(p.count);
                handled.insert(p.instance_type);
            }
        }
        if let ModKind::Pool(_) = m.kind {
            handled.extend([
                "num_masters",
                "num_private_agents",
                "num_public_agents",
                "aws_instance_type",
            ]);
        }
        let is_nodes = !matches!(m.kind, ModKind::Install);
        for a in &m.attrs {
            let key = a.key.as_str();
            if handled.contains(key) {
                continue;
            }
            match key {
                "cluster_name" | "dcos_cluster_name" => self.cluster_name(m, a),
                "ssh_public_key_file" if is_nodes => self.public_key_file(m, a),
                "aws_ami" if is_nodes => match self.r.resolve(&a.value) {
                    Ok(Expression::String(s)) if s.is_empty() => {}
                    Ok(e) if self.ami.is_none() => self.ami = Some(e),
                    Ok(_) => self.report.drop_input(
                        input(key),
                        &m.file,
                        a.line,
                        "a second AMI: dcform's aws provider has one AMI for all nodes (provider ami)",
                    ),
                    Err(why) => self.report.drop_input(input(key), &m.file, a.line, why),
                },
                "dcos_instance_os" if is_nodes => {
                    let os = self.r.literal(&a.value).ok();
                    self.os_user(m, a.line, os.as_ref().and_then(|e| match e {
                        Expression::String(s) => Some(s.as_str()),
                        _ => None,
                    }));
                    self.report.drop_input(input(key), &m.file, a.line, modules::reason(key, None));
                }
                "num_masters" | "num_private_agents" | "num_public_agents"
                    if matches!(m.kind, ModKind::Install) =>
                {
                    // The install module is told the counts the instance modules already have.
                }
                "additional_private_agent_ips" | "additional_public_agent_ips" => {
                    let refs = module_refs(&a.value);
                    if !refs.is_empty() && refs.iter().all(|r| self.pool_modules.contains(r)) {
                        self.report.note(
                            input(key),
                            &m.file,
                            a.line,
                            format!("these agents are the pool(s) made from module {}", refs.join(", ")),
                        );
                    } else {
                        self.report.drop_input(
                            input(key),
                            &m.file,
                            a.line,
                            "hosts made outside this configuration: a provider \"aws\" cluster makes its own machines; hand existing hosts to dcform with an ssh definition (dcform import-tfstate)",
                        );
                    }
                }
                "dcos_config" => {
                    // Extra DC/OS configuration, in the installer's YAML: name each key.
                    let keys = match self.r.literal(&a.value) {
                        Ok(Expression::String(y)) => crate::installer::config_keys(&y),
                        _ => None,
                    };
                    match keys {
                        Some(keys) if !keys.is_empty() => {
                            for k in keys {
                                self.report.drop_input(
                                    format!("{}.{k}", input(key)),
                                    &m.file,
                                    a.line,
                                    crate::installer::reason(&k, None),
                                );
                            }
                        }
                        _ => self.report.drop_input(input(key), &m.file, a.line, modules::reason(key, None)),
                    }
                }
                "count" | "for_each" => self.report.drop_input(
                    input(key),
                    &m.file,
                    a.line,
                    "module repetition: write one pool per instance of the module",
                ),
                _ => {
                    let lit = self.r.literal(&a.value).ok();
                    let value = lit.as_ref().and_then(|e| match e {
                        Expression::String(s) => Some(s.as_str()),
                        _ => None,
                    });
                    self.report
                        .drop_input(input(key), &m.file, a.line, modules::reason(key, value));
                }
            }
        }
        if is_nodes
            && self.ssh_user.is_none()
            && m.attrs.iter().all(|a| a.key != "dcos_instance_os")
        {
            self.ssh_user = modules::os_user(DEFAULT_OS).map(String::from);
            self.report.note(
                format!("module.{}.dcos_instance_os", m.label),
                &m.file,
                m.line,
                format!(
                    "not set: ssh.user \"{}\" of dcos-terraform's default OS {DEFAULT_OS}",
                    self.ssh_user.as_deref().unwrap_or("")
                ),
            );
        }
    }

    fn pool(&mut self, m: &ModuleCall, p: &PoolInputs) {
        let input = |k: &str| format!("module.{}.{k}", m.label);
        let mut notes: Vec<String> = Vec::new();
        let count = match m.attrs.iter().find(|a| a.key == p.count) {
            Some(a) => match self.r.resolve(&a.value) {
                Ok(e) => {
                    notes.push(p.count.to_string());
                    numeric(e)
                }
                Err(why) => {
                    self.report.drop_input(
                        input(p.count),
                        &m.file,
                        a.line,
                        format!(
                            "{why}; the pool is written with the module's default count {}",
                            p.default_count
                        ),
                    );
                    Expression::Number(p.default_count.into())
                }
            },
            None => {
                self.report.note(
                    input(p.count),
                    &m.file,
                    m.line,
                    format!(
                        "not set: the module's default {} is written",
                        p.default_count
                    ),
                );
                Expression::Number(p.default_count.into())
            }
        };
        let instance_type = match m.attrs.iter().find(|a| a.key == p.instance_type) {
            Some(a) => match self.r.resolve(&a.value) {
                Ok(e) => {
                    notes.push(p.instance_type.to_string());
                    Some(e)
                }
                Err(why) => {
                    self.report
                        .drop_input(input(p.instance_type), &m.file, a.line, why);
                    None
                }
            },
            // dcos-terraform's default for every role and module.
            None => Some(Expression::String(DEFAULT_INSTANCE_TYPE.into())),
        };
        let name = self.pool_name(m, p.role);
        let comment = if notes.is_empty() {
            format!("module.{} (defaults)", m.label)
        } else {
            format!("module.{}: {}", m.label, notes.join(", "))
        };
        self.pools.push(Pool {
            name,
            role: p.role,
            size: Size::Count(count),
            instance_type,
            attributes: BTreeMap::new(),
            comment,
        });
    }

    /// The first pool of a role is `masters` / `agents` / `public-agents`; further ones are named after
    /// their module (`gpuagent`).
    fn pool_name(&self, m: &ModuleCall, role: Role) -> String {
        let taken = |n: &str| self.pools.iter().any(|p| p.name == n);
        if !taken(role.pool_name()) {
            return role.pool_name().to_string();
        }
        let base =
            sanitize_name(m.label.trim_start_matches("dcos-")).unwrap_or_else(|| "pool".into());
        let mut name = base.clone();
        let mut i = 2;
        while taken(&name) {
            name = format!("{base}-{i}");
            i += 1;
        }
        name
    }

    fn cluster_name(&mut self, m: &ModuleCall, a: &parse::Attr) {
        if self.cluster_name.is_some() {
            return;
        }
        let input = format!("module.{}.{}", m.label, a.key);
        match self.r.literal(&a.value) {
            Ok(Expression::String(s)) => self.cluster_name = Some((s, a.line, m.file.clone())),
            Ok(_) => self
                .report
                .drop_input(input, &m.file, a.line, "not a string"),
            Err(_) => {
                // A block label cannot be a variable: use the variable's default, and say so.
                let before = self.r.used.borrow().clone();
                let default = match &a.value {
                    Expression::Traversal(t) => expr::var_name(t),
                    Expression::TemplateExpr(_) => match self.r.resolve(&a.value) {
                        Ok(Expression::Traversal(t)) => expr::var_name(&t)
                            .and_then(|n| self.vars.iter().find(|v| v.name == n))
                            .map(|v| v.name.as_str()),
                        _ => None,
                    },
                    _ => None,
                }
                .and_then(|n| self.vars.iter().find(|v| v.name == n))
                .and_then(|v| match &v.default {
                    Some(Expression::String(s)) => Some((v.name.clone(), s.clone())),
                    _ => None,
                });
                // Resolving the template marked the variable used; a label does not use it (other
                // inputs still may: restore what was used before, not less).
                *self.r.used.borrow_mut() = before;
                if let Some((var, s)) = default {
                    self.report.note(
                        input,
                        &m.file,
                        a.line,
                        format!("var.{var} written as its default \"{s}\": the cluster name is a block label, not an expression (rename the cluster block to change it)"),
                    );
                    self.cluster_name = Some((s, a.line, m.file.clone()));
                } else {
                    let why = self.r.literal(&a.value).err().unwrap_or_default();
                    self.report.drop_input(
                        input,
                        &m.file,
                        a.line,
                        format!("{why}; the cluster name is a block label and must be known"),
                    );
                }
            }
        }
    }

    fn public_key_file(&mut self, m: &ModuleCall, a: &parse::Attr) {
        let input = format!("module.{}.ssh_public_key_file", m.label);
        if self.private_key.is_some() {
            return;
        }
        match self.r.literal(&a.value) {
            Ok(Expression::String(s)) if s.is_empty() => {}
            Ok(Expression::String(s)) => {
                let private = s.strip_suffix(".pub").unwrap_or(&s).to_string();
                self.report.note(
                    input,
                    &m.file,
                    a.line,
                    format!("ssh.private_key = \"{private}\": dcform logs in with the private half of the key pair"),
                );
                self.private_key = Some(Expression::String(private));
            }
            _ => self.report.drop_input(
                input,
                &m.file,
                a.line,
                "the public key's path is not constant, so its private half cannot be named; set ssh { private_key = ... }",
            ),
        }
    }

    fn os_user(&mut self, m: &ModuleCall, line: usize, os: Option<&str>) {
        if self.ssh_user.is_some() {
            return;
        }
        if let Some(user) = os.and_then(modules::os_user) {
            self.ssh_user = Some(user.to_string());
            self.report.note(
                format!("module.{}.dcos_instance_os", m.label),
                &m.file,
                line,
                format!(
                    "ssh.user = \"{user}\", the login user of dcos-terraform's {} images",
                    os.unwrap_or("")
                ),
            );
        }
    }
}

/// `"3"` -> `3`: 0.11 wrote numbers as strings.
fn numeric(e: Expression) -> Expression {
    match &e {
        Expression::String(s) => match s.trim().parse::<u64>() {
            Ok(n) => Expression::Number(n.into()),
            Err(_) => e,
        },
        _ => e,
    }
}

/// Labels of the modules an expression reads outputs of (`module.gpuagent.private_ips` -> `gpuagent`).
fn module_refs(e: &Expression) -> Vec<String> {
    let mut out = Vec::new();
    collect_module_refs(e, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_module_refs(e: &Expression, out: &mut Vec<String>) {
    match e {
        Expression::Traversal(t) => {
            if let Some(m) = module_of(t) {
                out.push(m);
            }
            collect_module_refs(&t.expr, out);
        }
        Expression::Array(a) => a.iter().for_each(|x| collect_module_refs(x, out)),
        Expression::FuncCall(f) => f.args.iter().for_each(|x| collect_module_refs(x, out)),
        Expression::Parenthesis(p) => collect_module_refs(p, out),
        Expression::TemplateExpr(t) => {
            if let Ok(tpl) = hcl::Template::from_expr(t) {
                for el in tpl.elements() {
                    if let hcl::template::Element::Interpolation(i) = el {
                        collect_module_refs(&i.expr, out);
                    }
                }
            }
        }
        _ => {}
    }
}

fn module_of(t: &Traversal) -> Option<String> {
    match (&t.expr, t.operators.first()) {
        (Expression::Variable(v), Some(TraversalOperator::GetAttr(m)))
            if v.as_str() == "module" =>
        {
            Some(m.as_str().to_string())
        }
        _ => None,
    }
}
