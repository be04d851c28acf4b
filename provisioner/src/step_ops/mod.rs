//! Step ops: what each plan step runs on a node. [`ScriptInstaller`] (the [`Installer`]) turns a step into
//! [`RemoteOp`]s from the install templates
//! (`dcform_bootstrap::templates`, `templates/`). Pure rendering; the executor carries the ops out.
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

use dcform_bootstrap::templates::{self as tpl, InstallParams, InstallPaths};

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
    /// The dccore binary to upload (its architecture is checked by the preflight against `uname -m`).
    /// `None` for `apply --infra-only`, which installs nothing and so needs no binary.
    pub core: Option<crate::core_binary::CoreBinary>,
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
    /// The masters' shared secret (their Raft RPCs): masters only, as `replica.secret`.
    pub replica_secret: Vec<u8>,
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

/// The `host:port` the cluster's other nodes reach `node`'s API at (its [`NodeState::cluster_address`]:
/// the private address where the provider has one; sandboxes carry their own port), else the role's
/// default port. What a node listens on, advertises and is told its master is.
pub fn api_address(node: &NodeState) -> String {
    with_port(node.cluster_address(), node.role)
}

/// The `host:port` dcform reaches `node`'s API at from outside the cluster's network (its public
/// address; the same as [`api_address`] for providers with one address per node).
pub fn public_api_address(node: &NodeState) -> String {
    with_port(node.public_address().or(node.cluster_address()), node.role)
}

fn with_port(addr: Option<&str>, role: Role) -> String {
    let addr = addr.unwrap_or("127.0.0.1");
    if addr.contains(':') {
        addr.to_string()
    } else {
        let port = if role == Role::Master {
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
        let role = ctx.change.role;
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
        if let Some(core) = &self.core {
            p.binary_arch = core.arch.clone();
        }
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
        if role == Role::Master {
            replica_config(ctx, &mut config).map_err(|m| err("install", m))?;
        }
        let sandbox = matches!(self.layout, Layout::Sandbox { .. });
        if sandbox && role.is_agent() {
            sandbox_agent::set_hostname(node, &mut config);
        }
        // Service discovery on machines of their own (docker, ssh): see `resolvers.rs`.
        resolvers::point_at_masters(&self.layout, ctx, &mut p, &mut config);
        let json = serde_json::Value::Object(config);
        p.config_json = format!("{json:#}\n");
        if ctx.change.role.is_agent() {
            let urls = agent_master_urls(ctx);
            if urls.is_empty() {
                return Err(err(
                    "install",
                    "an agent needs a master, and the state has none yet".into(),
                ));
            }
            // Every master: the agent finds the leader among them itself (a follower redirects).
            p.master_url = Some(urls.join(","));
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
            if sandbox {
                p.resources = sandbox_agent::resources(p.resources.as_deref(), node);
            }
        }
        Ok(p)
    }
}

/// The file name of the masters' secret, beside the master config.
pub const REPLICA_SECRET_NAME: &str = "replica.secret";

/// The `replica_*` keys of a master's config: its id, the group's members it knows (every
/// member master in the state and itself, as in-cluster URLs `ID=URL`; a founder: itself
/// alone), the secret file (beside the config), and `replica_init` for a founder only.
fn replica_config(
    ctx: &NodeContext,
    config: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let node = &ctx.node;
    let id = node
        .replica_id
        .or(ctx.change.replica_id)
        .ok_or_else(|| "internal: a master without an id in the masters' group".to_string())?;
    let url = |n: &NodeState| format!("{}://{}", scheme(&ctx.spec), api_address(n));
    let mut peers = vec![format!("{id}={}", url(node))];
    if !ctx.change.founds_group {
        for m in &ctx.masters {
            if m.name == node.name || !m.replica_member {
                continue;
            }
            if let Some(mid) = m.replica_id {
                peers.push(format!("{mid}={}", url(m)));
            }
        }
    }
    peers.sort();
    config.insert("replica_id".into(), serde_json::json!(id));
    config.insert("replica_peers".into(), serde_json::json!(peers));
    config.insert(
        "replica_secret_file".into(),
        serde_json::json!(REPLICA_SECRET_NAME),
    );
    if ctx.change.founds_group {
        config.insert("replica_init".into(), serde_json::json!(true));
    }
    Ok(())
}

/// Every master URL an agent is told: the masters the definition wants that the state has
/// (one being removed is left out; a master not created yet is not known).
fn agent_master_urls(ctx: &NodeContext) -> Vec<String> {
    let wanted = crate::plan::master_set(&ctx.spec);
    let mut urls: Vec<String> = ctx
        .masters
        .iter()
        .filter(|m| {
            let key = match &m.host {
                Some(h) => format!("{}:{h}", m.pool),
                None => m.name.clone(),
            };
            wanted.contains(&key) && m.cluster_address().is_some()
        })
        .map(|m| format!("{}://{}", scheme(&ctx.spec), api_address(m)))
        .collect();
    if urls.is_empty() {
        // A definition whose masters are all going away still names the ones there are.
        urls = ctx
            .masters
            .iter()
            .map(|m| format!("{}://{}", scheme(&ctx.spec), api_address(m)))
            .collect();
    }
    urls
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
        Ok((m, paths.for_role(Role::Master)))
    }
}

/// The liveness check of `node`'s role (`templates/running.sh.j2`): exit 0 when its dccore runs,
/// 3 when it does not. Needs only where the install went, not the cluster's secrets or binary.
pub fn running_check(
    layout: &Layout,
    cluster: &str,
    node: &NodeState,
) -> Result<String, InstallError> {
    let role = node.role;
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

/// What a node's certificate is valid for: every address it is reached at, from outside and inside.
fn cert_names(node: &NodeState) -> Vec<String> {
    let mut names = node.addresses.clone();
    names.extend(node.private_address.iter().cloned());
    names
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
                ca.issue(&ctx.node.name, ctx.change.role, &cert_names(&ctx.node))
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
                ops.push(secret(
                    &s.replica_secret,
                    &format!("{}/{REPLICA_SECRET_NAME}", r.paths.config_dir),
                ));
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
                let core = self.core.as_ref().ok_or_else(|| InstallError {
                    node: ctx.node.name.clone(),
                    step: step.name(),
                    message: "internal: an install step in a run built without the core binary (--infra-only)".into(),
                })?;
                ops.push(RemoteOp::Upload {
                    src: core.path.clone(),
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
                let several_masters = crate::plan::master_set(&ctx.spec).len() > 1;
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
                    if several_masters {
                        // A follower answers operator calls with a redirect to the leader: the
                        // executor judges a master of a group by its own GET /replica (a voter
                        // that knows the leader) once the process runs.
                        String::new()
                    } else {
                        probe
                    }
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
                // agent holds one. The agent is named by the URL it registered with. Every
                // master is named, as the agents are told them: the call reaches the leader
                // wherever it is, passing over a master that does not answer.
                let q = dcform_bootstrap::ssh::shell_quote;
                let (_, mp) = self.master_side(ctx, step)?;
                let master_url = agent_master_urls(ctx).join(",");
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
            // The executor carries these out itself: the provider's, and the group's over the
            // masters' API.
            Step::CreateNode
            | Step::StartNode
            | Step::DestroyNode
            | Step::JoinGroup
            | Step::LeaveGroup => {}
        }
        Ok(ops)
    }
}

mod resolvers;
pub mod sandbox_agent;
pub use resolvers::{DNS_PORT, RESOLV_ORIG_NAME};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod config_tests;
