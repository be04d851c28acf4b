//! A stand-in for one master of a replicated group, at our own API boundary: an axum server that
//! answers as the interface says a master does, switchable while the test runs:
//! - [`Mode::Lead`]: it is the leader: every request is passed to a real `dccore` master and its
//!   answer returned (so the agent registers, heartbeats and reports to a real master);
//! - [`Mode::Follow`]: a follower: `307 Temporary Redirect` with `Location: <leader><same path>`;
//! - [`Mode::NoLeader`]: `503` `{"message":"no leader elected yet; retry"}`;
//! - [`Front::stop`]: gone (connection refused).
//!
//! It counts the requests it got per path, and which of them carried an `Authorization` header.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the front answers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Pass everything to the real master at this URL.
    Lead(String),
    /// Redirect to this base URL.
    Follow(String),
    /// 503: no leader known.
    NoLeader,
}

#[derive(Default)]
struct Seen {
    /// Requests per path.
    paths: BTreeMap<String, usize>,
    /// Requests that carried an Authorization header.
    with_credential: usize,
}

struct Inner {
    mode: Mutex<Mode>,
    seen: Mutex<Seen>,
    http: reqwest::Client,
}

pub struct Front {
    pub url: String,
    inner: Arc<Inner>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Front {
    pub async fn start(mode: Mode) -> Front {
        dccore::tls::install_default_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind front");
        let url = format!("http://{}", listener.local_addr().expect("front address"));
        let inner = Arc::new(Inner {
            mode: Mutex::new(mode),
            seen: Mutex::new(Seen::default()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
                .expect("front serves");
        });
        Front {
            url,
            inner,
            stop,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.inner.mode.lock().expect("mode lock") = mode;
    }

    /// Requests seen on `path`.
    pub fn count(&self, path: &str) -> usize {
        let seen = self.inner.seen.lock().expect("seen lock");
        seen.paths.get(path).copied().unwrap_or(0)
    }

    /// Requests seen in all.
    pub fn total(&self) -> usize {
        let seen = self.inner.seen.lock().expect("seen lock");
        seen.paths.values().sum()
    }

    /// Requests that carried a credential.
    pub fn with_credential(&self) -> usize {
        self.inner.seen.lock().expect("seen lock").with_credential
    }

    /// Stops listening: connections are refused from now on.
    pub async fn stop(self) {
        self.stop.cancel();
        dc_support::testing::within(
            std::time::Duration::from_secs(30),
            "front shutdown",
            self.task,
        )
        .await
        .expect("front task");
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let mut seen = inner.seen.lock().expect("seen lock");
        *seen.paths.entry(uri.path().to_string()).or_default() += 1;
        if headers.contains_key(header::AUTHORIZATION) {
            seen.with_credential += 1;
        }
    }
    let mode = inner.mode.lock().expect("mode lock").clone();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    match mode {
        Mode::Follow(leader) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("{leader}{path}"))],
        )
            .into_response(),
        Mode::NoLeader => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message":"no leader elected yet; retry"}"#,
        )
            .into_response(),
        Mode::Lead(master) => {
            let mut req = inner.http.request(method, format!("{master}{path}"));
            for (k, v) in &headers {
                if k != header::HOST && k != header::CONTENT_LENGTH {
                    req = req.header(k, v);
                }
            }
            match req.body(body).send().await {
                Ok(r) => {
                    let status = r.status();
                    let ctype = r.headers().get(header::CONTENT_TYPE).cloned();
                    let bytes = r.bytes().await.unwrap_or_default();
                    let mut resp = (status, bytes).into_response();
                    if let Some(c) = ctype {
                        resp.headers_mut().insert(header::CONTENT_TYPE, c);
                    }
                    resp
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
    }
}
