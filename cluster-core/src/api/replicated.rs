//! The HTTP side of the replicated masters: where callers are sent, how a master reports the
//! group, membership changes, and the masters' shared secret.
//!
//! | route | answer |
//! |---|---|
//! | `GET /redirect` | 307 to the leader's URL (`/`); 503 while no leader is known (anyone may ask, as in Mesos) |
//! | scheduler, operator and agent routes on a follower | 307 to the leader's URL with the same path (pymesos and agents follow it); 503 without a leader |
//! | `GET /replica` | this master's view of the group ([`ReplicaStatus`]); operator token; never redirected |
//! | operator `ADD_MASTER` / `REMOVE_MASTER` | on the leader: membership change, 200 `{}` once committed |

use super::{ApiState, Route, authenticate, error};
use crate::auth::Identity;
use crate::replica::{NodeId, Replica, ReplicaError};
use crate::tls::PeerCert;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dccore_api::operator::{MasterRef, ReplicaMember, ReplicaStatus};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the masters' secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read the replica secret file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Others than its owner may read or write it, or another user owns it.
    #[error(
        "the replica secret file {path} must be mode 0600 and owned by the user running the master (it is mode {mode:o}, owner uid {uid}; this process runs as uid {me})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// This process's user.
        me: u32,
    },
    /// The file holds no secret.
    #[error("the replica secret file {path} is empty (want the masters' shared secret)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the masters' secret from `path`, refusing a file others could read or change.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    use std::os::unix::fs::MetadataExt;
    let read = |source| SecretError::Read {
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let me = nix::unistd::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 || meta.uid() != me {
        return Err(SecretError::Permissions {
            path: path.into(),
            mode,
            uid: meta.uid(),
            me,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(SecretError::Empty { path: path.into() });
    }
    Ok(secret)
}

/// Sends callers of a follower to the leader: 307 with the leader's URL and the same path and
/// query, or 503 while no leader is known. The leader (and a single master) serves them.
pub async fn to_leader(State(h): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(replica) = &h.replica else {
        return next.run(req).await;
    };
    let l = replica.leadership().borrow().clone();
    if l.is_leader {
        return next.run(req).await;
    }
    match l.leader {
        Some((id, url)) if id != replica.id() => {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            redirect(&format!("{}{path}", url.trim_end_matches('/')))
        }
        _ => no_leader(),
    }
}

fn redirect(location: &str) -> Response {
    match header::HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the leader's URL {location:?} is not a valid Location"),
        ),
    }
}

/// 503 `{"message": ...}`: nobody leads (an election is under way, or no majority).
pub fn no_leader() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({"message": "no leader elected yet; retry"})),
    )
        .into_response()
}

/// `GET /redirect`: 307 to the leader's `/`. A single master names itself (from the request's
/// `Host`, as it does not know its own URL).
pub async fn leader_redirect(State(h): State<ApiState>, headers: HeaderMap) -> Response {
    let Some(replica) = &h.replica else {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if h.tls { "https" } else { "http" };
        return redirect(&format!("{scheme}://{host}/"));
    };
    match replica.leadership().borrow().leader.clone() {
        Some((_, url)) => redirect(&format!("{}/", url.trim_end_matches('/'))),
        None => no_leader(),
    }
}

/// `GET /replica`: how this master sees the group (operator token).
pub async fn status(State(h): State<ApiState>, peer: PeerCert, headers: HeaderMap) -> Response {
    match authenticate(&h, &peer, &headers, Route::Client) {
        Ok(Identity::Operator) => {}
        Ok(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "GET /replica needs the operator token",
            );
        }
        Err(r) => return r,
    }
    let Some(replica) = &h.replica else {
        return error(
            StatusCode::NOT_FOUND,
            "this master is not replicated (no replica_id in its config)",
        );
    };
    axum::Json(replica_status(replica, &h.self_url)).into_response()
}

/// This master's view of the group.
pub fn replica_status(replica: &Replica, self_url: &str) -> ReplicaStatus {
    let l = replica.leadership().borrow().clone();
    let (last_log_index, applied_index, _) = replica.log_position();
    let (snapshot_index, purged_index) = replica.snapshot_position();
    let (voters, learners) = replica.members();
    let matched = replica.matched();
    let member = |(id, url): (&NodeId, &String), voter: bool| ReplicaMember {
        id: *id,
        url: url.clone(),
        voter,
        matched_index: matched.as_ref().and_then(|m| m.get(id).copied().flatten()),
    };
    let mut members: Vec<ReplicaMember> = voters.iter().map(|m| member(m, true)).collect();
    members.extend(learners.iter().map(|m| member(m, false)));
    ReplicaStatus {
        id: replica.id(),
        url: self_url.to_string(),
        is_leader: l.is_leader,
        leader: l.leader.map(|(id, url)| MasterRef { id, url }),
        term: l.term,
        last_log_index,
        applied_index,
        snapshot_index,
        purged_index,
        voters: voters.keys().copied().collect(),
        learners: learners.keys().copied().collect(),
        members,
    }
}

/// `ADD_MASTER`: learner, caught up, then voter. An id already a voter at the same URL is done.
pub async fn add_master(replica: &Arc<Replica>, id: NodeId, url: &str) -> Response {
    let (voters, _) = replica.members();
    match voters.get(&id) {
        Some(u) if u == url => return ok(),
        Some(u) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "master {id} is already a member at {u}, not {url}: give a new master a new id"
                ),
            );
        }
        None => {}
    }
    if let Err(e) = replica.add_learner(id, url).await {
        return membership_failed(e);
    }
    let mut all: BTreeSet<NodeId> = replica.members().0.keys().copied().collect();
    all.insert(id);
    match replica.set_voters(all).await {
        Ok(()) => ok(),
        Err(e) => membership_failed(e),
    }
}

/// `REMOVE_MASTER`: never the leader (409); a non-member is already removed.
pub async fn remove_master(replica: &Arc<Replica>, id: NodeId) -> Response {
    if id == replica.id() {
        return error(
            StatusCode::CONFLICT,
            format!(
                "master {id} is the leader: remove the others first, or stop it so another is elected"
            ),
        );
    }
    let (voters, learners) = replica.members();
    if !voters.contains_key(&id) && !learners.contains_key(&id) {
        return ok();
    }
    match replica.remove(id).await {
        Ok(()) => ok(),
        Err(e) => membership_failed(e),
    }
}

fn ok() -> Response {
    axum::Json(serde_json::json!({})).into_response()
}

fn membership_failed(e: ReplicaError) -> Response {
    let status = match &e {
        ReplicaError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ReplicaError::Membership(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, dc_support::error::chain(&e))
}
