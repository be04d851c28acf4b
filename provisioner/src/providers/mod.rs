//! Providers: where machines come from. [`build`] picks the one the definition names and pairs it with the
//! installer that knows how to install the core on its machines.

pub mod local;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::{
    CmdOutput, InstallError, Installer, Machine, NodeContext, NodeRequest, Provider, ProviderError,
    Remote, RemoteError, RemoteOp,
};
use crate::plan::Step;
use crate::spec::ClusterSpec;
use crate::state::{NodeState, State, StateFile};

/// A provider the definition names but this build cannot drive yet.
#[derive(Debug, thiserror::Error)]
#[error("provider \"{0}\" is not available in this build yet; no machine was touched")]
pub struct Unavailable(pub &'static str);

/// Every provider this build can drive. (Empty until the first provider lands: nothing can be applied.)
pub enum AnyProvider {}

/// A connection to a machine of any provider.
pub enum AnyRemote {}

/// The installer matching the provider.
pub enum AnyInstaller {}

/// The provider and installer for `spec`, keeping their files (keys, logs, sandboxes) beside `state`.
pub fn build(
    spec: &ClusterSpec,
    _state: &StateFile,
) -> Result<(AnyProvider, AnyInstaller), Unavailable> {
    Err(Unavailable(spec.provider.kind()))
}

/// A node's health as the status command shows it.
pub fn node_health(_state: &State, node: &NodeState) -> String {
    match node.status {
        crate::state::NodeStatus::Running => "unknown".into(),
        _ => "not running".into(),
    }
}

impl Provider for AnyProvider {
    type Remote = AnyRemote;

    async fn prepare(
        &self,
        _spec: &ClusterSpec,
        _r: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        match *self {}
    }
    async fn create(&self, _req: &NodeRequest) -> Result<Machine, ProviderError> {
        match *self {}
    }
    async fn connect(&self, _node: &NodeState) -> Result<AnyRemote, RemoteError> {
        match *self {}
    }
    async fn destroy(&self, _node: &NodeState) -> Result<(), ProviderError> {
        match *self {}
    }
    async fn teardown(&self, _r: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        match *self {}
    }
}

impl Remote for AnyRemote {
    async fn run(&self, _script: &str, _timeout: Duration) -> Result<CmdOutput, RemoteError> {
        match *self {}
    }
    async fn upload(
        &self,
        _contents: Arc<Vec<u8>>,
        _dest: &str,
        _mode: u32,
    ) -> Result<(), RemoteError> {
        match *self {}
    }
    fn host_key(&self) -> Option<String> {
        match *self {}
    }
}

impl Installer for AnyInstaller {
    fn ops(&self, _step: Step, _ctx: &NodeContext) -> Result<Vec<RemoteOp>, InstallError> {
        match *self {}
    }
}
