//! Module inputs -> pools, cluster name, ssh settings and AMI, and a report line for every other input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hcl::Expression;
use hcl::expr::{Traversal, TraversalOperator};

use super::expr::{self, Resolver};
use super::modules::{self, ModKind};
use super::{META, ModuleCall, VarDecl, parse};
use crate::definition::{Pool, Role, Size, default_pool_name, sanitize_name};
use crate::report::Report;

/// Collects what the module calls give the definition.
pub(super) struct Builder<'a, 'r> {
    pub r: &'a Resolver<'r>,
    pub report: &'a mut Report,
    pub vars: &'a [VarDecl],
    pub pools: Vec<Pool>,
    /// Cluster name, its line and file.
    pub cluster_name: Option<(String, usize, PathBuf)>,
    pub ssh_user: Option<String>,
    pub private_key: Option<Expression>,
    pub ami: Option<Expression>,
    /// Labels of modules that make pools (to recognise `additional_*_ips = module.X.private_ips`).
    pub pool_modules: BTreeSet<String>,
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
    pub fn module(&mut self, m: &ModuleCall) {
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
        if !taken(default_pool_name(role)) {
            return default_pool_name(role).to_string();
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
