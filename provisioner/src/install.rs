//! The installer: turns a plan step on a node into [`RemoteOp`]s from the install templates
//! (`dcform_bootstrap::install`, `templates/`). Pure rendering; the executor carries the ops out.
//!
//! | step | ops |
//! |---|---|
//! | install | preflight script, upload dccore (0755), write token (0600) and config |
//! | configure | write token and config |
//! | start / restart | install script (idempotent: unit or `dccore supervise`, start; `CHANGED=1` restarts) |
//! | wait-healthy | poll until the process runs and `dccore probe` passes: the master is healthy and (agents) lists the agent's own URL as active |
//! | drain | agents: `dccore drain` on the node: DRAIN_AGENT for its URL, wait until its tasks are killed |
//! | reactivate | agents: `dccore reactivate` on the node: REACTIVATE_AGENT if the master holds it drained or deactivated |
//! | uninstall | uninstall script: stop, remove every file and unit the install made |

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dcform_bootstrap::install::{self as tpl, InstallParams, InstallPaths};

use crate::apply::{Backoff, InstallError, Installer, NodeContext, RemoteOp};
use crate::plan::Step;
use crate::spec::{Role, core_config};
use crate::state::NodeState;

/// Default API ports on machines of their own (docker, ssh, aws): Mesos' conventions.
pub const MASTER_PORT: u16 = 5050;
/// Agent API port on machines of their own.
pub const AGENT_PORT: u16 = 5051;
/// How long one `dccore probe` may take (the step retries it).
const PROBE_TIMEOUT_SECS: u64 = 5;
/// How long `dccore drain` waits for an agent's tasks to be gone before the removal fails.
pub const DRAIN_TIMEOUT_SECS: u64 = 120;

/// Where the install goes on a node.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Its own machine: FHS paths (`/usr/local/bin/dccore`, `/etc/dcform`, ...), ports 5050/5051.
    Host,
    /// A sandbox folder `<root>/<node>/` on a shared host (the local provider); ports from the node's address.
    Sandbox {
        /// Parent of the sandboxes.
        root: PathBuf,
    },
}

/// Renders install steps from the templates.
#[derive(Debug, Clone)]
pub struct ScriptInstaller {
    /// The dccore binary to upload.
    pub core_binary: PathBuf,
    /// Its architecture, checked by the preflight against `uname -m`.
    pub core_arch: String,
    /// The credentials and rules written to nodes (secrets: 0600 files, never rendered into a
    /// script).
    pub secrets: Arc<NodeSecrets>,
    /// Where things go.
    pub layout: Layout,
    /// The controller's clock (Unix seconds) for the preflight's clock check.
    pub controller_epoch: u64,
}

/// What dcform writes to nodes besides the binary and the config: each party's own credential.
/// Masters get the operator token (what they check operators against), the agents' credential
/// and the framework principals with their rules; agents get only the agents' credential and,
/// with TLS, their own certificate. No agent ever holds the operator token.
pub struct NodeSecrets {
    /// The operator token.
    pub operator_token: Vec<u8>,
    /// The agents' credential (the agent routes only).
    pub agent_token: Vec<u8>,
    /// The cluster CA, when the cluster uses TLS: each node's certificate is issued at install.
    pub ca: Option<crate::pki::ClusterCa>,
    /// Masters' `credentials.json` (Mesos credentials: the principals and their secrets).
    pub credentials_json: Vec<u8>,
    /// Masters' `acls.json` (Mesos ACL JSON).
    pub acls_json: Vec<u8>,
}

impl std::fmt::Debug for NodeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("NodeSecrets")
            .field("tls", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

/// `https://` with TLS, else `http://`.
pub fn scheme(spec: &crate::spec::ClusterSpec) -> &'static str {
    if spec.core.tls { "https" } else { "http" }
}

/// The `host:port` others reach `node`'s API at: its address as recorded (sandboxes carry their own port),
/// else the role's default port.
pub fn api_address(node: &NodeState) -> String {
    let addr = node
        .addresses
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    if addr.contains(':') {
        addr
    } else {
        let port = if node.role == Role::Master {
            MASTER_PORT
        } else {
            AGENT_PORT
        };
        format!("{addr}:{port}")
    }
}

