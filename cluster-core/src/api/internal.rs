//! Agent-facing routes (`/internal/v1/agents/*`): registration, heartbeats, status updates.

use super::{ApiState, Route, ask, authenticate, error, parse};
use crate::auth::Identity;
use crate::master::MasterCommand;
use crate::proto::internal::{Heartbeat, RegisterAgent, StatusMessage};
use crate::tls::PeerCert;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// What every agent route does first: the caller must be an agent (or the operator), and the
/// body one message of type `M`. The answer to send otherwise.
fn agent_message<M: serde::de::DeserializeOwned>(
    h: &ApiState,
    peer: &PeerCert,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Identity, M), Response> {
    let identity = authenticate(h, peer, headers, Route::Agent)?;
    Ok((identity, parse(body)?))
}

/// `POST /internal/v1/agents/register`.
///
/// The master calls the agent back with the `callback_token` the agent sent (a secret of that
/// agent run). An agent of an older version sends none and expects the one cluster token: that
/// is allowed only when it authenticated with the operator token (it holds it already); an agent
/// credential without a callback token is refused, so that the master never hands the operator
/// token to a process that only proved it is an agent.
pub async fn register(
    State(h): State<ApiState>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (identity, mut msg) = match agent_message::<RegisterAgent>(&h, &peer, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if msg.url.is_empty() {
        return error(StatusCode::BAD_REQUEST, "url must be the agent's base URL");
    }
    match (&msg.callback_token, identity) {
        (Some(t), _) if !t.is_empty() => {}
        (_, Identity::Operator) => {
            msg.callback_token = Some(h.auth.operator_token().to_string());
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "registration has no callback_token: an agent that authenticates with an agent token must send the per-run secret the master calls it with (upgrade the agent)",
            );
        }
    }
    match ask(&h, |reply| MasterCommand::RegisterAgent {
        msg: Box::new(msg),
        reply,
    })
    .await
    {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(r) => r,
    }
}

/// `POST /internal/v1/agents/heartbeat`: 200 with a [`HeartbeatAck`](crate::proto::internal::HeartbeatAck), or 404 when the agent must register again.
pub async fn heartbeat(
    State(h): State<ApiState>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let msg = match agent_message::<Heartbeat>(&h, &peer, &headers, &body) {
        Ok((_, m)) => m,
        Err(r) => return r,
    };
    match ask(&h, |reply| MasterCommand::Heartbeat {
        agent_id: msg.agent_id.value,
        reply,
    })
    .await
    {
        Ok(Some(ack)) => axum::Json(ack).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown or unreachable agent: register again",
        ),
        Err(r) => r,
    }
}

/// `POST /internal/v1/agents/status`: 200 once the master has recorded the update.
pub async fn status(
    State(h): State<ApiState>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let msg = match agent_message::<StatusMessage>(&h, &peer, &headers, &body) {
        Ok((_, m)) => m,
        Err(r) => return r,
    };
    match ask(&h, |reply| MasterCommand::AgentStatus {
        msg: Box::new(msg),
        reply,
    })
    .await
    {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => error(
            StatusCode::CONFLICT,
            "unknown or unreachable agent: register again",
        ),
        Err(r) => r,
    }
}
