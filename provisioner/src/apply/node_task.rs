//! One node's task during an apply: runs the node's steps in order (create, connect, upload,
//! install, start, wait healthy, drain, remove, group membership) and reports every finished step
//! to the executor loop, which alone owns the state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::executor::{ApplyOptions, NodeFailure, NodeUpdate};
use super::{
    Installer, Left, Membership, NodeContext, NodeRequest, Progress, ProgressEvent, Provider,
    ProviderError, Remote, RemoteError, RemoteOp,
};
use crate::plan::Step;
use crate::state::{NodeState, NodeStatus};
use dc_support::error::chain;
use dc_support::retry::{self, Next};

/// Everything one node's task needs; owned by the task.
pub(super) struct NodeTask<P: Provider, I: Installer> {
    pub(super) provider: Arc<P>,
    pub(super) installer: Arc<I>,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) opts: ApplyOptions,
    pub(super) uploads: Arc<Mutex<HashMap<PathBuf, Arc<Vec<u8>>>>>,
    pub(super) membership: Option<Arc<dyn Membership>>,
    pub(super) tx: mpsc::UnboundedSender<NodeUpdate>,
}

impl<P: Provider, I: Installer> NodeTask<P, I> {
    pub(super) async fn run(self, mut ctx: NodeContext, shutdown: CancellationToken) {
        let name = ctx.change.node.clone();
        let mut remote: Option<P::Remote> = None;
        // A master keeps its id on its machine; a new machine takes the plan's new id at create.
        if ctx.change.role == crate::spec::Role::Master
            && ctx.change.replica_id.is_some()
            && !ctx.change.steps.contains(&Step::CreateNode)
            && !matches!(
                ctx.change.action,
                crate::plan::Action::Remove | crate::plan::Action::Destroy
            )
        {
            ctx.node.replica_id = ctx.change.replica_id;
        }
        for step in ctx.change.steps.clone() {
            if shutdown.is_cancelled() {
                return; // the step before finished and was recorded; the next apply resumes here
            }
            self.progress.event(ProgressEvent::StepStarted {
                node: &name,
                step: step.name(),
            });
            if let Err(error) = self.step(step, &mut ctx, &mut remote).await {
                self.progress.event(ProgressEvent::NodeFailed {
                    node: &name,
                    error: &error,
                });
                let _ = self.tx.send(NodeUpdate::Failed(NodeFailure {
                    node: name.clone(),
                    step: step.name(),
                    error,
                }));
                return;
            }
        }
        self.progress.event(ProgressEvent::NodeDone {
            node: &name,
            what: &ctx.change.action.verb(),
        });
        let _ = self.tx.send(NodeUpdate::Done(name));
    }

    /// Runs a provider call, again after transient failures ([`ApplyOptions::provider_retry`]);
    /// the final error with its causes.
    async fn with_provider<T, F, Fut>(&self, mut call: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        retry::run(self.opts.provider_retry, |at| {
            let attempt = call();
            async move {
                match attempt.await {
                    Ok(v) => Next::Done(v),
                    Err(e) if e.transient => at.retry(e),
                    Err(e) => Next::Fail(e),
                }
            }
        })
        .await
        .map_err(|e| chain(&e.into_error()))
    }

    /// Sends the node's record to the loop and waits until it is saved, so that a step only starts once the
    /// previous one is on disk.
    async fn record(&self, node: &NodeState) {
        let (ack, saved) = oneshot::channel();
        if self.tx.send(NodeUpdate::Record(node.clone(), ack)).is_ok() {
            let _ = saved.await;
        }
    }

