//! The installer: turns a plan step on a node into [`RemoteOp`]s from the install templates
//! (`dcform_bootstrap::install`, `templates/`). Pure rendering; the executor carries the ops out.
//!
//! | step | ops |
//! |---|---|
//! | install | preflight script, upload dccore (0755), write token (0600) and config |
//! | configure | write token and config |
//! | start / restart | install script (idempotent: unit or `dccore supervise`, start; `CHANGED=1` restarts) |
//! | wait-healthy | poll until the process runs and (agents) the master gave it an id |
//! | drain | nothing to move yet (see docs/status.md) |
//! | uninstall | uninstall script: stop, remove every file and unit the install made |

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dcform_bootstrap::install::{self as tpl, InstallParams, InstallPaths};

use crate::apply::{Backoff, InstallError, Installer, NodeContext, RemoteOp};
use crate::plan::Step;
use crate::spec::Role;
use crate::state::NodeState;

/// Default API ports on machines of their own (docker, ssh, aws): Mesos' conventions.
pub const MASTER_PORT: u16 = 5050;
/// Agent API port on machines of their own.
pub const AGENT_PORT: u16 = 5051;

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
        if ctx.change.role.is_agent() {
            let master = ctx.masters.first().ok_or_else(|| {
                err(
                    "install",
                    "an agent needs a master, and the state has none yet".into(),
                )
            })?;
            p.master_url = Some(format!("http://{}", api_address(master)));
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
                let work = dcform_bootstrap::ssh::shell_quote(&r.paths.work_dir);
                let pid = dcform_bootstrap::ssh::shell_quote(&r.paths.pid_file);
                // The process runs and listens (it wrote its address); an agent also holds the id the master gave it.
                let mut check = format!(
                    "set -e\n[ -s {work}/address ]\nif [ -f {pid} ]; then kill -0 \"$(cat {pid})\"; fi\n"
                );
                if ctx.change.role.is_agent() {
                    check.push_str(&format!("find {work} -name agent.json | grep -q .\n"));
                }
                ops.push(RemoteOp::Run {
                    label: "wait until healthy".into(),
                    script: check,
                    timeout: Duration::from_secs(10),
                    until_ok: Some(Backoff {
                        initial: Duration::from_millis(100),
                        max: Duration::from_secs(1),
                        attempts: 90,
                    }),
                });
            }
            Step::Drain => {}
            Step::Uninstall => ops.push(run(
                "uninstall",
                r.uninstall.clone(),
                Duration::from_secs(120),
            )),
            Step::CreateNode | Step::DestroyNode => {}
        }
        Ok(ops)
    }
}
