//! Runs one health check against an instance's host port: HTTP (`GET path` answers 2xx/3xx,
//! Marathon's rule) or TCP (a connection opens), within the check's timeout. COMMAND checks are
//! run by the agent next to the task (`launch::task_info` puts them in the `TaskInfo`; results
//! come back as `TaskStatus.healthy`), so `scheduler::due_checks` skips them.

use dccore_api::marathon::{HealthCheck, Protocol};
use std::time::Duration;

/// True if the instance passed.
pub(super) async fn run(
    http: &reqwest::Client,
    host: &str,
    port: u16,
    check: &HealthCheck,
) -> bool {
    let timeout = Duration::from_secs_f64(check.timeout_secs);
    match check.protocol {
        Protocol::Http => {
            let path = if check.path.starts_with('/') {
                check.path.clone()
            } else {
                format!("/{}", check.path)
            };
            let url = format!("http://{}{path}", join_host_port(host, port));
            match tokio::time::timeout(timeout, http.get(&url).send()).await {
                Ok(Ok(r)) => r.status().is_success() || r.status().is_redirection(),
                _ => false,
            }
        }
        Protocol::Tcp => matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
            Ok(Ok(_))
        ),
        Protocol::Command => true,
    }
}

/// `host:port`, with brackets for an IPv6 literal.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(protocol: Protocol) -> HealthCheck {
        HealthCheck {
            protocol,
            path: "/".into(),
            port_index: 0,
            grace_period_secs: 0.0,
            interval_secs: 1.0,
            timeout_secs: 5.0,
            max_consecutive_failures: 1,
            command: None,
        }
    }

    #[tokio::test]
    async fn tcp_passes_on_a_listening_port_and_fails_on_a_closed_one() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        // The workspace's rustls has no built-in provider: a client needs one installed first.
        crate::tls::install_default_provider();
        let http = reqwest::Client::new();
        assert!(run(&http, "127.0.0.1", port, &check(Protocol::Tcp)).await);
        drop(l);
        assert!(!run(&http, "127.0.0.1", port, &check(Protocol::Tcp)).await);
    }

    #[tokio::test]
    async fn http_passes_on_2xx_and_fails_on_5xx() {
        crate::tls::install_default_provider();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/bad",
                axum::routing::get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
            );
        let server = tokio::spawn(async move { axum::serve(l, app).await });
        let http = reqwest::Client::new();
        assert!(run(&http, "127.0.0.1", port, &check(Protocol::Http)).await);
        let mut bad = check(Protocol::Http);
        bad.path = "/bad".into();
        assert!(!run(&http, "127.0.0.1", port, &bad).await);
        server.abort();
    }
}