/// The URL an agent node registers with: `http://` + its [`api_address`]. The agent listens there
/// and is also told to advertise it (`--advertise-url`), so that `dccore probe` and `dccore drain`
/// find it by this URL whatever listen address the layout picks.
pub fn agent_url(node: &NodeState, tls: bool) -> String {
    format!(
        "{}://{}",
        if tls { "https" } else { "http" },
        api_address(node)
    )
}

impl ScriptInstaller {
    fn params(&self, ctx: &NodeContext) -> Result<InstallParams, InstallError> {
        let node = &ctx.node;
        let err = |step: &'static str, message: String| InstallError {
            node: node.name.clone(),
            step,
            message,
        };
        let role = match ctx.change.role {
            Role::Master => tpl::Role::Master,
            Role::Agent => tpl::Role::Agent,
            Role::PublicAgent => tpl::Role::PublicAgent,
        };
        let reach = api_address(node);
        let listen = match self.layout {
            // Bind the node's own address, not 0.0.0.0: dccore advertises the address it listens on, and
            // agents registered as `0.0.0.0:5051` could not be reached by the master.
            Layout::Host => reach.clone(),
            Layout::Sandbox { .. } => reach.clone(),
        };
        let mut p = InstallParams::new(
            &ctx.spec.name,
            &node.name,
            role,
            &listen,
            self.controller_epoch,
        );
        p.binary_arch = self.core_arch.clone();
        p.tls = ctx.spec.core.tls;
        p.access_files = ctx.change.role == Role::Master;
        if let Layout::Sandbox { root } = &self.layout {
            p.paths = sandbox_paths(root, &node.name);
            // A sandbox shares the host's disk with everything else: ask only for what a test cluster needs.
            p.min_free_mb = 100;
        }
        // The definition's core config, the keys of this role, as dccore's `--config` JSON.
        let applies = if ctx.change.role.is_agent() {
            core_config::Applies::Agent
        } else {
            core_config::Applies::Master
        };
        let mut config = core_config::for_role(&ctx.spec.core.config, applies);
        // The user tasks run as when they name none (and, without a principal allowing more,
        // the only one): the same on masters (which decide) and agents (which run them).
        config.insert(
            "default_task_user".into(),
            serde_json::Value::String(ctx.spec.core.task_user.clone()),
        );
        let json = serde_json::Value::Object(config);
        p.config_json = format!("{json:#}\n");
        if ctx.change.role.is_agent() {
            let master = ctx.masters.first().ok_or_else(|| {
                err(
                    "install",
                    "an agent needs a master, and the state has none yet".into(),
                )
            })?;
            p.master_url = Some(format!("{}://{}", scheme(&ctx.spec), api_address(master)));
            p.advertise_url = Some(agent_url(node, ctx.spec.core.tls));
            let pool = ctx.spec.pools.iter().find(|p| p.name == node.pool);
            if let Some(pool) = pool {
                p.resources = pool.resources.clone();
                if !pool.attributes.is_empty() {
                    p.attributes = Some(
                        pool.attributes
                            .iter()
                            .map(|(k, v)| format!("{k}:{v}"))
                            .collect::<Vec<_>>()
                            .join(";"),
                    );
                }
            }
        }
        Ok(p)
    }
}

impl ScriptInstaller {
    /// The first master and its master-role paths (where operator calls run).
    fn master_side<'c>(
        &self,
        ctx: &'c NodeContext,
        step: Step,
    ) -> Result<(&'c NodeState, tpl::RolePaths), InstallError> {
        let m = ctx.masters.first().ok_or_else(|| InstallError {
            node: ctx.node.name.clone(),
            step: step.name(),
            message: "the state has no master to send the operator call to".into(),
        })?;
        let paths = match &self.layout {
            Layout::Host => InstallPaths::default(),
            Layout::Sandbox { root } => sandbox_paths(root, &m.name),
        };
        Ok((m, paths.for_role(tpl::Role::Master)))
    }
}

