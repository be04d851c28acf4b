//! Agent-facing routes (`/internal/v1/agents/*`): registration, heartbeats, status updates.

use super::{ask, authenticate, error, parse};
use crate::master::{MasterCommand, MasterHandle};
use crate::proto::internal::{Heartbeat, RegisterAgent, StatusMessage};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// `POST /internal/v1/agents/register`.
pub async fn register(State(h): State<MasterHandle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authenticate(&h, &headers, false) {
        return r;
    }
    let msg: RegisterAgent = match parse(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if msg.url.is_empty() {
        return error(StatusCode::BAD_REQUEST, "url must be the agent's base URL");
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
pub async fn heartbeat(State(h): State<MasterHandle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authenticate(&h, &headers, false) {
        return r;
    }
    let msg: Heartbeat = match parse(&body) {
        Ok(m) => m,
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
pub async fn status(State(h): State<MasterHandle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authenticate(&h, &headers, false) {
        return r;
    }
    let msg: StatusMessage = match parse(&body) {
        Ok(m) => m,
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
