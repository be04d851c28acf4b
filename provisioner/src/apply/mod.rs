//! The executor: runs a [`Plan`](crate::plan::Plan) through a [`Provider`] (machines) and a [`Remote`]
//! (commands and uploads on one machine), with what to run on a node rendered by an [`Installer`].
//!
//! ```text
//! Plan ─ waves ─> node tasks (≤ parallelism) ─ steps ─> Provider::create/destroy
//!                      │                          └──> Installer::ops -> Remote::run/upload
//!                      └─ NodeUpdate ─> executor loop (sole owner of State) ─> StateFile::save after every step
//! ```
//! A killed apply resumes: every finished step is in the state, and the planner continues each node from there.

mod executor;
mod node_task;
mod progress;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::plan::{CoreTarget, NodeChange, Step};
use crate::spec::{ClusterSpec, PoolName, Role};
use crate::state::NodeState;

/// The retry policy of [`RemoteOp::Run`] and [`ApplyOptions`] (the workspace's one backoff).
pub use dc_support::retry::Backoff;
pub use executor::{ApplyError, ApplyOptions, ApplyReport, Executor, NodeFailure};
pub use progress::{PlainProgress, Progress, ProgressEvent, QuietProgress, TtyProgress};

/// What the provider needs to create one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRequest {
    /// Cluster name (for labels and names).
    pub cluster: String,
    /// Node name `<pool>-<index>`.
    pub name: String,
    /// Pool name.
    pub pool: PoolName,
    /// Index in the pool.
    pub index: u32,
    /// Role.
    pub role: Role,
    /// For on-prem pools: the existing host.
    pub host: Option<String>,
    /// Provider-specific size.
    pub instance_type: Option<String>,
}

/// A machine the provider made (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Provider's id for it.
    pub provider_id: String,
    /// Addresses to reach it at from outside, best first (empty: only through a bastion).
    pub addresses: Vec<String>,
    /// Its address inside the cluster's network, when that is not the first of `addresses`
    /// (see [`NodeState::private_address`](crate::state::NodeState::private_address)).
    pub private_address: Option<String>,
}

/// Errors a provider reports. `transient` ones are retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{node}: {message}")]
pub struct ProviderError {
    /// The node (or `cluster`) concerned.
    pub node: String,
    /// What went wrong and what to do.
    pub message: String,
    /// Worth retrying (busy API, machine still booting).
    pub transient: bool,
    /// The underlying cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProviderError {
    /// A permanent failure.
    pub fn permanent(node: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            node: node.into(),
            message: message.into(),
            transient: false,
            source: None,
        }
    }

    /// A failure worth retrying.
    pub fn transient(node: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            node: node.into(),
            message: message.into(),
            transient: true,
            source: None,
        }
    }
}

/// Errors of a remote command or upload.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The host could not be reached (refused, no route, dropped): retried while it may still be booting.
    #[error("{host}: cannot connect: {message}")]
    Unreachable {
        /// Host address.
        host: String,
        /// Detail.
        message: String,
    },
    /// The host refused our credentials or its identity changed: never retried.
    #[error("{host}: {message}")]
    Refused {
        /// Host address.
        host: String,
        /// Detail (auth failure naming user and keys, host key mismatch with both fingerprints...).
        message: String,
    },
    /// A command ran and failed.
    #[error("{host}: `{command}` exited with {status}\n{tail}")]
    Command {
        /// Host address.
        host: String,
        /// Short form of the command (never its secrets).
        command: String,
        /// Exit status (or signal).
        status: String,
        /// Last lines of its output.
        tail: String,
    },
    /// A command or upload took too long.
    #[error("{host}: `{command}` timed out after {after:?}")]
    Timeout {
        /// Host address.
        host: String,
        /// Short form of the command.
        command: String,
        /// The limit.
        after: Duration,
    },
    /// Anything else on the way (I/O on an upload source...).
    #[error("{host}: {message}")]
    Other {
        /// Host address.
        host: String,
        /// Detail.
        message: String,
    },
}

impl RemoteError {
    /// Worth retrying: the host may still be booting or the connection dropped.
    pub fn is_transient(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }
}

