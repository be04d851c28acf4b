//! `POST /internal/raft/{append,vote,snapshot}`: Raft RPCs from the other masters, answered by
//! this master's [`Replica`].
//!
//! Only masters may call these: the request must carry the master secret (shared by the
//! masters, from `replica_secret_file`) as its Bearer token, compared in constant time. No
//! other credential is admitted — an operator or a framework that could write the log would
//! bypass every rule of the APIs. The body is read only after the secret checks out, so an
//! unauthenticated caller cannot make this master buffer a snapshot-sized body.
//!
//! | answer | when |
//! |---|---|
//! | 200, JSON `Result<reply, RaftError>` | the RPC reached Raft (its own refusals are in the body) |
//! | 401 | no or another secret |
//! | 404 | an RPC this version does not know |
//! | 400 | a body this version cannot read |
//! | 413 | a body over [`MAX_BODY`] |
//! | 503 | this replica has stopped |

use super::error;
use crate::auth::ct_eq;
use crate::replica::{Replica, ReplicaError, RpcKind};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;

/// Largest RPC body: a whole snapshot of a large cluster fits (100,000 tasks are some tens of
/// MB of JSON).
pub const MAX_BODY: usize = 1 << 30;

#[derive(Clone)]
struct RaftApi {
    replica: Arc<Replica>,
    secret: Arc<str>,
}

/// The Raft routes for `replica`, admitting only `secret`.
pub fn router(replica: Arc<Replica>, secret: impl Into<Arc<str>>) -> Router {
    Router::new()
        .route("/internal/raft/{kind}", post(handle))
        .with_state(RaftApi {
            replica,
            secret: secret.into(),
        })
}

async fn handle(
    State(api): State<RaftApi>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| ct_eq(t.as_bytes(), api.secret.as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "the Raft routes admit only the master secret (Authorization: Bearer SECRET)",
        );
    }
    let Some(kind) = RpcKind::from_name(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no Raft RPC {kind:?}; known: append, vote, snapshot"),
        );
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
            );
        }
    };
    match api.replica.serve_rpc(kind, &body).await {
        Ok(answer) => ([(header::CONTENT_TYPE, "application/json")], answer).into_response(),
        Err(e @ ReplicaError::BadRpc { .. }) => {
            error(StatusCode::BAD_REQUEST, dc_support::error::chain(&e))
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            dc_support::error::chain(&e),
        ),
    }
}
