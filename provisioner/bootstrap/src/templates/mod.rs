//! The install templates (`templates/` at the workspace root): pure rendering of the node's preflight, config, unit, install and uninstall
//! scripts from typed parameters (minijinja, strict undefined, templates embedded at build time).
//!
//! Secrets are not inputs here: tokens, keys and credentials travel as uploaded files (dcform's
//! `step_ops` writes them), so nothing rendered, logged or reported can contain them.

use minijinja::{Environment, UndefinedBehavior, context};

use crate::ssh::shell_quote;

/// The role of the node (the definition's pool role; [`Role::file_name`] names its files and units).
pub use dcform_model::Role;

const PREFLIGHT: &str = include_str!("../../../../templates/preflight.sh.j2");
const UNIT: &str = include_str!("../../../../templates/dccore.service.j2");
const INSTALL: &str = include_str!("../../../../templates/install.sh.j2");
const UNINSTALL: &str = include_str!("../../../../templates/uninstall.sh.j2");
/// Shell functions both the install and the uninstall include (`{% include "common.sh.j2" %}`).
const COMMON: &str = include_str!("../../../../templates/common.sh.j2");
const RUNNING: &str = include_str!("../../../../templates/running.sh.j2");

/// Errors of rendering. They name the template and what was wrong, never the values of secrets
/// (there are none in the context).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template failed to render (undefined variable, syntax error).
    #[error("template {template}: {reason}")]
    Render {
        /// Template file name.
        template: &'static str,
        /// minijinja's description.
        reason: String,
    },
    /// The parameters are inconsistent.
    #[error("invalid install parameters: {0}")]
    Invalid(String),
}

/// Where things go on the node. The defaults follow the FHS; every directory here belongs to
/// dcform alone, which is what lets uninstall remove them whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPaths {
    /// The dccore binary.
    pub bin: String,
    /// Config files, token and install manifests.
    pub config_dir: String,
    /// Parent of each role's work dir.
    pub work_root: String,
    /// Log files.
    pub log_dir: String,
    /// Pid files.
    pub run_dir: String,
    /// systemd units.
    pub unit_dir: String,
}

impl Default for InstallPaths {
    fn default() -> Self {
        Self {
            bin: "/usr/local/bin/dccore".into(),
            config_dir: "/etc/dcform".into(),
            work_root: "/var/lib/dcform".into(),
            log_dir: "/var/log/dcform".into(),
            run_dir: "/run/dcform".into(),
            unit_dir: "/etc/systemd/system".into(),
        }
    }
}

/// Paths of one role, derived from [`InstallPaths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePaths {
    /// The dccore binary.
    pub bin: String,
    /// Config dir.
    pub config_dir: String,
    /// `<config_dir>/<role>.json`: the role's `dccore --config` file.
    pub config_file: String,
    /// `<config_dir>/<role>.token` (mode 0600): the role's own credential (masters: the
    /// operator token they check; agents: the agents' credential).
    pub token_file: String,
    /// `<config_dir>/<role>.crt`: the node's certificate for this role (TLS).
    pub cert_file: String,
    /// `<config_dir>/<role>.key` (mode 0600): its private key.
    pub key_file: String,
    /// `<config_dir>/ca.pem`: the cluster CA certificate (shared by the roles of a host).
    pub ca_file: String,
    /// `<config_dir>/agent-tokens` (masters, 0600): the credentials agents may present.
    pub agent_tokens_file: String,
    /// `<config_dir>/credentials.json` (masters, 0600): framework principals and their secrets.
    pub credentials_file: String,
    /// `<config_dir>/acls.json` (masters): the access rules, Mesos ACL JSON.
    pub acls_file: String,
    /// `<config_dir>/manifest-<role>`: files this role's install made.
    pub manifest: String,
    /// `<work_root>/<role>`.
    pub work_dir: String,
    /// Work root.
    pub work_root: String,
    /// Log dir.
    pub log_dir: String,
    /// `<log_dir>/<role>.log`.
    pub log_file: String,
    /// Run dir.
    pub run_dir: String,
    /// `<run_dir>/<role>.pid`.
    pub pid_file: String,
    /// `<unit_dir>/dcform-<role>.service`.
    pub unit_file: String,
    /// `<config_dir>/boot-<role>.sh`: on hosts without systemd, starts the role's supervisor
    /// again when the machine (container) restarts; the node image's entry command runs it.
    pub boot_file: String,
    /// `<config_dir>/resolv.conf.orig`: the node's `/etc/resolv.conf` as it was before the
    /// install pointed it at the masters (shared by the roles of a host; uninstall puts it back).
    pub resolv_orig: String,
}