/// The liveness check of `node`'s role (`templates/running.sh.j2`): exit 0 when its dccore runs,
/// 3 when it does not. Needs only where the install went, not the cluster's secrets or binary.
pub fn running_check(
    layout: &Layout,
    cluster: &str,
    node: &NodeState,
) -> Result<String, InstallError> {
    let role = match node.role {
        Role::Master => tpl::Role::Master,
        Role::Agent => tpl::Role::Agent,
        Role::PublicAgent => tpl::Role::PublicAgent,
    };
    let mut p = InstallParams::new(cluster, &node.name, role, &api_address(node), 0);
    if let Layout::Sandbox { root } = layout {
        p.paths = sandbox_paths(root, &node.name);
    }
    // The renderer builds the role's whole command line, and an agent's needs a master URL;
    // the check itself does not use it.
    p.master_url = Some("http://master.invalid".into());
    tpl::render(&p)
        .map(|r| r.running)
        .map_err(|e| InstallError {
            node: node.name.clone(),
            step: "refresh",
            message: e.to_string(),
        })
}

/// The install paths of `node`'s sandbox under `root` (the local provider).
fn sandbox_paths(root: &std::path::Path, node: &str) -> InstallPaths {
    let base = root.join(node);
    let at = |sub: &str| base.join(sub).display().to_string();
    InstallPaths {
        bin: at("bin/dccore"),
        config_dir: at("etc"),
        work_root: at("var/lib"),
        log_dir: at("var/log"),
        run_dir: at("run"),
        unit_dir: at("etc/systemd"),
    }
}

fn run(label: &str, script: String, timeout: Duration) -> RemoteOp {
    RemoteOp::Run {
        label: label.into(),
        script,
        timeout,
        until_ok: None,
    }
}

