//! The executor loop. It alone owns the [`State`] during an apply: node tasks send [`NodeUpdate`]s and the
//! loop records them and saves, so the file on disk always reflects every finished step.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::node_task::NodeTask;
use super::{Installer, Membership, NodeContext, Progress, ProgressEvent, Provider, ProviderError};
use crate::plan::{NodeChange, Plan};
use crate::spec::ClusterSpec;
use crate::state::{NodeState, NodeStatus, State, StateError, StateFile};
use dc_support::retry::Backoff;

/// Knobs of an apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Most nodes worked on at once within a wave (`--parallelism`, default 10).
    pub parallelism: usize,
    /// Retries of transient provider failures (create/destroy).
    pub provider_retry: Backoff,
    /// Retries while a host cannot be reached yet (booting).
    pub connect_retry: Backoff,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 10,
            provider_retry: Backoff::new(Duration::from_millis(500), Duration::from_secs(8))
                .attempts(5),
            connect_retry: Backoff::new(Duration::from_millis(250), Duration::from_secs(4))
                .attempts(20),
        }
    }
}

/// One node that did not make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// Node name.
    pub node: String,
    /// The step that failed.
    pub step: &'static str,
    /// The error, with its cause chain.
    pub error: String,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Nodes whose change finished.
    pub completed: Vec<String>,
}

/// Why an apply stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Saving the state failed; the apply stopped at once so nothing goes unrecorded.
    #[error("cannot record progress in the state")]
    State(#[from] StateError),
    /// Cluster-wide provider work (prepare/teardown) failed.
    #[error("provider failed")]
    Provider(#[from] ProviderError),
    /// Some nodes failed; the others in their wave finished and later waves did not start.
    #[error("{} node(s) failed:\n{}", failures.len(), failures.iter().map(|f| format!("  {} ({}): {}", f.node, f.step, f.error)).collect::<Vec<_>>().join("\n"))]
    Nodes {
        /// Each failure.
        failures: Vec<NodeFailure>,
        /// Nodes that did finish.
        completed: Vec<String>,
    },
    /// Interrupted (Ctrl-C): in-flight steps finished and were recorded.
    #[error(
        "interrupted: {completed} node change(s) finished, {remaining} left; run apply again to continue"
    )]
    Interrupted {
        /// Node changes finished.
        completed: usize,
        /// Node changes not finished.
        remaining: usize,
    },
}

/// A node task's report to the loop.
pub(super) enum NodeUpdate {
    /// A node record changed; the sender waits for the ack, sent once the record is on disk.
    Record(NodeState, oneshot::Sender<()>),
    Removed(String),
    Done(String),
    Failed(NodeFailure),
}

/// Runs plans through a provider and an installer.
pub struct Executor<P: Provider, I: Installer> {
    provider: Arc<P>,
    installer: Arc<I>,
    progress: Arc<dyn Progress>,
    opts: ApplyOptions,
    uploads: Arc<Mutex<HashMap<PathBuf, Arc<Vec<u8>>>>>,
    membership: Option<Arc<dyn Membership>>,
}

impl<P: Provider, I: Installer> Executor<P, I> {
    /// How `join-group` and `leave-group` reach the masters' group, and how a master of a
    /// group of several is judged healthy. Without it those steps fail.
    pub fn with_membership(mut self, m: Arc<dyn Membership>) -> Self {
        self.membership = Some(m);
        self
    }

    /// An executor over `provider` and `installer`, reporting to `progress`.
    pub fn new(
        provider: Arc<P>,
        installer: Arc<I>,
        progress: Arc<dyn Progress>,
        opts: ApplyOptions,
    ) -> Self {
        Executor {
            provider,
            installer,
            progress,
            opts,
            uploads: Arc::default(),
            membership: None,
        }
    }