impl RolePaths {
    fn to_value(&self) -> minijinja::Value {
        minijinja::Value::from_pairs([
            ("bin", self.bin.clone()),
            ("config_dir", self.config_dir.clone()),
            ("config_file", self.config_file.clone()),
            ("token_file", self.token_file.clone()),
            ("cert_file", self.cert_file.clone()),
            ("key_file", self.key_file.clone()),
            ("ca_file", self.ca_file.clone()),
            ("agent_tokens_file", self.agent_tokens_file.clone()),
            ("credentials_file", self.credentials_file.clone()),
            ("acls_file", self.acls_file.clone()),
            ("manifest", self.manifest.clone()),
            ("work_dir", self.work_dir.clone()),
            ("work_root", self.work_root.clone()),
            ("log_dir", self.log_dir.clone()),
            ("log_file", self.log_file.clone()),
            ("run_dir", self.run_dir.clone()),
            ("pid_file", self.pid_file.clone()),
            ("unit_file", self.unit_file.clone()),
            ("boot_file", self.boot_file.clone()),
            ("resolv_orig", self.resolv_orig.clone()),
        ])
    }
}

impl InstallPaths {
    /// The paths of `role`.
    pub fn for_role(&self, role: Role) -> RolePaths {
        let r = role.file_name();
        RolePaths {
            bin: self.bin.clone(),
            config_dir: self.config_dir.clone(),
            config_file: format!("{}/{r}.json", self.config_dir),
            token_file: format!("{}/{r}.token", self.config_dir),
            cert_file: format!("{}/{r}.crt", self.config_dir),
            key_file: format!("{}/{r}.key", self.config_dir),
            ca_file: format!("{}/ca.pem", self.config_dir),
            agent_tokens_file: format!("{}/agent-tokens", self.config_dir),
            credentials_file: format!("{}/credentials.json", self.config_dir),
            acls_file: format!("{}/acls.json", self.config_dir),
            manifest: format!("{}/manifest-{r}", self.config_dir),
            work_dir: format!("{}/{r}", self.work_root),
            work_root: self.work_root.clone(),
            log_dir: self.log_dir.clone(),
            log_file: format!("{}/{r}.log", self.log_dir),
            run_dir: self.run_dir.clone(),
            pid_file: format!("{}/{r}.pid", self.run_dir),
            unit_file: format!("{}/dcform-{r}.service", self.unit_dir),
            boot_file: format!("{}/boot-{r}.sh", self.config_dir),
            resolv_orig: format!("{}/resolv.conf.orig", self.config_dir),
        }
    }
}