/// The result of a finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Where machines come from.
pub trait Provider: Send + Sync + 'static {
    /// How to talk to one machine.
    type Remote: Remote;

    /// Creates cluster-wide resources (network, keys, tokens) if missing and returns the records to keep in the
    /// state's `resources`. Idempotent: called at the start of every apply that changes something.
    fn prepare(
        &self,
        spec: &ClusterSpec,
        resources: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, ProviderError>> + Send;

    /// Creates (or finds, if an interrupted apply already made it) the machine for `req`.
    fn create(
        &self,
        req: &NodeRequest,
    ) -> impl Future<Output = Result<Machine, ProviderError>> + Send;

    /// Starts an existing machine that was stopped (outside dcform) and returns it as it is now
    /// (its address may have changed). Providers whose machines cannot be stopped return the node
    /// as recorded.
    fn start(
        &self,
        node: &NodeState,
    ) -> impl Future<Output = Result<Machine, ProviderError>> + Send;

    /// Connects to a machine. A pinned host key in `node` must match.
    fn connect(
        &self,
        node: &NodeState,
    ) -> impl Future<Output = Result<Self::Remote, RemoteError>> + Send;

    /// Destroys the machine (or, for on-prem hosts, forgets it). Idempotent: a machine already gone is fine.
    fn destroy(&self, node: &NodeState) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Removes cluster-wide resources after the last node is gone.
    fn teardown(
        &self,
        resources: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// Commands and uploads on one machine.
pub trait Remote: Send + Sync + 'static {
    /// Runs a shell script, returns its output whatever the exit code (the executor decides).
    fn run(
        &self,
        script: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<CmdOutput, RemoteError>> + Send;

    /// Uploads bytes to `dest` with `mode`, verified and moved into place atomically.
    fn upload(
        &self,
        contents: Arc<Vec<u8>>,
        dest: &str,
        mode: u32,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;

    /// The host key fingerprint seen on connect, to pin in the state (trust on first use).
    fn host_key(&self) -> Option<String>;
}

/// One thing to do on a node, rendered by an [`Installer`] and carried out by the executor through [`Remote`].
#[derive(Debug, Clone)]
pub enum RemoteOp {
    /// Upload a local file.
    Upload {
        /// Local path.
        src: PathBuf,
        /// Destination on the node.
        dest: String,
        /// File mode.
        mode: u32,
    },
    /// Write generated contents (config files). May hold secrets: never logged.
    Write {
        /// File contents.
        contents: Arc<Vec<u8>>,
        /// Destination on the node.
        dest: String,
        /// File mode.
        mode: u32,
    },
    /// Run a script. With `until_ok`, a non-zero exit is retried with that backoff (used to wait for health).
    Run {
        /// What to show in progress and errors (never the script's secrets).
        label: String,
        /// The script.
        script: String,
        /// Per-attempt limit.
        timeout: Duration,
        /// Retry a failing script until it succeeds, within this policy.
        until_ok: Option<Backoff>,
    },
    /// Carry out the inner op on the cluster's first master instead of this node: operator calls
    /// (drain, reactivate) need the operator token, which only masters hold.
    OnMaster(Box<RemoteOp>),
}

/// Everything an installer may need to render a step for a node.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The definition.
    pub spec: Arc<ClusterSpec>,
    /// The node as the state has it now.
    pub node: NodeState,
    /// The planned change.
    pub change: NodeChange,
    /// The core to install.
    pub core: CoreTarget,
    /// Masters as recorded in the state when this node started (agents join them).
    pub masters: Vec<NodeState>,
    /// Cluster-wide records from the provider (`Provider::prepare`).
    pub resources: BTreeMap<String, String>,
}

/// A future a [`Membership`] call returns.
pub type GroupFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What `leave-group` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The id is no longer in the group (removed now, or it was not a member).
    Removed,
    /// The id is the group's leader, which the group refuses to remove: it must stop leading
    /// (its core stopped) first.
    IsLeader,
}

/// The masters' replicated group, as the executor changes it (`join-group`, `leave-group`) and
/// checks it (a master is healthy once it is a voter that knows the leader). Implemented over
/// the masters' HTTP API by [`crate::replica_api::GroupClient`]; the executor tests use a fake.
pub trait Membership: Send + Sync + 'static {
    /// ADD_MASTER of `node` (its id and in-cluster URL) through the leader, found from `masters`;
    /// returns once the leader answered that the node is a voter.
    fn join<'a>(&'a self, masters: &'a [NodeState], node: &'a NodeState) -> GroupFuture<'a, ()>;
    /// REMOVE_MASTER of `id` through the leader, found from `masters` (never the one leaving).
    fn leave<'a>(&'a self, masters: &'a [NodeState], id: u64) -> GroupFuture<'a, Left>;
    /// Waits until `node` itself (GET /replica) names a leader and counts itself a voter.
    fn wait_member<'a>(&'a self, node: &'a NodeState) -> GroupFuture<'a, ()>;
    /// The id of the group's leader as `masters` say now (`None`: none known).
    fn leader<'a>(&'a self, masters: &'a [NodeState]) -> GroupFuture<'a, Option<u64>>;
}

/// Errors of rendering a step.
#[derive(Debug, thiserror::Error)]
#[error("{node}: cannot render {step}: {message}")]
pub struct InstallError {
    /// Node.
    pub node: String,
    /// Step name.
    pub step: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Turns a step into remote operations. Pure rendering: no I/O.
pub trait Installer: Send + Sync + 'static {
    /// Operations for `step` on the node in `ctx` (`CreateNode`/`DestroyNode` belong to the provider, not here).
    fn ops(&self, step: Step, ctx: &NodeContext) -> Result<Vec<RemoteOp>, InstallError>;
}