    /// Applies `plan` to `state`, saving to `store` after every finished step. Cancelling `shutdown` lets
    /// in-flight steps finish, records them and returns [`ApplyError::Interrupted`].
    pub async fn apply(
        &self,
        plan: &Plan,
        state: &mut State,
        store: &StateFile,
        shutdown: CancellationToken,
    ) -> Result<ApplyReport, ApplyError> {
        let mut report = ApplyReport::default();
        let total = plan.actions().count();
        if total == 0 {
            return Ok(report);
        }
        let spec = Arc::new(plan.spec.clone());
        if !plan.destroy {
            self.progress.event(ProgressEvent::Message(&format!(
                "preparing {} provider resources",
                spec.provider.kind()
            )));
            state.resources = self.provider.prepare(&spec, &state.resources).await?;
            store.save(state)?;
        }
        for wave in 0..plan.waves() {
            if shutdown.is_cancelled() {
                break;
            }
            let changes: Vec<NodeChange> =
                plan.actions().filter(|c| c.wave == wave).cloned().collect();
            let failures = self
                .run_wave(&spec, plan, changes, state, store, &shutdown, &mut report)
                .await?;
            if !failures.is_empty() {
                self.progress.finish();
                return Err(ApplyError::Nodes {
                    failures,
                    completed: report.completed,
                });
            }
        }
        self.progress.finish();
        if report.completed.len() < total {
            return Err(ApplyError::Interrupted {
                completed: report.completed.len(),
                remaining: total - report.completed.len(),
            });
        }
        if plan.destroy && state.nodes.is_empty() {
            self.provider.teardown(&state.resources).await?;
            state.resources.clear();
            state.outputs.clear();
            store.save(state)?;
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_wave(
        &self,
        spec: &Arc<ClusterSpec>,
        plan: &Plan,
        changes: Vec<NodeChange>,
        state: &mut State,
        store: &StateFile,
        shutdown: &CancellationToken,
        report: &mut ApplyReport,
    ) -> Result<Vec<NodeFailure>, ApplyError> {
        let permits = Arc::new(Semaphore::new(self.opts.parallelism.max(1)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let masters = state.masters();
        let mut tasks = JoinSet::new();
        for change in changes {
            let node = state
                .node(&change.node)
                .cloned()
                .unwrap_or_else(|| fresh_node(&change));
            let ctx = NodeContext {
                spec: spec.clone(),
                node,
                change,
                core: plan.core.clone(),
                masters: masters.clone(),
                resources: state.resources.clone(),
            };
            let task = NodeTask {
                provider: self.provider.clone(),
                installer: self.installer.clone(),
                progress: self.progress.clone(),
                opts: self.opts.clone(),
                uploads: self.uploads.clone(),
                membership: self.membership.clone(),
                tx: tx.clone(),
            };
            let permits = permits.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if shutdown.is_cancelled() {
                    return;
                }
                task.run(ctx, shutdown).await;
            });
        }
        drop(tx);
        let mut failures = Vec::new();
        while let Some(first) = rx.recv().await {
            // Record everything that arrived together, then save once.
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut dirty = false;
            let mut acks = Vec::new();
            for update in batch {
                match update {
                    NodeUpdate::Record(node, ack) => {
                        // The highest id ever given stays recorded after its master is gone,
                        // so it is never given again.
                        if let Some(id) = node.replica_id
                            && id >= state.next_replica_id()
                        {
                            state
                                .resources
                                .insert(crate::state::REPLICA_LAST_ID.into(), id.to_string());
                        }
                        state.upsert_node(node);
                        acks.push(ack);
                        dirty = true;
                    }
                    NodeUpdate::Removed(name) => {
                        state.remove_node(&name);
                        dirty = true;
                    }
                    NodeUpdate::Done(name) => report.completed.push(name),
                    NodeUpdate::Failed(f) => failures.push(f),
                }
            }
            if dirty {
                store.save(state)?;
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                failures.push(NodeFailure {
                    node: "?".into(),
                    step: "?",
                    error: format!("node task crashed: {e}"),
                });
            }
        }
        Ok(failures)
    }
}

/// The record of a node that does not exist yet.
fn fresh_node(change: &NodeChange) -> NodeState {
    NodeState {
        name: change.node.clone(),
        pool: change.pool.clone(),
        index: change.index,
        role: change.role,
        host: change.host.clone(),
        provider_id: None,
        addresses: Vec::new(),
        private_address: None,
        ssh_host_key: None,
        core_version: None,
        config_hash: None,
        status: NodeStatus::Creating,
        replica_id: None,
        replica_member: false,
    }
}
