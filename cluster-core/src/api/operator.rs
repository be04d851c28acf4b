//! `POST /api/v1`: the operator API (GET_HEALTH, GET_STATE, GET_AGENTS, GET_FRAMEWORKS, GET_TASKS).

use super::{ask, authenticate, error, parse};
use crate::master::{MasterCommand, MasterHandle, OperatorQuery};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Deserialize)]
struct OperatorCall {
    #[serde(rename = "type")]
    kind: String,
}

/// Handles one operator call.
pub async fn handle(State(h): State<MasterHandle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authenticate(&h, &headers, true) {
        return r;
    }
    let call: OperatorCall = match parse(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = match OperatorQuery::parse(&call.kind) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match ask(&h, |reply| MasterCommand::Operator { query, reply }).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}
