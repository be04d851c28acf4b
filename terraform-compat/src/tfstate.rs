//! Terraform v4 state (`terraform.tfstate`) -> `ssh`-provider definition of the `aws_instance`s in it, so
//! machines Terraform made are handed to dcform without being made again.
//!
//! ```text
//! state JSON ──version 4?──> resources[] ──aws_instance, running, --filter──> instances
//!      ──role (tag Role, else module/resource name: master, public, private/agent)──> groups by resource
//!      ──> pools { hosts = [public_ip, else private_ip] } + ssh { user, private_key } as variables
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use hcl::Expression;
use serde_json::Value;

use crate::Conversion;
use crate::definition::{Definition, Pool, Role, Size, Variable, default_pool_name, sanitize_name};
use crate::error::CompatError;
use crate::report::{Report, SourceKind};

/// `--filter tag:KEY=VALUE`: only instances whose tag KEY is VALUE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Tag name.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// Why a `--filter` argument is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {0:?} is not tag:KEY=VALUE (e.g. tag:Role=agent)")]
pub struct BadFilter(pub String);

impl FromStr for Filter {
    type Err = BadFilter;

    fn from_str(s: &str) -> Result<Filter, BadFilter> {
        let (key, value) = s
            .strip_prefix("tag:")
            .and_then(|kv| kv.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| BadFilter(s.to_string()))?;
        Ok(Filter {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// What the import cannot find in a state.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Instances must match every filter.
    pub filters: Vec<Filter>,
    /// The role of every instance imported (else found from its `Role` tag or its names).
    pub role: Option<String>,
    /// Login user (default: `centos` for dcos-terraform machines, else `root`).
    pub ssh_user: Option<String>,
    /// Private key file (default `~/.ssh/id_rsa`).
    pub ssh_key: Option<String>,
    /// Cluster name (default: the instances' `cluster` / `Cluster` tag, else `imported`).
    pub cluster: Option<String>,
}

struct Instance {
    address: String,
    role: Role,
    group: String,
    host: String,
    used_private: bool,
    cluster_tag: Option<String>,
}

/// Imports the running `aws_instance`s of a v4 state.
///
/// # Errors
///
/// [`CompatError::Syntax`] for JSON that does not parse; [`CompatError::Field`] for a state of another
/// version or shape, an unknown `--role`, or when no instance is left to import.
pub fn import(path: &Path, text: &str, opts: &ImportOptions) -> Result<Conversion, CompatError> {
    let file = path.to_path_buf();
    let field = |field: &str, message: String, hint: &str| CompatError::Field {
        file: file.clone(),
        field: field.into(),
        message,
        hint: hint.into(),
    };
    if let Some((line, col)) = crate::terraform::too_deep(text) {
        return Err(CompatError::Syntax {
            file: file.clone(),
            line,
            col,
            message: "nested too deeply".into(),
            hint: "a Terraform state nests a few levels".into(),
        });
    }
    let state: Value = serde_json::from_str(text).map_err(|e| CompatError::Syntax {
        file: file.clone(),
        line: e.line(),
        col: e.column(),
        message: format!("not valid JSON: {e}"),
        hint: "a Terraform state is the JSON file terraform.tfstate".into(),
    })?;
    let Some(obj) = state.as_object() else {
        return Err(field(
            "(document)",
            "is not a JSON object".into(),
            "a Terraform state is an object with version, serial, resources",
        ));
    };
    match obj.get("version").and_then(Value::as_u64) {
        Some(4) => {}
        Some(v @ 0..=3) => {
            return Err(field(
                "version",
                format!("a version {v} state (Terraform 0.11 or older)"),
                "dcform reads version 4 states: run `terraform refresh` once with Terraform 0.12 or later, which upgrades the state",
            ));
        }
        Some(v) => {
            return Err(field(
                "version",
                format!("a version {v} state"),
                "dcform reads version 4 states (Terraform 0.12 to 1.x)",
            ));
        }
        None => {
            return Err(field(
                "version",
                "missing or not a number".into(),
                "a Terraform state has \"version\": 4",
            ));
        }
    }
    let forced = match &opts.role {
        None => None,
        Some(r) => Some(parse_role(r).ok_or_else(|| {
            field(
                "--role",
                format!("{r:?} is not a role"),
                "one of: master, agent, public_agent",
            )
        })?),
    };
    let resources = match obj.get("resources") {
        Some(Value::Array(r)) => r.as_slice(),
        None => &[],
        Some(_) => {
            return Err(field(
                "resources",
                "is not a list".into(),
                "a v4 state lists its resources in \"resources\": [...]",
            ));
        }
    };
    let mut report = Report::new(vec![file.clone()], SourceKind::TfState);
    let mut instances: Vec<Instance> = Vec::new();
    let mut dcos_made = false;
    for (ri, r) in resources.iter().enumerate() {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let (mode, ty, name, module) = (s("mode"), s("type"), s("name"), s("module"));
        let addr = if module.is_empty() {
            format!("{ty}.{name}")
        } else {
            format!("{module}.{ty}.{name}")
        };
        if mode == "data" {
            continue;
        }
        if ty != "aws_instance" {
            report.drop_input(
                &addr,
                &file,
                0,
                "not a machine: only aws_instance resources become pools",
            );
            continue;
        }
        dcos_made |= module.contains("dcos");
        let Some(list) = r.get("instances").and_then(Value::as_array) else {
            return Err(field(
                &format!("resources[{ri}].instances"),
                "missing or not a list".into(),
                "a v4 state resource has \"instances\": [...]",
            ));
        };
        for inst in list {
            let index = match inst.get("index_key") {
                Some(Value::Number(n)) => format!("[{n}]"),
                Some(Value::String(k)) => format!("[\"{k}\"]"),
                _ => String::new(),
            };
            let iaddr = format!("{addr}{index}");
            let attrs = inst.get("attributes").cloned().unwrap_or(Value::Null);
            let a = |k: &str| {
                attrs
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let tags: BTreeMap<String, String> = attrs
                .get("tags")
                .and_then(Value::as_object)
                .map(|t| {
                    t.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(f) = opts
                .filters
                .iter()
                .find(|f| tags.get(&f.key) != Some(&f.value))
            {
                report.drop_input(
                    &iaddr,
                    &file,
                    0,
                    format!("left out by --filter tag:{}={}", f.key, f.value),
                );
                continue;
            }
            let st = a("instance_state");
            if !st.is_empty() && st != "running" {
                report.drop_input(
                    &iaddr,
                    &file,
                    0,
                    format!("instance_state is {st}, not running"),
                );
                continue;
            }
            let names = format!("{module} {name}").to_lowercase();
            if forced.is_none() && names.contains("bootstrap") {
                report.drop_input(&iaddr, &file, 0, "a DC/OS bootstrap node: dcform needs none (it uploads dccore to every node itself)");
                continue;
            }
            let role = forced.or_else(|| {
                ["Role", "role", "dcos_role"]
                    .iter()
                    .find_map(|k| tags.get(*k))
                    .and_then(|r| parse_role(r))
                    .or_else(|| role_from_names(&names))
            });
            let Some(role) = role else {
                report.drop_input(&iaddr, &file, 0, "its role is not known: tag it Role=master|agent|public_agent, or select it with --filter and give --role");
                continue;
            };
            let (public, private) = (a("public_ip"), a("private_ip"));
            let (host, used_private) = match (public.is_empty(), private.is_empty()) {
                (false, _) => (public, false),
                (true, false) => (private, true),
                (true, true) => {
                    report.drop_input(
                        &iaddr,
                        &file,
                        0,
                        "it has no address (public_ip and private_ip are empty)",
                    );
                    continue;
                }
            };
            instances.push(Instance {
                address: iaddr,
                role,
                group: addr.clone(),
                host,
                used_private,
                cluster_tag: ["cluster", "Cluster", "KubernetesCluster"]
                    .iter()
                    .find_map(|k| tags.get(*k).cloned()),
            });
        }
    }
    if instances.is_empty() {
        return Err(field(
            "resources",
            "no running aws_instance to import".into(),
            "import-tfstate hands Terraform's aws_instance machines to dcform; the report of what was left out is above (--filter, instance_state)",
        ));
    }
    if !instances.iter().any(|i| i.role == Role::Master) {
        report.note(
            "masters",
            &file,
            0,
            "none among the imported instances: add these pools to a definition that has its masters (a cluster needs at least one)",
        );
    }
    for i in instances.iter().filter(|i| i.used_private) {
        report.note(
            &i.address,
            &file,
            0,
            format!("no public_ip: reached at its private_ip {}", i.host),
        );
    }

    // One pool per resource (a count of instances), masters first.
    let mut groups: Vec<(Role, String, Vec<String>)> = Vec::new();
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by_key(|i| i.role);
    for i in sorted {
        match groups
            .iter_mut()
            .find(|(r, g, _)| *r == i.role && *g == i.group)
        {
            Some((_, _, hosts)) => hosts.push(i.host.clone()),
            None => groups.push((i.role, i.group.clone(), vec![i.host.clone()])),
        }
    }
    let mut pools: Vec<Pool> = Vec::new();
    for (role, group, hosts) in groups {
        let taken = |n: &str| pools.iter().any(|p| p.name == n);
        let name = if !taken(default_pool_name(role)) {
            default_pool_name(role).to_string()
        } else {
            let base = group
                .rsplit('.')
                .next()
                .and_then(sanitize_name)
                .unwrap_or_else(|| "pool".into());
            let mut n = base.clone();
            let mut k = 2;
            while taken(&n) {
                n = format!("{base}-{k}");
                k += 1;
            }
            n
        };
        pools.push(Pool {
            name,
            role,
            size: Size::Hosts(hosts),
            instance_type: None,
            attributes: BTreeMap::new(),
            comment: format!("from {group}"),
        });
    }

    let cluster_raw = opts
        .cluster
        .clone()
        .or_else(|| instances.iter().find_map(|i| i.cluster_tag.clone()))
        .unwrap_or_else(|| "imported".into());
    let cluster = sanitize_name(&cluster_raw).unwrap_or_else(|| "imported".into());
    if cluster != cluster_raw {
        report.note("cluster", &file, 0, format!("\"{cluster_raw}\" written as \"{cluster}\": dcform cluster names are lowercase letters, digits and -"));
    }
    let user = opts.ssh_user.clone().unwrap_or_else(|| {
        let u = if dcos_made { "centos" } else { "root" };
        report.note(
            "ssh_user",
            &file,
            0,
            format!("a state does not say how to log in: variable ssh_user defaults to \"{u}\"{} (-var ssh_user=... or --ssh-user)", if dcos_made { ", the user of dcos-terraform's default CentOS images" } else { "" }),
        );
        u.to_string()
    });
    let key = opts.ssh_key.clone().unwrap_or_else(|| {
        report.note("ssh_key", &file, 0, "variable ssh_key defaults to ~/.ssh/id_rsa, the key dcos-terraform's examples use (-var ssh_key=... or --ssh-key)");
        "~/.ssh/id_rsa".to_string()
    });
    let var = |name: &str| {
        Expression::Traversal(Box::new(hcl::expr::Traversal::new(
            Expression::Variable(hcl::expr::Variable::unchecked("var")),
            vec![hcl::expr::TraversalOperator::GetAttr(
                hcl::Identifier::sanitized(name),
            )],
        )))
    };
    let def = Definition {
        header: vec![
            format!(
                "Imported by `dcform import-tfstate` from {} ({} instance(s)).",
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
                instances.len()
            ),
            "The machines stay as Terraform made them: dcform installs dccore on them and leaves them running on destroy.".into(),
        ],
        variables: vec![
            Variable {
                name: "ssh_user".into(),
                type_expr: Some("string".into()),
                default: Some(Expression::String(user)),
                description: Some("Login user of the imported machines".into()),
            },
            Variable {
                name: "ssh_key".into(),
                type_expr: Some("string".into()),
                default: Some(Expression::String(key)),
                description: Some("Private key that logs in to the imported machines".into()),
            },
        ],
        cluster,
        provider: "ssh".into(),
        provider_attrs: Vec::new(),
        ssh: vec![("user".into(), var("ssh_user")), ("private_key".into(), var("ssh_key"))],
        pools,
    };
    Ok(Conversion::of(&def, report))
}

fn parse_role(r: &str) -> Option<Role> {
    match r.to_ascii_lowercase().replace('-', "_").as_str() {
        "master" | "masters" => Some(Role::Master),
        "agent" | "agents" | "private" | "private_agent" | "private_agents" | "slave" => {
            Some(Role::Agent)
        }
        "public" | "public_agent" | "public_agents" | "slave_public" => Some(Role::PublicAgent),
        _ => None,
    }
}

/// dcos-terraform's module and resource names say the role: `dcos-master-instances`,
/// `dcos-privateagent-instances`, `dcos-publicagent-instances`.
fn role_from_names(names: &str) -> Option<Role> {
    if names.contains("master") {
        Some(Role::Master)
    } else if names.contains("public") {
        Some(Role::PublicAgent)
    } else if names.contains("private") || names.contains("agent") {
        Some(Role::Agent)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_tag_key_value() {
        assert_eq!(
            "tag:Role=agent".parse::<Filter>(),
            Ok(Filter {
                key: "Role".into(),
                value: "agent".into()
            })
        );
        assert!("Role=agent".parse::<Filter>().is_err());
        assert!("tag:=x".parse::<Filter>().is_err());
    }

    #[test]
    fn a_v3_state_is_refused_naming_the_version_and_the_way_out() {
        let e = import(
            Path::new("t.tfstate"),
            r#"{"version": 3, "modules": []}"#,
            &ImportOptions::default(),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("version: a version 3 state") && s.contains("terraform refresh"),
            "{s}"
        );
    }

    #[test]
    fn agents_alone_import_with_a_note_that_masters_are_missing() {
        let c = import(
            Path::new("t.tfstate"),
            r#"{"version": 4, "resources": [{"mode": "managed", "type": "aws_instance", "name": "agent",
               "instances": [{"attributes": {"public_ip": "198.51.100.7", "tags": {"Role": "agent"}}}]}]}"#,
            &ImportOptions::default(),
        )
        .unwrap();
        assert!(
            c.definition.contains("hosts = [\"198.51.100.7\"]"),
            "{}",
            c.definition
        );
        assert!(c.report.notes.iter().any(|n| n.input == "masters"));
        let e = import(
            Path::new("t.tfstate"),
            r#"{"version": 4, "resources": []}"#,
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no running aws_instance"), "{e}");
    }
}
