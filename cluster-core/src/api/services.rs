//! `GET /v1/services` and `GET /v1/services/{name}`: what the DNS server answers, as JSON, for
//! clients that do not use DNS. Authenticated like the operator API: the operator token sees
//! every instance; a framework principal sees the instances of its own frameworks and of the
//! task users its `view_tasks` rules allow (as `GET_TASKS`), and a service none of whose
//! instances it may see is unknown to it (404).
//!
//! ```json
//! {"domain": "dccore", "services": [{"name": "web.prod.marathon", "dns": "web.prod.marathon.dccore",
//!   "srv": "_web.prod._tcp.marathon.dccore", "instances": [{"task_id": "..", "framework_id": "..",
//!   "agent_id": "..", "host": "node-1", "ip": "10.0.0.5", "ports": [31001],
//!   "target": "<agent>.slave.dccore", "healthy": null}]}]}
//! ```

use super::{ApiState, Route, authenticate};
use crate::acl::Action;
use crate::auth::Identity;
use crate::discovery::{Instance, Service};
use crate::tls::PeerCert;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /v1/services`.
pub async fn list(State(h): State<ApiState>, peer: PeerCert, headers: HeaderMap) -> Response {
    let who = match authenticate(&h, &peer, &headers, Route::Client) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let (_, records) = h.discovery.records();
    let services: Vec<Service> = records
        .services
        .values()
        .filter_map(|s| visible(&h, &who, s))
        .collect();
    Json(json!({"domain": records.domain, "services": services})).into_response()
}

/// `GET /v1/services/{name}`: `name` as under the domain (`web.prod.marathon`) or the full
/// `A` name (`web.prod.marathon.dccore`).
pub async fn one(
    State(h): State<ApiState>,
    peer: PeerCert,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let who = match authenticate(&h, &peer, &headers, Route::Client) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let (_, records) = h.discovery.records();
    match records.service(&name).and_then(|s| visible(&h, &who, s)) {
        Some(s) => Json(s).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!(
                "no service {name:?} under {}: GET /v1/services lists the running ones (names like web.prod.marathon)",
                records.domain
            )})),
        )
            .into_response(),
    }
}

/// The service with only the instances `who` may see; `None` if that leaves none.
fn visible(h: &ApiState, who: &Identity, s: &Service) -> Option<Service> {
    let Some(p) = who.principal() else {
        return Some(s.clone());
    };
    let sees = |i: &Instance| {
        i.framework_principal.as_deref() == Some(p)
            || h.acls.allows(Action::ViewTask, Some(p), Some(&i.user))
    };
    let instances: Vec<Instance> = s.instances.iter().filter(|i| sees(i)).cloned().collect();
    (!instances.is_empty()).then(|| Service {
        instances,
        ..s.clone()
    })
}
