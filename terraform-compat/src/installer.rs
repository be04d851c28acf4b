//! DC/OS installer `genconf/config.yaml` -> `ssh`-provider definition.
//!
//! Both installer styles are read: the SSH-CLI style (`--genconf --preflight --deploy`) lists every host
//! and how to log in (`master_list`, `agent_list`, `public_agent_list`, `ssh_user`, `ssh_port`,
//! `ssh_key_path`); the advanced (HTTP-bootstrap) style lists only `master_list` and a `bootstrap_url`,
//! the agents being installed by hand, so the converted definition has the master pool and the report
//! says where the agents go. Every other key is reported with the reason it has no dccore meaning.

use std::path::Path;

use hcl::Expression;
use yaml_rust2::{Yaml, YamlLoader};

use crate::Conversion;
use crate::definition::{Definition, Pool, Role, Size, Variable, default_pool_name, sanitize_name};
use crate::error::CompatError;
use crate::report::{Report, SourceKind};

/// Keys only an installer config has; a YAML file with none of them is not one.
const INSTALLER_KEYS: &[&str] = &[
    "master_list",
    "agent_list",
    "public_agent_list",
    "bootstrap_url",
    "master_discovery",
    "exhibitor_storage_backend",
    "ssh_user",
    "ssh_key_path",
    "resolvers",
];

/// Deepest nesting read (brackets or `- ` sequence markers on one line): a guard for the parser, whose
/// values are dropped recursively. Installer configs nest two or three levels.
const MAX_NESTING: usize = 64;

