//! Raft RPCs between masters: openraft's network traits over a [`PeerLink`], which moves one
//! JSON request to a peer's `/internal/raft/{kind}` route and brings its JSON answer back.
//!
//! [`HttpLink`] is the real link (reqwest with the master's TLS settings, the master secret as
//! a Bearer token). The link is a trait so that tests can cut a replica off (a partition) at
//! our own boundary while the bytes still cross real HTTP.
//!
//! The answer's body is `Result<Reply, RaftError>` as JSON: a peer's Raft error (e.g. "higher
//! vote") reaches openraft as the peer's own error, a failed request as unreachable.

use super::{NodeId, StateImage, TypeConfig};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The Raft RPCs, one route each under `/internal/raft/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcKind {
    /// `append`: log entries and heartbeats.
    Append,
    /// `vote`: a candidate asks for a vote.
    Vote,
    /// `snapshot`: a whole snapshot for a replica too far behind the purged log.
    Snapshot,
}

impl RpcKind {
    /// The route's last segment.
    pub fn name(self) -> &'static str {
        match self {
            RpcKind::Append => "append",
            RpcKind::Vote => "vote",
            RpcKind::Snapshot => "snapshot",
        }
    }

    /// The kind named by a route's last segment.
    pub fn from_name(name: &str) -> Option<RpcKind> {
        [RpcKind::Append, RpcKind::Vote, RpcKind::Snapshot]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

impl std::fmt::Display for RpcKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No answer: connection refused, timeout, cut link.
    #[error("master {target} at {url} unreachable")]
    Unreachable {
        /// The peer.
        target: NodeId,
        /// Its URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The peer answered with an HTTP error (bad secret, bad body, stopped).
    #[error("master {target} answered {status}: {message}")]
    Status {
        /// The peer.
        target: NodeId,
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
}

/// A boxed future of a link's answer.
pub type LinkFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, LinkError>> + Send>>;

/// Sends one RPC body to a peer and returns the answer's body.
pub trait PeerLink: Send + Sync + 'static {
    /// POSTs `body` to `url`'s `/internal/raft/{kind}`, within `timeout`.
    fn call(
        &self,
        target: NodeId,
        url: &str,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> LinkFuture;
}

/// The real link: HTTP(S) with the master secret.
#[derive(Clone)]
pub struct HttpLink {
    client: reqwest::Client,
    secret: Arc<str>,
}

impl HttpLink {
    /// A link with `client` (built from the master's TLS settings, so peers' certificates are
    /// checked against the cluster CA) sending `secret` as its Bearer token.
    pub fn new(client: reqwest::Client, secret: impl Into<Arc<str>>) -> Self {
        HttpLink {
            client,
            secret: secret.into(),
        }
    }
}

impl PeerLink for HttpLink {
    fn call(
        &self,
        target: NodeId,
        url: &str,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> LinkFuture {
        let url = url.trim_end_matches('/').to_string();
        let request = self
            .client
            .post(format!("{url}/internal/raft/{kind}"))
            .bearer_auth(&*self.secret)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        Box::pin(async move {
            let unreachable = |e: reqwest::Error| LinkError::Unreachable {
                target,
                url: url.clone(),
                source: Box::new(e),
            };
            let response = request.send().await.map_err(unreachable)?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(unreachable)?;
            if !status.is_success() {
                return Err(LinkError::Status {
                    target,
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            Ok(bytes.to_vec())
        })
    }
}

/// A whole snapshot on the wire.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotRpc {
    pub(super) vote: Vote<NodeId>,
    pub(super) meta: SnapshotMeta<NodeId, BasicNode>,
    pub(super) image: StateImage,
}

/// openraft's network factory: one [`PeerClient`] per peer, all over one link.
#[derive(Clone)]
pub struct Network {
    link: Arc<dyn PeerLink>,
}

impl Network {
    pub(super) fn new(link: Arc<dyn PeerLink>) -> Self {
        Network { link }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            link: self.link.clone(),
            target,
            url: node.addr.clone(),
        }
    }
}

/// RPCs to one peer.
pub struct PeerClient {
    link: Arc<dyn PeerLink>,
    target: NodeId,
    url: String,
}

/// A request failed before the peer's Raft answered.
enum Failed {
    Unreachable(Unreachable),
    Network(NetworkError),
}

impl PeerClient {
    /// Sends `request` and decodes the peer's `Result<T, E>`.
    async fn rpc<Q: Serialize, T: DeserializeOwned, E: DeserializeOwned>(
        &self,
        kind: RpcKind,
        request: &Q,
        timeout: Duration,
    ) -> Result<Result<T, E>, Failed> {
        let body =
            serde_json::to_vec(request).map_err(|e| Failed::Network(NetworkError::new(&e)))?;
        let answer = self
            .link
            .call(self.target, &self.url, kind, body, timeout)
            .await
            .map_err(|e| match e {
                LinkError::Unreachable { .. } => Failed::Unreachable(Unreachable::new(&e)),
                LinkError::Status { .. } => Failed::Network(NetworkError::new(&e)),
            })?;
        serde_json::from_slice(&answer).map_err(|e| Failed::Network(NetworkError::new(&e)))
    }

    async fn call<Q: Serialize, T: DeserializeOwned, E>(
        &self,
        kind: RpcKind,
        request: &Q,
        option: &RPCOption,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        match self.rpc::<Q, T, E>(kind, request, option.hard_ttl()).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(Failed::Unreachable(e)) => Err(RPCError::Unreachable(e)),
            Err(Failed::Network(e)) => Err(RPCError::Network(e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RpcKind::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }

    #[allow(deprecated)] // Required by the trait; with whole snapshots openraft never calls it.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("chunked snapshots are not used: snapshots are sent whole"),
        )))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let request = SnapshotRpc {
            vote,
            meta: snapshot.meta,
            image: *snapshot.snapshot,
        };
        let sent = self.rpc::<_, SnapshotResponse<NodeId>, Fatal<NodeId>>(
            RpcKind::Snapshot,
            &request,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = sent => match r {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, fatal))),
                Err(Failed::Unreachable(e)) => Err(StreamingError::Unreachable(e)),
                Err(Failed::Network(e)) => Err(StreamingError::Network(e)),
            },
        }
    }

    // Retry an unreachable peer soon: failover time is bounded by how fast a recovered peer
    // is heard again, and a refused connection costs nothing.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
