//! `GET /metrics`: Prometheus text exposition (operator token, or a principal granted
//! `get_endpoints` for `/metrics`).

use super::{ApiState, Route, ask, authenticate, error};
use crate::acl::Action;
use crate::master::{MasterCommand, MetricsSnapshot};
use crate::tls::PeerCert;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Serves the metrics.
pub async fn handle(State(h): State<ApiState>, peer: PeerCert, headers: HeaderMap) -> Response {
    let identity = match authenticate(&h, &peer, &headers, Route::Client) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let Some(p) = identity.principal()
        && !h
            .acls
            .allows(Action::GetEndpoint, Some(p), Some("/metrics"))
    {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "principal {p:?} may not read /metrics: it needs the operator token or a get_endpoints rule with path /metrics"
            ),
        );
    }
    match ask(&h, |reply| MasterCommand::Metrics { reply }).await {
        Ok(m) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(&m, h.unauthorized.load(Ordering::Relaxed)),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// Renders a snapshot in the Prometheus text format.
pub fn render(m: &MetricsSnapshot, unauthorized: u64) -> String {
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in lines {
            let _ = writeln!(s, "{name}{labels} {value}");
        }
    };
    metric(
        "dccore_agents",
        "gauge",
        "Agents by reachability.",
        &[
            (
                "{state=\"reachable\"}".into(),
                m.agents_reachable.to_string(),
            ),
            (
                "{state=\"unreachable\"}".into(),
                m.agents_unreachable.to_string(),
            ),
        ],
    );
    metric(
        "dccore_frameworks",
        "gauge",
        "Frameworks by connection.",
        &[
            (
                "{state=\"connected\"}".into(),
                m.frameworks_connected.to_string(),
            ),
            ("{state=\"all\"}".into(), m.frameworks_total.to_string()),
        ],
    );
    metric(
        "dccore_offers_outstanding",
        "gauge",
        "Offers not yet answered.",
        &[(String::new(), m.offers_outstanding.to_string())],
    );
    metric(
        "dccore_offers_total",
        "counter",
        "Offers made.",
        &[(String::new(), m.offers_total.to_string())],
    );
    let tasks: Vec<(String, String)> = m
        .tasks_by_state
        .iter()
        .map(|(st, n)| (format!("{{state=\"{st}\"}}"), n.to_string()))
        .collect();
    metric(
        "dccore_tasks",
        "gauge",
        "Tasks by state (current plus completed since start).",
        &tasks,
    );
    metric(
        "dccore_status_updates_unacknowledged",
        "gauge",
        "Tasks with a status update awaiting acknowledgement.",
        &[(String::new(), m.status_updates_unacked.to_string())],
    );
    metric(
        "dccore_allocation_cycles_total",
        "counter",
        "Allocation cycles run.",
        &[(String::new(), m.allocation_cycles.to_string())],
    );
    metric(
        "dccore_allocation_cycle_seconds",
        "gauge",
        "Duration of the last allocation cycle.",
        &[(String::new(), format!("{:.9}", m.allocation_last_seconds))],
    );
    metric(
        "dccore_allocation_seconds_total",
        "counter",
        "Time spent in allocation cycles.",
        &[(String::new(), format!("{:.9}", m.allocation_seconds_total))],
    );
    let labelled = |counts: &[(&'static str, u64)]| -> Vec<(String, String)> {
        counts
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n.to_string()))
            .collect()
    };
    metric(
        "dccore_allocation_agents_not_offered_total",
        "counter",
        "Agents offered to no framework in an allocation cycle, by reason (summed over cycles).",
        &labelled(&m.agents_not_offered),
    );
    metric(
        "dccore_allocation_frameworks_passed_over_total",
        "counter",
        "Times a framework next in line for an agent was passed over, by reason.",
        &labelled(&m.frameworks_passed_over),
    );
    metric(
        "dccore_http_unauthorized_total",
        "counter",
        "Requests rejected with 401.",
        &[(String::new(), unauthorized.to_string())],
    );
    s
}