    async fn step(
        &self,
        step: Step,
        ctx: &mut NodeContext,
        remote: &mut Option<P::Remote>,
    ) -> Result<(), String> {
        match step {
            Step::CreateNode => {
                ctx.node.status = NodeStatus::Creating;
                if ctx.change.role == crate::spec::Role::Master {
                    // Recorded before the machine exists, so the id is never given twice.
                    ctx.node.replica_id = ctx.change.replica_id;
                } else {
                    ctx.node.replica_id = None;
                }
                ctx.node.replica_member = false;
                self.record(&ctx.node).await;
                let req = NodeRequest {
                    cluster: ctx.spec.name.clone(),
                    name: ctx.node.name.clone(),
                    pool: ctx.node.pool.clone(),
                    index: ctx.node.index,
                    role: ctx.change.role,
                    host: ctx.change.host.clone(),
                    instance_type: ctx
                        .spec
                        .pools
                        .iter()
                        .find(|p| p.name == ctx.node.pool)
                        .and_then(|p| p.instance_type.clone()),
                };
                let (provider, req) = (&self.provider, &req);
                let machine = self.with_provider(|| provider.create(req)).await?;
                ctx.node.provider_id = Some(machine.provider_id);
                ctx.node.addresses = machine.addresses;
                ctx.node.private_address = machine.private_address;
                ctx.node.role = ctx.change.role;
                ctx.node.core_version = None;
                ctx.node.config_hash = None;
                ctx.node.ssh_host_key = None;
                ctx.node.status = NodeStatus::Created;
                *remote = None;
                self.record(&ctx.node).await;
            }
            Step::StartNode => {
                *remote = None;
                let (provider, node) = (&self.provider, &ctx.node);
                let machine = self.with_provider(|| provider.start(node)).await?;
                // A restarted container may come back with another address; the core on it is
                // started by the next step (the node stays stopped until seen healthy).
                ctx.node.provider_id = Some(machine.provider_id);
                ctx.node.addresses = machine.addresses;
                ctx.node.private_address = machine.private_address;
                ctx.node.status = NodeStatus::Stopped;
                self.record(&ctx.node).await;
            }
            Step::DestroyNode => {
                *remote = None;
                let (provider, node) = (&self.provider, &ctx.node);
                self.with_provider(|| provider.destroy(node)).await?;
                let _ = self.tx.send(NodeUpdate::Removed(ctx.node.name.clone()));
            }
            Step::JoinGroup => {
                let m = self.group(step)?;
                let others: Vec<NodeState> = ctx
                    .masters
                    .iter()
                    .filter(|n| n.name != ctx.node.name && n.replica_member)
                    .cloned()
                    .collect();
                m.join(&others, &ctx.node)
                    .await
                    .map_err(|e| format!("{}: {e}", ctx.node.name))?;
                ctx.node.replica_member = true;
                self.record(&ctx.node).await;
            }
            Step::LeaveGroup => {
                let Some(id) = ctx.change.leaves_replica_id else {
                    return Ok(());
                };
                let m = self.group(step)?;
                let others: Vec<NodeState> = ctx
                    .masters
                    .iter()
                    .filter(|n| n.name != ctx.node.name && n.replica_member)
                    .cloned()
                    .collect();
                let left = m
                    .leave(&others, id)
                    .await
                    .map_err(|e| format!("{}: {e}", ctx.node.name))?;
                if left == Left::IsLeader {
                    // The group never removes its leader: stop this master first (its machine
                    // goes in this change anyway), the others elect a new leader, and that one
                    // removes it. The rest of the group still holds a majority.
                    let msg = format!(
                        "{}: master {id} leads the group; stopping it first so another master takes over",
                        ctx.node.name
                    );
                    self.progress.event(ProgressEvent::Message(&msg));
                    self.stop_leader(ctx, remote).await?;
                    let left = m
                        .leave(&others, id)
                        .await
                        .map_err(|e| format!("{}: {e}", ctx.node.name))?;
                    if left == Left::IsLeader {
                        return Err(format!(
                            "{}: master {id} still leads the group after it was stopped",
                            ctx.node.name
                        ));
                    }
                }
                ctx.node.replica_member = false;
                self.record(&ctx.node).await;
            }
            _ => {
                if remote.is_none() {
                    let r = match self.connect(&ctx.node).await {
                        Ok(r) => r,
                        // A node that cannot be reached cannot be drained, but it must still be removable:
                        // the master has already reported its tasks unreachable, so nothing is lost.
                        Err(e) if step == Step::Drain && e.is_transient() => {
                            let msg = format!(
                                "{}: cannot drain an unreachable node ({e}); removing it anyway",
                                ctx.node.name
                            );
                            self.progress.event(ProgressEvent::Message(&msg));
                            ctx.node.status = NodeStatus::Draining;
                            self.record(&ctx.node).await;
                            return Ok(());
                        }
                        Err(e) => return Err(e.to_string()),
                    };
                    if ctx.node.ssh_host_key.is_none()
                        && let Some(key) = r.host_key()
                    {
                        ctx.node.ssh_host_key = Some(key);
                        self.record(&ctx.node).await;
                    }
                    *remote = Some(r);
                }
                let r = remote.as_ref().expect("invariant: connected just above");
                if matches!(step, Step::Drain | Step::Reactivate) && ctx.masters.len() > 1 {
                    // Operator calls go to the leader (a follower would redirect them): put it
                    // first, where the drain and reactivate ops run.
                    self.leader_first(ctx).await;
                }
                let ops = self.installer.ops(step, ctx).map_err(|e| e.to_string())?;
                if step == Step::Drain && ctx.node.status != NodeStatus::Draining {
                    // Recorded before the drain starts: an apply killed mid-drain leaves a node the
                    // master may hold drained, and the next plan must know to reactivate it.
                    ctx.node.status = NodeStatus::Draining;
                    self.record(&ctx.node).await;
                }
                let mut master_remote: Option<P::Remote> = None;
                for op in ops {
                    match op {
                        RemoteOp::OnMaster(inner) => {
                            if master_remote.is_none() {
                                let m = ctx.masters.first().ok_or_else(|| {
                                    format!(
                                        "{}: {} needs a master, and the state has none",
                                        ctx.node.name,
                                        step.name()
                                    )
                                })?;
                                let mr = self.connect(m).await.map_err(|e| {
                                    format!(
                                        "{}: cannot reach master {}: {e}",
                                        ctx.node.name, m.name
                                    )
                                })?;
                                master_remote = Some(mr);
                            }
                            let mr = master_remote
                                .as_ref()
                                .expect("invariant: connected just above");
                            self.run_op(mr, *inner).await.map_err(|e| e.to_string())?;
                        }
                        op => self.run_op(r, op).await.map_err(|e| e.to_string())?,
                    }
                }
                match step {
                    Step::Install | Step::Configure => {
                        ctx.node.status = NodeStatus::Installed;
                        ctx.node.core_version = Some(ctx.core.version.clone());
                        ctx.node.config_hash = ctx.change.config_hash.clone();
                        ctx.node.role = ctx.change.role;
                    }
                    Step::WaitHealthy => {
                        if ctx.change.role == crate::spec::Role::Master {
                            self.master_healthy(ctx).await?;
                        }
                        ctx.node.status = NodeStatus::Running;
                    }
                    Step::Drain => ctx.node.status = NodeStatus::Draining,
                    Step::Uninstall => ctx.node.status = NodeStatus::Removing,
                    _ => return Ok(()),
                }
                self.record(&ctx.node).await;
            }
        }
        Ok(())
    }