/// Everything that decides what is installed on one node (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallParams {
    /// Cluster name.
    pub cluster: String,
    /// Node address, e.g. `agents-2`.
    pub node: String,
    /// Role.
    pub role: Role,
    /// `--listen ADDR:PORT`.
    pub listen: String,
    /// `--master URL` (agents only).
    pub master_url: Option<String>,
    /// `--resources "..."` (agents only).
    pub resources: Option<String>,
    /// `--attributes "rack:r1;zone:a"` (agents only).
    pub attributes: Option<String>,
    /// `--advertise-url URL` (agents only): the URL the agent registers with, so that dcform can
    /// find it in the master's agent list (a wildcard listen address would leave the choice to dccore).
    pub advertise_url: Option<String>,
    /// Architecture of the dccore binary (`x86_64`, `aarch64`), checked against `uname -m`.
    pub binary_arch: String,
    /// Free space needed at the work dir, MiB.
    pub min_free_mb: u64,
    /// Ports that must be free (besides the listen port, which is always checked).
    pub extra_ports: Vec<u16>,
    /// The controller's clock (Unix seconds) when rendering, for the clock sanity check.
    pub controller_epoch: u64,
    /// Largest accepted clock difference, seconds.
    pub max_clock_skew_secs: u64,
    /// Where things go.
    pub paths: InstallPaths,
    /// The role's `dccore --config` file (JSON, as dccore reads it; dcform renders it from the definition's
    /// `core { config = ... }`). Default `{}`: dccore's defaults.
    pub config_json: String,
    /// Serve HTTPS with `paths.cert_file`/`key_file` and trust only `paths.ca_file` (the files are
    /// uploaded by dcform beside the config). Default: plain HTTP.
    pub tls: bool,
    /// Masters: dcform uploads `agent-tokens`, `credentials.json` and `acls.json` beside the
    /// config, and the master reads them. Default false (a master with its built-in rules).
    pub access_files: bool,
    /// The masters' IP addresses (at most 3 are written, resolv.conf's limit): the install saves
    /// the node's [`resolv_conf`](Self::resolv_conf) as `paths.resolv_orig` and writes these as
    /// its nameservers (keeping its `search`, `domain` and `options` lines), in place (in a
    /// container it is a bind mount); the uninstall writes the original back. Empty (the
    /// default): resolv.conf is left alone.
    pub resolvers: Vec<String>,
    /// The node's resolver configuration. Default `/etc/resolv.conf` (a parameter so the
    /// install script can be run for real against a scratch file).
    pub resolv_conf: String,
}

/// How many `nameserver` lines the C library's resolver reads (`MAXNS`); more are ignored.
pub const MAX_NAMESERVERS: usize = 3;

