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
//!
//! `parse` reads the files, `expr` resolves values, `modules` knows the dcos-terraform modules and why
//! each input is or is not carried over, `inputs` turns module calls into pools; this file collects and
//! assembles.

pub(crate) mod expr;
mod inputs;
mod modules;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::Expression;
use hcl::expr::TemplateExpr;

use crate::Conversion;
use crate::definition::{self, Definition, Variable, sanitize_name};
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
    let mut b = inputs::Builder {
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
    let inputs::Builder {
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
    Ok(Conversion::of(&def, report))
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