    /// Moves the group's leader to the front of `ctx.masters` (if one is known).
    async fn leader_first(&self, ctx: &mut NodeContext) {
        let Some(m) = &self.membership else {
            return;
        };
        let members: Vec<NodeState> = ctx
            .masters
            .iter()
            .filter(|n| n.replica_member)
            .cloned()
            .collect();
        if let Ok(Some(id)) = m.leader(&members).await
            && let Some(at) = ctx.masters.iter().position(|n| n.replica_id == Some(id))
        {
            ctx.masters.swap(0, at);
        }
    }

    /// The membership client, or why a group step cannot run.
    fn group(&self, step: Step) -> Result<&Arc<dyn Membership>, String> {
        self.membership.as_ref().ok_or_else(|| {
            format!(
                "internal: {} needs a client of the masters' group, and this run has none",
                step.name()
            )
        })
    }

    /// After a master's own health check: in a group of several, it is healthy once it is a
    /// voter that knows the leader (as it says itself). A founder is a member from then on.
    async fn master_healthy(&self, ctx: &mut NodeContext) -> Result<(), String> {
        let several = crate::plan::master_set(&ctx.spec).len() > 1;
        if several && let Some(m) = &self.membership {
            m.wait_member(&ctx.node)
                .await
                .map_err(|e| format!("{}: {e}", ctx.node.name))?;
        }
        if ctx.change.founds_group || ctx.node.replica_member {
            ctx.node.replica_member = true;
        }
        Ok(())
    }

