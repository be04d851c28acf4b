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
use dccore_api::operator::Call;
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
    let call = match parse::<Value>(&body)
        .and_then(|v| read_call(v).map_err(|msg| error(StatusCode::BAD_REQUEST, msg)))
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(call) = AgentCall::of(&call) {
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
    if let Call::AddMaster { .. } | Call::RemoveMaster { .. } = call {
        if identity != Identity::Operator {
            return error(
                StatusCode::FORBIDDEN,
                format!("{} needs the operator token", call.name()),
            );
        }
        let Some(replica) = &h.replica else {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} needs replicated masters (this master has no replica_id)",
                    call.name()
                ),
            );
        };
        return match call {
            Call::AddMaster { add_master: m } => {
                super::replicated::add_master(replica, m.id, &m.url).await
            }
            Call::RemoveMaster { remove_master: m } => {
                super::replicated::remove_master(replica, m.id).await
            }
            _ => error(StatusCode::INTERNAL_SERVER_ERROR, "unreachable call kind"),
        };
    }
    if let Call::Teardown { teardown: t } = call {
        return teardown(&h, &identity, t.framework_id).await;
    }
    let Some(query) = OperatorQuery::of(&call) else {
        // Every other call is a query: `AgentCall::of` and TEARDOWN took the rest.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{} has no handler", call.name()),
        );
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
    match tokio::task::spawn_blocking(move || serde_json::to_vec(&view.to_response())).await {
        Ok(Ok(body)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing the answer failed: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the answer failed: {e}"),
        ),
    }
}

/// Reads an operator call into the typed [`Call`]. The errors name what is wrong: no `type`,
/// an unknown one (listing the supported calls), or the call's body that is missing or invalid.
fn read_call(v: Value) -> Result<Call, String> {
    let Some(kind) = v.get("type").and_then(Value::as_str).map(str::to_string) else {
        return Err("operator call needs a string \"type\"".to_string());
    };
    if !Call::TYPES.contains(&kind.as_str()) {
        return Err(format!(
            "unsupported operator call type {kind:?}: supported are {}",
            Call::TYPES.join(", ")
        ));
    }
    // A call's body is the field named like its type (`DRAIN_AGENT` -> `drain_agent`).
    let field = kind.to_ascii_lowercase();
    let has_body = v.get(&field).is_some();
    serde_json::from_value(v).map_err(|e| match (kind.as_str(), has_body) {
        ("TEARDOWN", false) => "TEARDOWN needs teardown.framework_id".to_string(),
        ("ADD_MASTER", false) => {
            "ADD_MASTER needs add_master: {\"id\": N, \"url\": \"https://host:port\"}".to_string()
        }
        ("REMOVE_MASTER", false) => "REMOVE_MASTER needs remove_master: {\"id\": N}".to_string(),
        (_, false) => format!("{kind} needs \"{field}\": {{\"agent_id\": {{\"value\": ...}}}}"),
        (_, true) => format!("invalid {field}: {e}"),
    })
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

async fn teardown(h: &ApiState, identity: &Identity, framework_id: Id) -> Response {
    let principal = identity.principal().map(str::to_string);
    match ask(h, |reply| MasterCommand::Teardown {
        framework_id: framework_id.value,
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
    use serde_json::json;

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

    #[test]
    fn a_call_that_does_not_read_says_what_is_wrong() {
        let err = |v: Value| read_call(v).unwrap_err();
        assert_eq!(err(json!({})), "operator call needs a string \"type\"");
        assert_eq!(
            err(json!({"type": "GET_MASTER"})),
            "unsupported operator call type \"GET_MASTER\": supported are GET_HEALTH, GET_STATE, GET_AGENTS, GET_FRAMEWORKS, GET_TASKS, GET_ALLOCATION, DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT, TEARDOWN, ADD_MASTER, REMOVE_MASTER"
        );
        assert_eq!(
            err(json!({"type": "ADD_MASTER"})),
            "ADD_MASTER needs add_master: {\"id\": N, \"url\": \"https://host:port\"}"
        );
        let e = err(json!({"type": "REACTIVATE_AGENT"}));
        assert!(e.contains("needs \"reactivate_agent\""), "{e}");
        assert_eq!(
            err(json!({"type": "TEARDOWN"})),
            "TEARDOWN needs teardown.framework_id"
        );
        let e = err(json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": 5}}));
        assert!(e.starts_with("invalid drain_agent: "), "{e}");
        assert_eq!(
            read_call(json!({"type": "GET_ALLOCATION"})),
            Ok(Call::GetAllocation)
        );
    }
}
