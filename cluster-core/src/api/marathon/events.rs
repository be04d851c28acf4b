//! `GET /v2/events`: the services framework's events as server-sent events
//! (`text/event-stream`), Marathon's event stream. The stream opens with
//! `event_stream_attached`, then carries every event of the framework
//! ([`crate::services::events`]) whose type `event_type=` names (all without it; the parameter
//! repeats, or takes a comma-separated list). A comment line every [`KEEP_ALIVE`] keeps proxies
//! from closing a quiet stream.
//!
//! The stream ends when the framework stops (shutdown; a lost lead, after which the client
//! reconnects and is redirected to the new leader) and when this client fell more than
//! [`EVENT_BUFFER`](crate::services::events::EVENT_BUFFER) events behind: it is told so in a
//! comment and should re-read the state it follows. The framework never waits for a client.

use super::MarathonState;
use crate::proto::now_secs;
use crate::services::{EventReceiver, ServiceCommand, iso_time};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dccore_api::marathon::events::MarathonEvent;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a quiet stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where a stream is.
enum Phase {
    /// `event_stream_attached` not sent yet.
    Attached(EventReceiver),
    /// Forwarding the framework's events.
    Events(EventReceiver),
    /// Told it lagged: ends next.
    Done,
}

/// The `event_type` values asked for (none: every type).
fn wanted(query: &[(String, String)]) -> Vec<String> {
    query
        .iter()
        .filter(|(k, _)| k == "event_type")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn sse(e: &MarathonEvent) -> Event {
    match Event::default().event(e.event_type()).json_data(e) {
        Ok(ev) => ev,
        // Our own types always serialize; should one not, the client learns it in a comment.
        Err(err) => Event::default().comment(format!("cannot encode an event: {err}")),
    }
}

pub(super) async fn stream(
    State(h): State<MarathonState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let rx = match h
        .services
        .ask(|reply| ServiceCommand::Events { reply })
        .await
    {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    Sse::new(events(rx, wanted(&q)))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// The stream of one client: `event_stream_attached`, then the events of `rx` whose type is in
/// `types` (all if empty), until `rx` closes or lags.
fn events(
    rx: EventReceiver,
    types: Vec<String>,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let pass =
        move |e: &MarathonEvent| types.is_empty() || types.iter().any(|t| t == e.event_type());
    futures_util::stream::unfold(Phase::Attached(rx), move |phase| {
        let pass = pass.clone();
        async move {
            let mut rx = match phase {
                Phase::Done => return None,
                Phase::Attached(rx) => {
                    let attached = MarathonEvent::EventStreamAttached {
                        // The handlers are not told the connection's peer address.
                        remote_address: String::new(),
                        timestamp: iso_time(now_secs()),
                    };
                    if pass(&attached) {
                        return Some((Ok(sse(&attached)), Phase::Events(rx)));
                    }
                    rx
                }
                Phase::Events(rx) => rx,
            };
            loop {
                match rx.recv().await {
                    Ok(e) if pass(&e) => return Some((Ok(sse(&e)), Phase::Events(rx))),
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        let note = format!(
                            "dropped: this client is {n} events behind; reconnect and re-read the state"
                        );
                        return Some((Ok(Event::default().comment(note)), Phase::Done));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn health(alive: bool) -> Arc<MarathonEvent> {
        Arc::new(MarathonEvent::HealthStatusChangedEvent {
            app_id: "/web".into(),
            task_id: "web.1".into(),
            instance_id: "web.1".into(),
            version: "v".into(),
            alive,
            timestamp: "t".into(),
        })
    }

    /// What a client of `events` reads, to the stream's end.
    async fn body(rx: EventReceiver, types: &[&str]) -> String {
        let types = types.iter().map(|t| (*t).to_string()).collect();
        let r = Sse::new(events(rx, types)).into_response();
        let limit = 1 << 20;
        let bytes = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(r.into_body(), limit),
        )
        .await
        .expect("the stream ended")
        .expect("a body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    #[tokio::test]
    async fn a_client_too_far_behind_is_told_and_its_stream_ends_while_the_sender_never_waits() {
        let (tx, rx) = tokio::sync::broadcast::channel(2);
        // Nobody reads yet: sending five into a channel of two does not wait.
        for i in 0..5 {
            tx.send(health(i % 2 == 0)).expect("a receiver exists");
        }
        let text = body(rx, &[]).await;
        let blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.is_empty()).collect();
        assert!(
            blocks[0].starts_with("event: event_stream_attached\n"),
            "{text}"
        );
        assert_eq!(
            blocks[1], ": dropped: this client is 3 events behind; reconnect and re-read the state",
            "{text}"
        );
        assert_eq!(blocks.len(), 2, "nothing after the note: {text}");
        drop(tx);
    }

    #[tokio::test]
    async fn the_filter_passes_only_the_asked_types_and_the_stream_ends_with_the_framework() {
        let (tx, rx) = tokio::sync::broadcast::channel(16);
        tx.send(health(true)).expect("a receiver exists");
        tx.send(Arc::new(MarathonEvent::DeploymentSuccess {
            id: "d1".into(),
            plan: serde_json::from_value(serde_json::json!({"id": "d1", "version": "v",
                "original": {"id": "/", "apps": [], "version": "v"},
                "target": {"id": "/", "apps": [], "version": "v"}, "steps": []}))
            .expect("a plan"),
            timestamp: "t".into(),
        }))
        .expect("a receiver exists");
        // The framework stops: its sender goes, and the stream ends after what was sent.
        drop(tx);
        let text = body(rx, &["deployment_success"]).await;
        assert!(
            text.starts_with("event: deployment_success\ndata: {"),
            "{text}"
        );
        assert!(
            text.contains(r#""eventType":"deployment_success""#),
            "{text}"
        );
        assert!(!text.contains("health_status_changed_event"), "{text}");
        assert!(
            !text.contains("event_stream_attached"),
            "filtered out too: {text}"
        );
    }

    #[test]
    fn event_type_repeats_or_lists_and_empty_values_ask_for_nothing() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        assert!(super::wanted(&q(&[("event_type", "")])).is_empty());
        assert_eq!(
            super::wanted(&q(&[
                ("event_type", "deployment_info"),
                ("x", "y"),
                ("event_type", "status_update_event, deployment_success")
            ])),
            [
                "deployment_info",
                "status_update_event",
                "deployment_success"
            ]
        );
    }
}