impl InstallParams {
    /// Parameters with default paths and checks (1 GiB free, 5 minutes of clock skew).
    pub fn new(cluster: &str, node: &str, role: Role, listen: &str, controller_epoch: u64) -> Self {
        Self {
            cluster: cluster.into(),
            node: node.into(),
            role,
            listen: listen.into(),
            master_url: None,
            resources: None,
            attributes: None,
            advertise_url: None,
            binary_arch: std::env::consts::ARCH.into(),
            min_free_mb: 1024,
            extra_ports: Vec::new(),
            controller_epoch,
            max_clock_skew_secs: 300,
            paths: InstallPaths::default(),
            config_json: "{}\n".into(),
            tls: false,
            access_files: false,
            resolvers: Vec::new(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }

    /// The port of `listen`.
    pub fn listen_port(&self) -> Result<u16, TemplateError> {
        self.listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| {
                TemplateError::Invalid(format!("listen {:?} is not ADDR:PORT", self.listen))
            })
    }

    /// The dccore command line for the role, as argv.
    pub fn dccore_argv(&self) -> Result<Vec<String>, TemplateError> {
        let p = self.paths.for_role(self.role);
        let mut v = vec![p.bin.clone()];
        match self.role {
            Role::Master => v.push("master".into()),
            Role::Agent | Role::PublicAgent => {
                v.push("agent".into());
                let url = self.master_url.clone().ok_or_else(|| {
                    TemplateError::Invalid(format!("node {}: an agent needs master_url", self.node))
                })?;
                v.extend(["--master".into(), url]);
            }
        }
        v.extend([
            "--listen".into(),
            self.listen.clone(),
            "--work-dir".into(),
            p.work_dir.clone(),
            "--token-file".into(),
            p.token_file.clone(),
        ]);
        if self.role != Role::Master {
            if self.role == Role::PublicAgent {
                v.push("--public".into());
            }
            if let Some(r) = &self.resources {
                v.extend(["--resources".into(), r.clone()]);
            }
            if let Some(a) = &self.attributes {
                v.extend(["--attributes".into(), a.clone()]);
            }
            if let Some(u) = &self.advertise_url {
                v.extend(["--advertise-url".into(), u.clone()]);
            }
        }
        if self.tls {
            v.extend([
                "--tls-cert".into(),
                p.cert_file.clone(),
                "--tls-key".into(),
                p.key_file.clone(),
                "--ca-file".into(),
                p.ca_file.clone(),
            ]);
        }
        if self.role == Role::Master && self.access_files {
            // Written by dcform with every install: who may call the agent routes, the
            // framework principals and their rules.
            v.extend([
                "--agent-token-file".into(),
                p.agent_tokens_file.clone(),
                "--credentials".into(),
                p.credentials_file.clone(),
                "--acls".into(),
                p.acls_file.clone(),
            ]);
        }
        v.extend(["--config".into(), p.config_file.clone()]);
        Ok(v)
    }
}

/// The rendered install of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedInstall {
    /// Preflight script (run with `sh -s`).
    pub preflight: String,
    /// Role config file content, to upload to `paths.config_file`.
    pub config: String,
    /// systemd unit content (the install script writes it where systemd runs).
    pub unit: String,
    /// Install + start script (run with `CHANGED=0|1 sh -s`).
    pub install: String,
    /// Uninstall script (run with `sh -s`).
    pub uninstall: String,
    /// Liveness check (run with `sh -s`): exit 0 when the role's dccore runs, 3 when it does not.
    pub running: String,
    /// The role's paths.
    pub paths: RolePaths,
    /// systemd unit name.
    pub unit_name: String,
}

/// systemd's quoting for ExecStart: double quotes where needed, `%` doubled (specifier escape).
fn systemd_quote(arg: &str) -> String {
    let a = arg.replace('%', "%%");
    if !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@+,".contains(&b))
    {
        return a;
    }
    format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Scripts, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("sh", |v: String| shell_quote(&v));
    env.add_template("common.sh.j2", COMMON)
        .expect("invariant: the embedded common.sh.j2 parses (rendered by every install test)");
    env
}

fn render_one(
    env: &Environment<'_>,
    name: &'static str,
    source: &'static str,
    ctx: &minijinja::Value,
) -> Result<String, TemplateError> {
    env.render_str(source, ctx.clone())
        .map_err(|e| TemplateError::Render {
            template: name,
            // Only the kind and the detail (a variable or filter name), never the context values.
            reason: match e.detail() {
                Some(d) => format!("{:?}: {d} (line {})", e.kind(), e.line().unwrap_or(0)),
                None => format!("{:?} (line {})", e.kind(), e.line().unwrap_or(0)),
            },
        })
}