    /// Stops a leading master that is being removed: its uninstall where the change has one
    /// (on-prem hosts stay), else its machine is destroyed now (the change destroys it anyway).
    async fn stop_leader(
        &self,
        ctx: &mut NodeContext,
        remote: &mut Option<P::Remote>,
    ) -> Result<(), String> {
        if ctx.change.steps.contains(&Step::Uninstall) {
            if remote.is_none() {
                *remote = Some(self.connect(&ctx.node).await.map_err(|e| e.to_string())?);
            }
            let r = remote.as_ref().expect("invariant: connected just above");
            for op in self
                .installer
                .ops(Step::Uninstall, ctx)
                .map_err(|e| e.to_string())?
            {
                self.run_op(r, op).await.map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        let (provider, node) = (&self.provider, &ctx.node);
        retry::run(self.opts.provider_retry, |at| async move {
            match provider.destroy(node).await {
                Ok(()) => Next::Done(()),
                Err(e) if e.transient => at.retry(e),
                Err(e) => Next::Fail(e),
            }
        })
        .await
        .map_err(|e| chain(&e.into_error()))
    }

    async fn connect(&self, node: &NodeState) -> Result<P::Remote, RemoteError> {
        let provider = &self.provider;
        retry::run(self.opts.connect_retry, |at| async move {
            match provider.connect(node).await {
                Ok(r) => Next::Done(r),
                Err(e) if e.is_transient() => at.retry(e),
                Err(e) => Next::Fail(e),
            }
        })
        .await
        .map_err(retry::RetryError::into_error)
    }

    async fn run_op(&self, remote: &P::Remote, op: RemoteOp) -> Result<(), RemoteError> {
        match op {
            // Unwrapped by `step` (which knows the masters); nested, it runs where it is.
            RemoteOp::OnMaster(inner) => Box::pin(self.run_op(remote, *inner)).await,
            RemoteOp::Upload { src, dest, mode } => {
                let contents = self
                    .read_upload(&src)
                    .await
                    .map_err(|e| RemoteError::Other {
                        host: "local".into(),
                        message: format!("cannot read {}: {e}", src.display()),
                    })?;
                remote.upload(contents, &dest, mode).await
            }
            RemoteOp::Write {
                contents,
                dest,
                mode,
            } => remote.upload(contents, &dest, mode).await,
            RemoteOp::Run {
                label,
                script,
                timeout,
                until_ok,
            } => {
                let policy = until_ok.unwrap_or(self.opts.connect_retry);
                let retry_failures = until_ok.is_some();
                let (script, label) = (&script, &label);
                retry::run(policy, |at| async move {
                    match remote.run(script, timeout).await {
                        Ok(out) if out.code == Some(0) => Next::Done(()),
                        Ok(out) => {
                            let e = RemoteError::Command {
                                host: "node".into(),
                                command: label.clone(),
                                status: out
                                    .code
                                    .map(|c| format!("exit code {c}"))
                                    .unwrap_or_else(|| "a signal".into()),
                                tail: tail(&out.stdout, &out.stderr, 20),
                            };
                            if retry_failures {
                                at.retry(e)
                            } else {
                                Next::Fail(e)
                            }
                        }
                        Err(e) if e.is_transient() => at.retry(e),
                        Err(e) => Next::Fail(e),
                    }
                })
                .await
                .map_err(retry::RetryError::into_error)
            }
        }
    }

    async fn read_upload(&self, src: &PathBuf) -> std::io::Result<Arc<Vec<u8>>> {
        if let Some(c) = self
            .uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(src)
        {
            return Ok(c.clone());
        }
        let bytes = Arc::new(tokio::fs::read(src).await?);
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(src.clone(), bytes.clone());
        Ok(bytes)
    }
}

/// The last `n` lines of a command's output, stderr after stdout.
fn tail(stdout: &str, stderr: &str, n: usize) -> String {
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