impl Installer for ScriptInstaller {
    fn ops(&self, step: Step, ctx: &NodeContext) -> Result<Vec<RemoteOp>, InstallError> {
        let p = self.params(ctx)?;
        let r = tpl::render(&p).map_err(|e| InstallError {
            node: ctx.node.name.clone(),
            step: step.name(),
            message: e.to_string(),
        })?;
        let secret = |contents: &[u8], dest: &str| RemoteOp::Write {
            contents: Arc::new(contents.to_vec()),
            dest: dest.to_string(),
            mode: 0o600,
        };
        let is_master = ctx.change.role == Role::Master;
        // A certificate for the node's addresses as recorded now (issued again with every
        // install or configure, so a node whose address changed gets a matching one).
        let cert = match &self.secrets.ca {
            Some(ca) => Some(
                ca.issue(&ctx.node.name, ctx.change.role, &ctx.node.addresses)
                    .map_err(|e| InstallError {
                        node: ctx.node.name.clone(),
                        step: step.name(),
                        message: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let files = |ops: &mut Vec<RemoteOp>| {
            let s = &self.secrets;
            ops.push(secret(
                if is_master {
                    &s.operator_token
                } else {
                    &s.agent_token
                },
                &r.paths.token_file,
            ));
            if let (Some(ca), Some(c)) = (&s.ca, &cert) {
                ops.push(RemoteOp::Write {
                    contents: Arc::new(ca.cert_pem().as_bytes().to_vec()),
                    dest: r.paths.ca_file.clone(),
                    mode: 0o644,
                });
                ops.push(RemoteOp::Write {
                    contents: Arc::new(c.cert_pem.clone().into_bytes()),
                    dest: r.paths.cert_file.clone(),
                    mode: 0o644,
                });
                ops.push(secret(c.key_pem.as_bytes(), &r.paths.key_file));
            }
            if is_master {
                ops.push(secret(&s.agent_token, &r.paths.agent_tokens_file));
                ops.push(secret(&s.credentials_json, &r.paths.credentials_file));
                ops.push(secret(&s.acls_json, &r.paths.acls_file));
            }
            ops.push(RemoteOp::Write {
                contents: Arc::new(r.config.clone().into_bytes()),
                dest: r.paths.config_file.clone(),
                mode: 0o644,
            });
        };
        let mut ops = Vec::new();
        match step {
            Step::Install => {
                ops.push(run(
                    "preflight",
                    r.preflight.clone(),
                    Duration::from_secs(60),
                ));
                ops.push(RemoteOp::Upload {
                    src: self.core_binary.clone(),
                    dest: r.paths.bin.clone(),
                    mode: 0o755,
                });
                files(&mut ops);
            }
            Step::Configure => files(&mut ops),
            Step::Start => ops.push(run(
                "install",
                format!("CHANGED=0\nexport CHANGED\n{}", r.install),
                Duration::from_secs(120),
            )),
            Step::Restart => ops.push(run(
                "install (restart)",
                format!("CHANGED=1\nexport CHANGED\n{}", r.install),
                Duration::from_secs(120),
            )),
            Step::WaitHealthy => {
                let q = dcform_bootstrap::ssh::shell_quote;
                let work = q(&r.paths.work_dir);
                let pid = q(&r.paths.pid_file);
                // What runs *now*, never what ran before: the process this start made listens (it
                // wrote its address; the install removed the old one), its supervisor runs (not a
                // stale pid file, not a zombie), and then:
                // - an agent: its own registration file says the master accepted this very process
                //   and answered it within three heartbeats, and offers it (not deactivated or
                //   draining). The master's GET_AGENTS would still list a dead agent as active
                //   until its agent timeout.
                // - a master: it answers GET_HEALTH healthy.
                let mut check = format!(
                    "set -e\n[ -s {work}/address ]\npf=\nif [ -f {pid} ]; then pf=\"--pid-file {pid}\"; fi\n"
                );
                let probe = if ctx.change.role.is_agent() {
                    format!("{} probe $pf --agent-work-dir {work}", q(&r.paths.bin),)
                } else {
                    let mut probe = format!(
                        "{} probe $pf --master {} --token-file {} --timeout-secs {PROBE_TIMEOUT_SECS}",
                        q(&r.paths.bin),
                        q(&format!(
                            "{}://{}",
                            scheme(&ctx.spec),
                            api_address(&ctx.node)
                        )),
                        q(&r.paths.token_file),
                    );
                    if ctx.spec.core.tls {
                        probe.push_str(&format!(" --ca-file {}", q(&r.paths.ca_file)));
                    }
                    probe
                };
                check.push_str(&probe);
                check.push('\n');
                ops.push(RemoteOp::Run {
                    label: "wait until healthy".into(),
                    script: check,
                    timeout: Duration::from_secs(PROBE_TIMEOUT_SECS + 5),
                    until_ok: Some(
                        Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
                            .attempts(90),
                    ),
                });
            }
            Step::Drain | Step::Reactivate if ctx.change.role.is_agent() => {
                // Operator calls, so they run on the first master, with its operator token: no
                // agent holds one. The agent is named by the URL it registered with.
                let q = dcform_bootstrap::ssh::shell_quote;
                let (m, mp) = self.master_side(ctx, step)?;
                let master_url = format!("{}://{}", scheme(&ctx.spec), api_address(m));
                let mut call = format!(
                    "set -e\n{} {} --master {} --token-file {} --agent-url {}",
                    q(&mp.bin),
                    if step == Step::Drain {
                        "drain"
                    } else {
                        "reactivate"
                    },
                    q(&master_url),
                    q(&mp.token_file),
                    q(&agent_url(&ctx.node, ctx.spec.core.tls)),
                );
                if ctx.spec.core.tls {
                    call.push_str(&format!(" --ca-file {}", q(&mp.ca_file)));
                }
                let op = if step == Step::Drain {
                    // Kill grace comes from each task (or the agent's default); the step fails if
                    // the tasks are not gone in time, so the node is not removed under running work.
                    call.push_str(&format!(" --timeout-secs {DRAIN_TIMEOUT_SECS}\n"));
                    run("drain", call, Duration::from_secs(DRAIN_TIMEOUT_SECS + 30))
                } else {
                    call.push('\n');
                    RemoteOp::Run {
                        label: "reactivate".into(),
                        script: call,
                        timeout: Duration::from_secs(PROBE_TIMEOUT_SECS + 10),
                        until_ok: Some(
                            Backoff::new(Duration::from_millis(200), Duration::from_secs(2))
                                .attempts(20),
                        ),
                    }
                };
                ops.push(RemoteOp::OnMaster(Box::new(op)));
            }
            // Masters hold no tasks.
            Step::Drain | Step::Reactivate => {}
            Step::Uninstall => ops.push(run(
                "uninstall",
                r.uninstall.clone(),
                Duration::from_secs(120),
            )),
            Step::CreateNode | Step::StartNode | Step::DestroyNode => {}
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    pub(super) use super::*;
    use crate::plan::{Action, CoreTarget, NodeChange};
    use crate::spec::{
        ClusterSpec, CoreSpec, LocalProvider, PoolSize, PoolSpec, ProviderSpec, SshSpec,
    };
    use crate::state::NodeStatus;
    use std::collections::BTreeMap;

    pub(super) fn node(name: &str, pool: &str, role: Role, addr: &str) -> NodeState {
        NodeState {
            name: name.into(),
            pool: pool.into(),
            index: 1,
            role,
            host: None,
            provider_id: None,
            addresses: vec![addr.into()],
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: NodeStatus::Running,
        }
    }

    pub(super) fn ctx(n: NodeState, steps: Vec<Step>) -> NodeContext {
        let pool = |name: &str, role| PoolSpec {
            name: name.into(),
            role,
            size: PoolSize::Count(1),
            attributes: BTreeMap::new(),
            resources: None,
            instance_type: None,
        };
        NodeContext {
            spec: Arc::new(ClusterSpec {
                name: "demo".into(),
                provider: ProviderSpec::Local(LocalProvider::default()),
                ssh: SshSpec::default(),
                core: CoreSpec::default(),
                pools: vec![pool("masters", Role::Master), pool("agents", Role::Agent)],
                definition_dir: PathBuf::from("."),
            }),
            change: NodeChange {
                node: n.name.clone(),
                pool: n.pool.clone(),
                index: n.index,
                role: n.role,
                host: None,
                action: Action::Create,
                reason: "test".into(),
                steps,
                wave: 0,
                config_hash: None,
            },
            node: n,
            core: CoreTarget {
                version: "1.0.0".into(),
            },
            masters: vec![node("masters-1", "masters", Role::Master, "10.0.0.2")],
            resources: BTreeMap::new(),
        }
    }

    pub(super) fn installer(layout: Layout) -> ScriptInstaller {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = crate::pki::ClusterCa::load_or_create(dir.path(), "demo").expect("CA");
        ScriptInstaller {
            core_binary: PathBuf::from("/tmp/dccore"),
            core_arch: "x86_64".into(),
            secrets: Arc::new(NodeSecrets {
                operator_token: b"operator-secret".to_vec(),
                agent_token: b"agent-secret".to_vec(),
                ca: Some(ca),
                credentials_json: b"{\"credentials\":[]}".to_vec(),
                acls_json: b"{}".to_vec(),
            }),
            layout,
            controller_epoch: 1_800_000_000,
        }
    }

    /// Scripts with where they run: `(on_master, label, script)`.
    fn scripts(ops: &[RemoteOp]) -> Vec<(bool, &str, &str)> {
        ops.iter()
            .filter_map(|op| match op {
                RemoteOp::Run { label, script, .. } => {
                    Some((false, label.as_str(), script.as_str()))
                }
                RemoteOp::OnMaster(inner) => match inner.as_ref() {
                    RemoteOp::Run { label, script, .. } => {
                        Some((true, label.as_str(), script.as_str()))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Files written: `(dest, mode, contents)`.
    fn writes(ops: &[RemoteOp]) -> Vec<(&str, u32, String)> {
        ops.iter()
            .filter_map(|op| match op {
                RemoteOp::Write {
                    contents,
                    dest,
                    mode,
                } => Some((
                    dest.as_str(),
                    *mode,
                    String::from_utf8_lossy(contents).into_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn agent_waits_for_its_own_live_registration_and_drains_by_its_advertised_url() {
        let i = installer(Layout::Host);
        let c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
        let ops = i.ops(Step::WaitHealthy, &c).expect("render");
        let [(false, _, wait)] = scripts(&ops)[..] else {
            panic!("one script on the node: {ops:?}");
        };
        // Judged from what the agent running now was told by the master, not from the master's
        // memory (which lists a dead agent as active until its timeout); no operator token needed.
        assert!(
            wait.contains(
                "/usr/local/bin/dccore probe $pf --agent-work-dir /var/lib/dcform/agent\n"
            ),
            "{wait}"
        );
        assert!(
            wait.contains("pf=\"--pid-file /run/dcform/agent.pid\""),
            "the supervisor must run (a stale pid file fails): {wait}"
        );
        assert!(!wait.contains("--token-file"), "{wait}");
        let RemoteOp::Run { until_ok, .. } = &ops[0] else {
            panic!("{ops:?}");
        };
        assert!(until_ok.is_some(), "health is retried");

        // Drain and reactivate are operator calls: they run on the master, with its token.
        for (step, verb) in [(Step::Drain, "drain"), (Step::Reactivate, "reactivate")] {
            let ops = i.ops(step, &c).expect("render");
            let [(true, label, script)] = scripts(&ops)[..] else {
                panic!("one script on the master: {ops:?}");
            };
            assert_eq!(label, verb);
            assert!(
                script.contains(&format!(
                    "/usr/local/bin/dccore {verb} --master https://10.0.0.2:5050 --token-file /etc/dcform/master.token \
                     --agent-url https://10.0.0.3:5051 --ca-file /etc/dcform/ca.pem"
                )),
                "{script}"
            );
        }
        // The agent advertises the very URL the probe and the drain look for.
        let ops = i.ops(Step::Start, &c).expect("render");
        let [(false, _, install)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert!(
            install.contains("--advertise-url https://10.0.0.3:5051"),
            "{install}"
        );
        assert!(
            install.contains("--master https://10.0.0.2:5050"),
            "{install}"
        );
    }

    /// Found: one token was shared by operators and every agent. An agent node gets the agents'
    /// credential, its own certificate and key (0600) and the CA; never the operator token.
    #[test]
    fn an_agent_node_never_receives_the_operator_token() {
        let i = installer(Layout::Host);
        let c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
        let ops = i.ops(Step::Install, &c).expect("render");
        let w = writes(&ops);
        assert!(
            w.iter().all(|(_, _, c)| !c.contains("operator-secret")),
            "{:?}",
            w.iter().map(|(d, _, _)| d).collect::<Vec<_>>()
        );
        let file = |d: &str| w.iter().find(|(dest, _, _)| *dest == d).cloned();
        assert_eq!(
            file("/etc/dcform/agent.token").map(|(_, m, c)| (m, c)),
            Some((0o600, "agent-secret".to_string()))
        );
        let (_, mode, key) = file("/etc/dcform/agent.key").expect("a key");
        assert_eq!(mode, 0o600);
        assert!(key.contains("PRIVATE KEY"));
        assert!(file("/etc/dcform/agent.crt").is_some() && file("/etc/dcform/ca.pem").is_some());
        assert!(file("/etc/dcform/credentials.json").is_none());
    }

    #[test]
    fn a_master_node_gets_the_operator_token_agent_credentials_and_the_principals() {
        let i = installer(Layout::Host);
        let c = ctx(
            node("masters-1", "masters", Role::Master, "10.0.0.2"),
            vec![],
        );
        let ops = i.ops(Step::Configure, &c).expect("render");
        let w = writes(&ops);
        for (dest, mode) in [
            ("/etc/dcform/master.token", 0o600),
            ("/etc/dcform/agent-tokens", 0o600),
            ("/etc/dcform/credentials.json", 0o600),
            ("/etc/dcform/acls.json", 0o600),
            ("/etc/dcform/master.key", 0o600),
        ] {
            assert!(
                w.iter().any(|(d, m, _)| *d == dest && *m == mode),
                "{dest} {mode:o} missing: {:?}",
                w.iter().map(|(d, m, _)| (d, m)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn master_probes_itself_over_https_and_has_nothing_to_drain() {
        let i = installer(Layout::Host);
        let c = ctx(
            node("masters-1", "masters", Role::Master, "10.0.0.2"),
            vec![],
        );
        let ops = i.ops(Step::WaitHealthy, &c).expect("render");
        let [(false, _, wait)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert!(
            wait.contains("probe $pf --master https://10.0.0.2:5050 --token-file /etc/dcform/master.token --timeout-secs 5 --ca-file /etc/dcform/ca.pem\n"),
            "{wait}"
        );
        assert!(!wait.contains("--agent-url"), "{wait}");
        assert!(i.ops(Step::Drain, &c).expect("render").is_empty());
    }

    #[test]
    fn plain_http_only_when_the_definition_asks_for_it() {
        let i = installer(Layout::Host);
        let mut c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
        let mut spec = (*c.spec).clone();
        spec.core.tls = false;
        c.spec = Arc::new(spec);
        let ops = i.ops(Step::Drain, &c).expect("render");
        let [(true, _, drain)] = scripts(&ops)[..] else {
            panic!("{ops:?}");
        };
        assert!(drain.contains("--master http://10.0.0.2:5050"), "{drain}");
        assert!(!drain.contains("--ca-file"), "{drain}");
    }

    #[test]
    fn sandbox_agent_is_drained_from_the_masters_sandbox() {
        let i = installer(Layout::Sandbox {
            root: PathBuf::from("/tmp/c"),
        });
        let c = ctx(
            node("agents-1", "agents", Role::Agent, "127.0.0.1:40001"),
            vec![],
        );
        let ops = i.ops(Step::Drain, &c).expect("render");
        let [(true, _, drain)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert!(
            drain.contains(
                "/tmp/c/masters-1/bin/dccore drain --master https://10.0.0.2:5050 --token-file /tmp/c/masters-1/etc/master.token \
                 --agent-url https://127.0.0.1:40001"
            ),
            "{drain}"
        );
    }
}

#[cfg(test)]
mod config_tests {
    use super::tests::{ctx, installer, node};
    use super::*;

    #[test]
    fn each_role_gets_its_core_config_keys_as_dccore_json() {
        let master = node("masters-1", "masters", Role::Master, "10.0.0.2");
        let agent = node("agents-1", "agents", Role::Agent, "10.0.0.3");
        let written = |n: NodeState| -> serde_json::Value {
            let mut c = ctx(n, vec![Step::Install]);
            let mut spec = (*c.spec).clone();
            spec.core
                .config
                .insert("agent_timeout_secs".into(), serde_json::json!(2.0));
            spec.core
                .config
                .insert("kill_grace_secs".into(), serde_json::json!(1.0));
            c.spec = Arc::new(spec);
            let ops = installer(Layout::Host).ops(Step::Install, &c).expect("ops");
            let json = ops.iter().find_map(|op| match op {
                RemoteOp::Write { contents, dest, .. }
                    if dest.ends_with("/master.json") || dest.ends_with("/agent.json") =>
                {
                    Some(contents.clone())
                }
                _ => None,
            });
            serde_json::from_slice(&json.expect("a config file is written")).expect("valid JSON")
        };
        assert_eq!(
            written(master),
            serde_json::json!({"agent_timeout_secs": 2.0, "default_task_user": "nobody"})
        );
        assert_eq!(
            written(agent),
            serde_json::json!({"kill_grace_secs": 1.0, "default_task_user": "nobody"})
        );
    }
}