/// Converts an installer config.
///
/// # Errors
///
/// [`CompatError::Syntax`] for YAML that does not parse (with its line and column);
/// [`CompatError::Field`] when the document is not an installer config or a field has the wrong shape.
pub fn convert(path: &Path, text: &str) -> Result<Conversion, CompatError> {
    let doc = parse(path, text)?;
    let Yaml::Hash(map) = &doc else {
        return Err(CompatError::Field {
            file: path.to_path_buf(),
            field: "(document)".into(),
            message: format!("the document is {}, not a mapping", kind(&doc)),
            hint: "an installer config.yaml is a mapping of keys such as master_list, agent_list, ssh_user".into(),
        });
    };
    let lines = KeyLines::new(text);
    let keys: Vec<(String, &Yaml)> = map
        .iter()
        .filter_map(|(k, v)| scalar(k).map(|k| (k, v)))
        .collect();
    if !keys
        .iter()
        .any(|(k, _)| INSTALLER_KEYS.contains(&k.as_str()))
    {
        return Err(CompatError::Field {
            file: path.to_path_buf(),
            field: "(document)".into(),
            message: "none of the DC/OS installer's keys is here".into(),
            hint: format!(
                "an installer config.yaml has some of: {}",
                INSTALLER_KEYS.join(", ")
            ),
        });
    }
    let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    let file = path.to_path_buf();
    let mut report = Report::new(vec![file.clone()], SourceKind::Installer);

    let hosts = |field: &str| -> Result<Option<Vec<String>>, CompatError> {
        let Some(v) = get(field) else {
            return Ok(None);
        };
        let Yaml::Array(items) = v else {
            if matches!(v, Yaml::Null) {
                return Ok(Some(Vec::new()));
            }
            return Err(CompatError::Field {
                file: file.clone(),
                field: field.into(),
                message: format!("is {}, not a list", kind(v)),
                hint: format!("write {field}:\\n- 10.0.0.1\\n- 10.0.0.2"),
            });
        };
        items
            .iter()
            .enumerate()
            .map(|(i, h)| {
                scalar(h)
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| CompatError::Field {
                        file: file.clone(),
                        field: format!("{field}[{i}]"),
                        message: format!("is {}, not a host address", kind(h)),
                        hint: "each entry is an IP address or host name".into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    let masters = hosts("master_list")?;
    let agents = hosts("agent_list")?;
    let public = hosts("public_agent_list")?;
    let Some(masters) = masters.filter(|m| !m.is_empty()) else {
        let why = match get("master_discovery").and_then(scalar).as_deref() {
            Some("master_http_loadbalancer") => {
                "master_discovery is master_http_loadbalancer: the masters are behind a load balancer and not listed"
            }
            _ => "no masters are listed",
        };
        return Err(CompatError::Field {
            file: file.clone(),
            field: "master_list".into(),
            message: why.into(),
            hint: "dcform needs the masters' addresses: add master_list:\\n- 10.0.0.1 (static master discovery)".into(),
        });
    };

    let mut pools = vec![pool(Role::Master, masters, "master_list")];
    let advanced = agents.is_none() && public.is_none();
    if let Some(a) = agents.filter(|a| !a.is_empty()) {
        pools.push(pool(Role::Agent, a, "agent_list"));
    }
    if let Some(p) = public.filter(|p| !p.is_empty()) {
        pools.push(pool(Role::PublicAgent, p, "public_agent_list"));
    }
    if advanced {
        report.note(
            "agent_list",
            &file,
            0,
            "not listed (advanced installer: agents ran dcos_install.sh themselves): add pool \"agents\" { role = \"agent\" hosts = [...] } for them",
        );
    }

    let cluster = match get("cluster_name").and_then(scalar) {
        Some(n) => match sanitize_name(&n) {
            Some(s) if s == n => s,
            Some(s) => {
                report.note("cluster_name", &file, lines.of("cluster_name"), format!("\"{n}\" written as \"{s}\": dcform cluster names are lowercase letters, digits and -"));
                s
            }
            None => {
                report.note(
                    "cluster_name",
                    &file,
                    lines.of("cluster_name"),
                    format!("\"{n}\" has no usable letters: written as \"dcos\""),
                );
                "dcos".into()
            }
        },
        None => {
            report.note(
                "cluster_name",
                &file,
                0,
                "not set: the cluster is named \"dcos\"",
            );
            "dcos".into()
        }
    };

    let mut ssh: Vec<(String, Expression)> = Vec::new();
    let mut variables = Vec::new();
    if let Some(u) = get("ssh_user").and_then(scalar) {
        ssh.push(("user".into(), Expression::String(u)));
    }
    if let Some(v) = get("ssh_port") {
        match scalar(v)
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
        {
            Some(p) => ssh.push(("port".into(), Expression::Number(p.into()))),
            None => {
                return Err(CompatError::Field {
                    file: file.clone(),
                    field: "ssh_port".into(),
                    message: format!("is {}, not a port", kind(v)),
                    hint: "a port from 1 to 65535, e.g. ssh_port: 22".into(),
                });
            }
        }
    }
    if let Some(k) = get("ssh_key_path").and_then(scalar) {
        // The installer runs in a container with the genconf folder mounted at /genconf.
        let local = match k.strip_prefix("/genconf/") {
            Some(rest) => {
                let p = format!("genconf/{rest}");
                report.note(
                    "ssh_key_path",
                    &file,
                    lines.of("ssh_key_path"),
                    format!("{k} is the installer container's path: written as variable ssh_key = \"{p}\", relative to the definition (write it beside the genconf folder, or pass -var ssh_key=FILE)"),
                );
                p
            }
            None => k.clone(),
        };
        variables.push(Variable {
            name: "ssh_key".into(),
            type_expr: Some("string".into()),
            default: Some(Expression::String(local)),
            description: Some(
                "Private key that logs in to every host (ssh_key_path of the installer config)"
                    .into(),
            ),
        });
        ssh.push(("private_key".into(), var_ref("ssh_key")));
    }

    for (k, v) in &keys {
        let handled = matches!(
            k.as_str(),
            "master_list"
                | "agent_list"
                | "public_agent_list"
                | "cluster_name"
                | "ssh_user"
                | "ssh_port"
                | "ssh_key_path"
        );
        if !handled {
            let value = scalar(v);
            report.drop_input(k, &file, lines.of(k), reason(k, value.as_deref()));
        }
    }

    let def = Definition {
        header: vec![
            format!(
                "Converted by `dcform convert` from {} (DC/OS installer config).",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
            "Host keys are trusted on first use and pinned in the state.".into(),
            "Inputs with no place here are listed by `dcform convert` (stderr, or --json).".into(),
        ],
        variables,
        cluster,
        provider: "ssh".into(),
        provider_attrs: Vec::new(),
        ssh,
        pools,
    };
    Ok(Conversion::of(&def, report))
}

fn pool(role: Role, hosts: Vec<String>, from: &str) -> Pool {
    Pool {
        name: default_pool_name(role).into(),
        role,
        size: Size::Hosts(hosts),
        instance_type: None,
        attributes: Default::default(),
        comment: format!("from {from}"),
    }
}

fn var_ref(name: &str) -> Expression {
    Expression::Traversal(Box::new(hcl::expr::Traversal::new(
        Expression::Variable(hcl::expr::Variable::unchecked("var")),
        vec![hcl::expr::TraversalOperator::GetAttr(
            hcl::Identifier::sanitized(name),
        )],
    )))
}

/// Parses the YAML document (the first one of the stream).
fn parse(path: &Path, text: &str) -> Result<Yaml, CompatError> {
    let deep = crate::terraform::too_deep(text).or_else(|| {
        text.lines()
            .enumerate()
            .find_map(|(i, l)| (l.matches("- ").count() > MAX_NESTING).then_some((i + 1, 1)))
    });
    if let Some((line, col)) = deep {
        return Err(CompatError::Syntax {
            file: path.to_path_buf(),
            line,
            col,
            message: "nested too deeply".into(),
            hint: "an installer config is a flat mapping of keys to values and lists".into(),
        });
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| CompatError::Syntax {
        file: path.to_path_buf(),
        line: e.marker().line(),
        col: e.marker().col(),
        message: format!("not valid YAML: {}", e.info()),
        hint: "an installer config.yaml is a YAML mapping, e.g. master_list:\\n- 10.0.0.1".into(),
    })?;
    Ok(docs.into_iter().next().unwrap_or(Yaml::Null))
}

/// The top-level keys of a DC/OS config YAML text (dcos-terraform's `dcos_config`), or `None` when it
/// is not a YAML mapping.
pub(crate) fn config_keys(text: &str) -> Option<Vec<String>> {
    match parse(Path::new("dcos_config"), text).ok()? {
        Yaml::Hash(m) => Some(m.keys().filter_map(scalar).collect()),
        _ => None,
    }
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Real(_) | Yaml::Integer(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Null => "empty",
        Yaml::Alias(_) | Yaml::BadValue => "an alias",
    }
}

/// Lines of the top-level keys (yaml-rust2's values carry no position).
struct KeyLines(Vec<(String, usize)>);

impl KeyLines {
    fn new(text: &str) -> KeyLines {
        KeyLines(
            text.lines()
                .enumerate()
                .filter(|(_, l)| {
                    l.starts_with(|c: char| {
                        c.is_ascii_alphanumeric() || c == '_' || c == '"' || c == '\''
                    })
                })
                .filter_map(|(i, l)| {
                    let (k, _) = l.split_once(':')?;
                    Some((k.trim().trim_matches(['"', '\'']).to_string(), i + 1))
                })
                .collect(),
        )
    }

    fn of(&self, key: &str) -> usize {
        self.0.iter().find(|(k, _)| k == key).map_or(0, |(_, l)| *l)
    }
}

/// Why an installer key is not carried over.
pub(crate) fn reason(key: &str, value: Option<&str>) -> String {
    let r = match key {
        "bootstrap_url" => {
            "where nodes download the DC/OS installer; dcform uploads dccore to every node itself over SSH"
        }
        "resolvers" | "dns_search" | "dns_forward_zones" | "dns_bind_ip_blacklist" => {
            "DNS resolvers are the hosts' own: dccore's service discovery answers for the cluster's names only"
        }
        "master_discovery"
        | "exhibitor_storage_backend"
        | "exhibitor_address"
        | "exhibitor_zk_hosts"
        | "exhibitor_zk_path"
        | "exhibitor_fs_config_dir"
        | "aws_template_storage_bucket"
        | "s3_bucket"
        | "s3_prefix" => {
            "master discovery: dcform gives every node the masters' addresses itself (static)"
        }
        "ip_detect_filename"
        | "ip_detect_public_filename"
        | "ip_detect_public_contents"
        | "ip_detect_contents"
        | "fault_domain_detect_filename"
        | "fault_domain_enabled" => {
            "detect scripts: dcform knows each host's address from the definition"
        }
        "oauth_enabled"
        | "oauth_issuer_url"
        | "oauth_client_id"
        | "oauth_auth_redirector"
        | "oauth_auth_host" => {
            "DC/OS UI login through Auth0: a dcform cluster is reached with the operator token written beside its state"
        }
        "superuser_username"
        | "superuser_password_hash"
        | "security"
        | "license_key_contents"
        | "ca_certificate_path"
        | "ca_certificate_key_path"
        | "ca_certificate_chain_path"
        | "zk_super_credentials"
        | "zk_master_credentials"
        | "zk_agent_credentials"
        | "customer_key"
        | "auth_cookie_secure_flag"
        | "bouncer_expiration_auth_token_days"
        | "adminrouter_tls_1_0_enabled" => {
            return "Enterprise-only: a DC/OS Enterprise setting; dcform clusters always use TLS, the cluster CA and the operator token it makes".into();
        }
        "telemetry_enabled" => "DC/OS telemetry: dccore sends nothing anywhere",
        "log_directory" => "where the installer writes its own logs",
        "process_timeout" => "the installer's command timeout: dcform bounds each step itself",
        "platform" => "dcform's ssh provider runs on any Linux host it reaches",
        "agent_list" | "public_agent_list" => "empty",
        "enable_docker_gc"
        | "docker_remove_delay"
        | "gc_delay"
        | "enable_gpu_isolation"
        | "gpus_are_scarce"
        | "dcos_overlay_enable"
        | "dcos_overlay_network"
        | "dcos_overlay_mtu"
        | "use_proxy"
        | "http_proxy"
        | "https_proxy"
        | "no_proxy"
        | "rexray_config"
        | "rexray_config_method"
        | "mesos_container_log_sink"
        | "check_time"
        | "cluster_docker_credentials"
        | "cluster_docker_registry_url"
        | "calico_network_cidr"
        | "enable_ipv6"
        | "mesos_dns_set_truncate_bit"
        | "telemetry"
        | "metronome_gpu_scheduling_behavior" => "a DC/OS option with no dccore meaning",
        _ => "a DC/OS option with no dccore meaning",
    };
    let _ = value;
    r.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_path() -> std::path::PathBuf {
        std::path::PathBuf::from("genconf/config.yaml")
    }

    #[test]
    fn an_advanced_style_config_gives_the_masters_and_says_where_the_agents_go() {
        let c = convert(
            &test_path(),
            "bootstrap_url: http://10.0.0.2:8080\ncluster_name: Prod DC/OS\nmaster_discovery: static\nmaster_list:\n- 10.0.0.5\nresolvers:\n- 10.0.0.1\n",
        )
        .expect("converts");
        assert!(
            c.definition.contains("hosts = [\"10.0.0.5\"]"),
            "{}",
            c.definition
        );
        assert!(
            c.definition.contains("cluster \"prod-dc-os\""),
            "{}",
            c.definition
        );
        assert!(c.report.notes.iter().any(|n| n.input == "agent_list"));
        let dropped: Vec<&str> = c
            .report
            .not_carried_over
            .iter()
            .map(|i| i.input.as_str())
            .collect();
        assert_eq!(dropped, ["bootstrap_url", "master_discovery", "resolvers"]);
        assert_eq!(c.report.not_carried_over[0].line, 1);
    }

    #[test]
    fn yaml_that_is_not_an_installer_config_is_refused_naming_what_is_expected() {
        let e = convert(&test_path(), "name: web\nreplicas: 3\n").unwrap_err();
        assert!(e.to_string().contains("master_list"), "{e}");
        let e = convert(&test_path(), "- a\n- b\n").unwrap_err();
        assert!(e.to_string().contains("not a mapping"), "{e}");
        let e = convert(&test_path(), "master_list: 10.0.0.1\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("master_list: is a string, not a list"),
            "{e}"
        );
        let e = convert(&test_path(), "master_list:\n- 10.0.0.1\nssh_port: ssh\n").unwrap_err();
        assert!(e.to_string().contains("ssh_port"), "{e}");
    }

    #[test]
    fn broken_yaml_is_refused_with_its_line() {
        let e = convert(&test_path(), "master_list:\n- 10.0.0.1\n  bad: [\n").unwrap_err();
        match e {
            CompatError::Syntax { line, .. } => assert!(line >= 3, "line {line}"),
            other => panic!("{other}"),
        }
    }
}