/// Renders every template for one node. Pure: no I/O, no clock (the controller time is a parameter).
pub fn render(p: &InstallParams) -> Result<RenderedInstall, TemplateError> {
    let paths = p.paths.for_role(p.role);
    let listen_port = p.listen_port()?;
    let mut ports = vec![listen_port];
    ports.extend(p.extra_ports.iter().copied());
    ports.sort_unstable();
    ports.dedup();
    let argv = p.dccore_argv()?;
    let exec_start = argv
        .iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let supervise_sh = {
        let mut v = vec![
            paths.bin.clone(),
            "supervise".into(),
            "--pid-file".into(),
            paths.pid_file.clone(),
            "--log-file".into(),
            paths.log_file.clone(),
            "--".into(),
        ];
        v.extend(argv.iter().cloned());
        v.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let unit_name = format!("dcform-{}.service", p.role.file_name());
    let role = p.role.file_name();
    let resolvers = p
        .resolvers
        .iter()
        .take(MAX_NAMESERVERS)
        .cloned()
        .collect::<Vec<_>>();
    // Written into resolv.conf as they are: nothing but an address may go there.
    if let Some(bad) = resolvers
        .iter()
        .find(|r| r.parse::<std::net::IpAddr>().is_err())
    {
        return Err(TemplateError::Invalid(format!(
            "node {}: resolver {bad:?} is not an IP address (resolv.conf takes no host names)",
            p.node
        )));
    }
    let base = context! {
        cluster => p.cluster.clone(),
        node => p.node.clone(),
        role => role,
        listen => p.listen.clone(),
        master_url => p.master_url.clone().unwrap_or_default(),
        public => p.role == Role::PublicAgent,
        resources => p.resources.clone().unwrap_or_default(),
        attributes => p.attributes.clone().unwrap_or_default(),
        advertise_url => p.advertise_url.clone().unwrap_or_default(),
        binary_arch => p.binary_arch.clone(),
        min_free_mb => p.min_free_mb,
        ports => ports,
        controller_epoch => p.controller_epoch,
        max_clock_skew_secs => p.max_clock_skew_secs,
        paths => paths.to_value(),
        unit_name => unit_name.clone(),
        exec_start => exec_start,
        supervise_sh => supervise_sh,
        resolvers => resolvers,
        resolv_conf => p.resolv_conf.clone(),
    };
    let env = env();
    let preflight = render_one(&env, "preflight.sh.j2", PREFLIGHT, &base)?;
    let config = p.config_json.clone();
    let unit = render_one(&env, "dccore.service.j2", UNIT, &base)?;
    let manifest = vec![
        paths.bin.clone(),
        paths.config_file.clone(),
        paths.token_file.clone(),
        paths.cert_file.clone(),
        paths.key_file.clone(),
        paths.ca_file.clone(),
        paths.work_dir.clone(),
        paths.log_file.clone(),
        paths.pid_file.clone(),
        paths.unit_file.clone(),
        paths.boot_file.clone(),
    ];
    let install_ctx = context! { unit => unit.trim_end(), manifest => manifest, ..base.clone() };
    let install = render_one(&env, "install.sh.j2", INSTALL, &install_ctx)?;
    let mut role_paths = vec![
        paths.config_file.clone(),
        paths.token_file.clone(),
        paths.cert_file.clone(),
        paths.key_file.clone(),
        paths.manifest.clone(),
        paths.work_dir.clone(),
        paths.log_file.clone(),
        paths.pid_file.clone(),
        format!("{}/.install-{role}.lock", paths.config_dir),
        paths.unit_file.clone(),
        paths.boot_file.clone(),
    ];
    if p.role == Role::Master {
        role_paths.extend([
            paths.agent_tokens_file.clone(),
            paths.credentials_file.clone(),
            paths.acls_file.clone(),
        ]);
    }
    let shared_paths = vec![
        paths.bin.clone(),
        paths.ca_file.clone(),
        // The one token file of installs made before each role had its own.
        format!("{}/token", paths.config_dir),
        paths.config_dir.clone(),
        paths.work_root.clone(),
        paths.log_dir.clone(),
        paths.run_dir.clone(),
    ];
    let running = render_one(&env, "running.sh.j2", RUNNING, &base)?;
    let un_ctx = context! { role_paths => role_paths, shared_paths => shared_paths, ..base };
    let uninstall = render_one(&env, "uninstall.sh.j2", UNINSTALL, &un_ctx)?;
    Ok(RenderedInstall {
        preflight,
        running,
        config,
        unit,
        install,
        uninstall,
        paths,
        unit_name,
    })
}

#[cfg(test)]
mod tests;

#[cfg(all(test, unix))]
mod lock_tests;

#[cfg(all(test, unix))]
mod resolv_tests;
