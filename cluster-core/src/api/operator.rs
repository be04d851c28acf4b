//! `POST /api/v1`: the operator API. Queries (GET_HEALTH, GET_STATE, GET_AGENTS, GET_FRAMEWORKS,
//! GET_TASKS, and dccore's GET_ALLOCATION) answer Mesos `Response` JSON; agent maintenance (DRAIN_AGENT, DEACTIVATE_AGENT,
//! REACTIVATE_AGENT) and TEARDOWN answer 200 with an empty body, as Mesos does.
//!
//! The operator token may do everything. A framework principal sees only its own frameworks and
//! tasks (plus what `view_frameworks` / `view_tasks` grant), may tear down only its own frameworks
//! (plus what `teardown_frameworks` grants), and gets 403 for agent maintenance unless
//! `drain_agents` / `deactivate_agents` / `reactivate_agents` / `mark_agents_gone` grant it.

use super::{ApiState, Route, ask, authenticate, error, parse};
use crate::acl::{Acls, Action};
use crate::auth::Identity;
use crate::master::{AgentCall, MasterCommand, OperatorQuery, Viewer};
use crate::proto::Id;
use crate::tls::PeerCert;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Handles one operator call.
pub async fn handle(
    State(h): State<ApiState>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let identity = match authenticate(&h, &peer, &headers, Route::Client) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let call: Value = match parse(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(parsed) = AgentCall::parse(&call) {
        let call = match parsed {
            Ok(c) => c,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        };
        if let Some(p) = identity.principal()
            && let Err(why) = may_change_agent(&h.acls, p, &call)
        {
            return error(StatusCode::FORBIDDEN, why);
        }
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
    if kind == "TEARDOWN" {
        return teardown(&h, &identity, &call).await;
    }
    let query = match OperatorQuery::parse(kind) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let viewer = match identity {
        Identity::Principal(p) => Viewer::Principal(p),
        // Agents never get here (authenticate refuses them on this route).
        Identity::Operator | Identity::Agent(_) => Viewer::Operator,
    };
    let view = match ask(&h, |reply| MasterCommand::Operator {
        query,
        viewer,
        reply,
    })
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    // The JSON of a big GET_STATE takes a while: built here from the master's snapshot, on a
    // blocking thread, so neither the master nor this runtime's workers wait for it.
    match tokio::task::spawn_blocking(move || view.to_json()).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the answer failed: {e}"),
        ),
    }
}

/// The rules a principal needs for an agent maintenance call; the error says which is missing.
fn may_change_agent(acls: &Acls, principal: &str, call: &AgentCall) -> Result<(), String> {
    let (kind, mut needs) = match call {
        AgentCall::Drain { config, .. } => {
            let mut n = vec![Action::DrainAgent];
            if config.mark_gone {
                n.push(Action::MarkAgentGone);
            }
            ("DRAIN_AGENT", n)
        }
        AgentCall::Deactivate { .. } => ("DEACTIVATE_AGENT", vec![Action::DeactivateAgent]),
        AgentCall::Reactivate { .. } => ("REACTIVATE_AGENT", vec![Action::ReactivateAgent]),
    };
    needs.retain(|a| !acls.allows(*a, Some(principal), None));
    match needs.first() {
        None => Ok(()),
        Some(a) => Err(format!(
            "principal {principal:?} may not {kind}: it needs operator rights (the operator token, or a {} rule for this principal)",
            a.json_name()
        )),
    }
}

#[derive(serde::Deserialize)]
struct TeardownBody {
    framework_id: Id,
}

async fn teardown(h: &ApiState, identity: &Identity, call: &Value) -> Response {
    let body: TeardownBody = match call.get("teardown").cloned().map(serde_json::from_value) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("invalid teardown: {e}"));
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "TEARDOWN needs teardown.framework_id",
            );
        }
    };
    let principal = identity.principal().map(str::to_string);
    match ask(h, |reply| MasterCommand::Teardown {
        framework_id: body.framework_id.value,
        principal,
        reply,
    })
    .await
    {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::DrainConfig;

    #[test]
    fn agent_maintenance_needs_the_rule_for_each_part_of_the_call() {
        let acls = Acls::parse(
            r#"{"drain_agents": [{"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}}]}"#,
            "nobody",
        )
        .unwrap();
        let drain = |mark_gone| AgentCall::Drain {
            agent_id: "a".into(),
            config: DrainConfig {
                max_grace_period: None,
                mark_gone,
            },
        };
        assert_eq!(may_change_agent(&acls, "ops", &drain(false)), Ok(()));
        let e = may_change_agent(&acls, "ops", &drain(true)).unwrap_err();
        assert!(e.contains("mark_agents_gone"), "{e}");
        let e = may_change_agent(&acls, "bob", &drain(false)).unwrap_err();
        assert!(e.contains("DRAIN_AGENT") && e.contains("operator"), "{e}");
        let e = may_change_agent(
            &acls,
            "ops",
            &AgentCall::Deactivate {
                agent_id: "a".into(),
            },
        )
        .unwrap_err();
        assert!(e.contains("deactivate_agents"), "{e}");
    }
}
