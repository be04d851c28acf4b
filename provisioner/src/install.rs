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
    /// The cluster's bearer token (secret: written as a 0600 file, never rendered into a script).
    pub token: Arc<Vec<u8>>,
    /// Where things go.
    pub layout: Layout,
    /// The controller's clock (Unix seconds) for the preflight's clock check.
    pub controller_epoch: u64,
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
pub fn agent_url(node: &NodeState) -> String {
    format!("http://{}", api_address(node))
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
        if let Layout::Sandbox { root } = &self.layout {
            let base = root.join(&node.name);
            let at = |sub: &str| base.join(sub).display().to_string();
            p.paths = InstallPaths {
                bin: at("bin/dccore"),
                config_dir: at("etc"),
                work_root: at("var/lib"),
                log_dir: at("var/log"),
                run_dir: at("run"),
                unit_dir: at("etc/systemd"),
            };
            // A sandbox shares the host's disk with everything else: ask only for what a test cluster needs.
            p.min_free_mb = 100;
        }
        // The definition's core config, the keys of this role, as dccore's `--config` JSON.
        let applies = if ctx.change.role.is_agent() {
            core_config::Applies::Agent
        } else {
            core_config::Applies::Master
        };
        let json = serde_json::Value::Object(core_config::for_role(&ctx.spec.core.config, applies));
        p.config_json = format!("{json:#}\n");
        if ctx.change.role.is_agent() {
            let master = ctx.masters.first().ok_or_else(|| {
                err(
                    "install",
                    "an agent needs a master, and the state has none yet".into(),
                )
            })?;
            p.master_url = Some(format!("http://{}", api_address(master)));
            p.advertise_url = Some(agent_url(node));
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
        let files = |ops: &mut Vec<RemoteOp>| {
            ops.push(RemoteOp::Write {
                contents: self.token.clone(),
                dest: r.paths.token_file.clone(),
                mode: 0o600,
            });
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
                    format!(
                        "{} probe $pf --master {} --token-file {} --timeout-secs {PROBE_TIMEOUT_SECS}",
                        q(&r.paths.bin),
                        q(&format!("http://{}", api_address(&ctx.node))),
                        q(&r.paths.token_file),
                    )
                };
                check.push_str(&probe);
                check.push('\n');
                ops.push(RemoteOp::Run {
                    label: "wait until healthy".into(),
                    script: check,
                    timeout: Duration::from_secs(PROBE_TIMEOUT_SECS + 5),
                    until_ok: Some(Backoff {
                        initial: Duration::from_millis(100),
                        max: Duration::from_secs(1),
                        attempts: 90,
                    }),
                });
            }
            Step::Drain if ctx.change.role.is_agent() => {
                let q = dcform_bootstrap::ssh::shell_quote;
                let master = p.master_url.clone().ok_or_else(|| InstallError {
                    node: ctx.node.name.clone(),
                    step: step.name(),
                    message: "an agent needs a master to be drained".into(),
                })?;
                // Kill grace comes from each task (or the agent's default); the step fails if the
                // tasks are not gone in time, so the node is not removed under running work.
                ops.push(run(
                    "drain",
                    format!(
                        "set -e\n{} drain --master {} --token-file {} --agent-url {} --timeout-secs {DRAIN_TIMEOUT_SECS}\n",
                        q(&r.paths.bin),
                        q(&master),
                        q(&r.paths.token_file),
                        q(&agent_url(&ctx.node)),
                    ),
                    Duration::from_secs(DRAIN_TIMEOUT_SECS + 30),
                ));
            }
            Step::Reactivate if ctx.change.role.is_agent() => {
                let q = dcform_bootstrap::ssh::shell_quote;
                let master = p.master_url.clone().ok_or_else(|| InstallError {
                    node: ctx.node.name.clone(),
                    step: step.name(),
                    message: "an agent needs a master to be reactivated".into(),
                })?;
                ops.push(RemoteOp::Run {
                    label: "reactivate".into(),
                    script: format!(
                        "set -e\n{} reactivate --master {} --token-file {} --agent-url {}\n",
                        q(&r.paths.bin),
                        q(&master),
                        q(&r.paths.token_file),
                        q(&agent_url(&ctx.node)),
                    ),
                    timeout: Duration::from_secs(PROBE_TIMEOUT_SECS + 10),
                    until_ok: Some(Backoff {
                        initial: Duration::from_millis(200),
                        max: Duration::from_secs(2),
                        attempts: 20,
                    }),
                });
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
        ScriptInstaller {
            core_binary: PathBuf::from("/tmp/dccore"),
            core_arch: "x86_64".into(),
            token: Arc::new(b"secret".to_vec()),
            layout,
            controller_epoch: 1_800_000_000,
        }
    }

    fn scripts(ops: &[RemoteOp]) -> Vec<(&str, &str)> {
        ops.iter()
            .filter_map(|op| match op {
                RemoteOp::Run { label, script, .. } => Some((label.as_str(), script.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn agent_waits_for_its_own_live_registration_and_drains_by_its_advertised_url() {
        let i = installer(Layout::Host);
        let c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
        let ops = i.ops(Step::WaitHealthy, &c).expect("render");
        let [(_, wait)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
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

        let ops = i.ops(Step::Drain, &c).expect("render");
        let [(label, drain)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert_eq!(label, "drain");
        assert!(
            drain.contains(
                "/usr/local/bin/dccore drain --master http://10.0.0.2:5050 --token-file /etc/dcform/token \
                 --agent-url http://10.0.0.3:5051 --timeout-secs 120"
            ),
            "{drain}"
        );
        // The agent advertises the very URL the probe and the drain look for.
        let ops = i.ops(Step::Start, &c).expect("render");
        let [(_, install)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert!(
            install.contains("--advertise-url http://10.0.0.3:5051"),
            "{install}"
        );
    }

    #[test]
    fn master_probes_itself_and_has_nothing_to_drain() {
        let i = installer(Layout::Host);
        let c = ctx(
            node("masters-1", "masters", Role::Master, "10.0.0.2"),
            vec![],
        );
        let ops = i.ops(Step::WaitHealthy, &c).expect("render");
        let [(_, wait)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert!(
            wait.contains("probe $pf --master http://10.0.0.2:5050 --token-file /etc/dcform/token --timeout-secs 5\n"),
            "{wait}"
        );
        assert!(!wait.contains("--agent-url"), "{wait}");
        assert!(i.ops(Step::Drain, &c).expect("render").is_empty());
    }

    #[test]
    fn sandbox_agent_uses_its_recorded_address_and_sandbox_paths() {
        let i = installer(Layout::Sandbox {
            root: PathBuf::from("/tmp/c"),
        });
        let c = ctx(
            node("agents-1", "agents", Role::Agent, "127.0.0.1:40001"),
            vec![],
        );
        let ops = i.ops(Step::Drain, &c).expect("render");
        let [(_, drain)] = scripts(&ops)[..] else {
            panic!("one script: {ops:?}");
        };
        assert!(
            drain.contains(
                "/tmp/c/agents-1/bin/dccore drain --master http://10.0.0.2:5050 --token-file /tmp/c/agents-1/etc/token \
                 --agent-url http://127.0.0.1:40001"
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
                RemoteOp::Write { contents, dest, .. } if dest.ends_with(".json") => {
                    Some(contents.clone())
                }
                _ => None,
            });
            serde_json::from_slice(&json.expect("a config file is written")).expect("valid JSON")
        };
        assert_eq!(
            written(master),
            serde_json::json!({"agent_timeout_secs": 2.0})
        );
        assert_eq!(written(agent), serde_json::json!({"kill_grace_secs": 1.0}));
    }
}
