//! `POST /api/v1`: the operator API. Queries (GET_HEALTH, GET_STATE, GET_AGENTS, GET_FRAMEWORKS,
//! GET_TASKS) answer Mesos `Response` JSON; agent maintenance (DRAIN_AGENT, DEACTIVATE_AGENT,
//! REACTIVATE_AGENT) answers 200 with an empty body, as Mesos does.

use super::{ask, authenticate, error, parse};
use crate::master::{AgentCall, MasterCommand, MasterHandle, OperatorQuery};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Handles one operator call.
pub async fn handle(State(h): State<MasterHandle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authenticate(&h, &headers, true) {
        return r;
    }
    let call: Value = match parse(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(parsed) = AgentCall::parse(&call) {
        let call = match parsed {
            Ok(c) => c,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        };
        return match ask(&h, |reply| MasterCommand::Agent { call, reply }).await {
            Ok(Ok(())) => StatusCode::OK.into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(r) => r,
        };
    }
    let Some(kind) = call.get("type").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "operator call needs a string \"type\"",
        );
    };
    let query = match OperatorQuery::parse(kind) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match ask(&h, |reply| MasterCommand::Operator { query, reply }).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}
