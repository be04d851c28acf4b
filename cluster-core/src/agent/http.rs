//! The agent's HTTP server: launch and kill from the master, sandbox files for `dcform task logs`.
//!
//! `GET /files/read?path=FRAMEWORK/TASK/stdout&offset=0&length=N` answers Mesos' `{"data","offset"}`;
//! `GET /files/download?path=...` answers the raw bytes. Paths are relative to the sandbox root
//! and cannot leave it.
//!
//! Over TLS with a CA (`--ca-file`), a verified master certificate (`urn:dcform:master:NODE`) is
//! the master's proof instead; without TLS the per-run secret is the only one.
//!
//! Launch and kill need the secret this agent run sent the master when it registered: that is
//! least privilege, because no other credential (not the agents' shared token, which every node
//! holds, nor the operator token, which the agent may not have) can start a process here. The
//! files API also takes the agent's own credential (`--token-file`), with which dcform reads
//! task output. `/health` is open.

// Early-return helpers hand back a finished Response; its size is irrelevant here.
#![allow(clippy::result_large_err)]

use super::tasks::Agent;
use crate::auth::ct_eq;
use crate::proto::internal::{KillTask, LaunchTasks};
use crate::tls::PeerCert;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest chunk `/files/read` returns at once.
const MAX_READ: u64 = 1 << 20;

pub(super) fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/internal/v1/launch", post(launch))
        .route("/internal/v1/kill", post(kill))
        .route("/files/read", get(read))
        .route("/files/download", get(download))
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"healthy": true})) }),
        )
        .with_state(agent)
}

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The master only (its per-run secret).
    Master,
    /// The master, or a holder of the agent's own credential.
    MasterOrOwnToken,
}

fn authorized(
    agent: &Agent,
    peer: &PeerCert,
    headers: &HeaderMap,
    caller: Caller,
) -> Result<(), Response> {
    // A master certificate is only ever seen verified: the agent asks for client certificates
    // only when it serves TLS with a CA, and the handshake fails for any other CA's.
    if let PeerCert::Master { node } = peer {
        tracing::debug!(master = %node, "call authenticated by the master's certificate");
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().as_bytes());
    let ok = bearer.is_some_and(|t| {
        ct_eq(t, agent.callback_token.as_bytes())
            | (caller == Caller::MasterOrOwnToken && ct_eq(t, agent.cfg.token.as_bytes()))
    });
    if ok {
        return Ok(());
    }
    let msg = match caller {
        Caller::Master => {
            "authentication required: only the master this agent registered with (its per-run secret, or over TLS a master certificate of the cluster CA) may call this route"
        }
        Caller::MasterOrOwnToken => {
            "authentication required: Authorization: Bearer with the agent's token"
        }
    };
    Err((StatusCode::UNAUTHORIZED, msg).into_response())
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

/// What the master's routes do first: the caller must be the master, the body one `what`
/// message of type `M`. The answer to send otherwise.
fn from_master<M: serde::de::DeserializeOwned>(
    agent: &Agent,
    peer: &PeerCert,
    headers: &HeaderMap,
    body: &Bytes,
    what: &str,
) -> Result<M, Response> {
    authorized(agent, peer, headers, Caller::Master)?;
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid {what} message: {e}")))
}

async fn launch(
    State(agent): State<Arc<Agent>>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match from_master::<LaunchTasks>(&agent, &peer, &headers, &body, "launch") {
        Ok(m) => {
            // Accepted, not yet started: a large batch takes longer than the master waits for
            // an answer (its timeout would make it report running tasks as dropped).
            agent.launch_all(m.framework_id, m.tasks);
            StatusCode::ACCEPTED.into_response()
        }
        Err(r) => r,
    }
}

async fn kill(
    State(agent): State<Arc<Agent>>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match from_master::<KillTask>(&agent, &peer, &headers, &body, "kill") {
        Ok(m) => {
            let cap = m
                .max_grace_secs
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(1e9)));
            agent.kill(&m.framework_id.value, &m.task_id.value, cap);
            StatusCode::ACCEPTED.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct FileQuery {
    path: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    length: Option<u64>,
}

/// Resolves a client path inside `root`, refusing anything that could leave it.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "path {path:?} must stay inside the sandbox root (no '..')"
                ));
            }
        }
    }
    if out == root {
        return Err("path must name a file, e.g. FRAMEWORK_ID/TASK_ID/stdout".into());
    }
    Ok(out)
}

async fn read(
    State(agent): State<Arc<Agent>>,
    peer: PeerCert,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Response {
    let offset = q.offset.unwrap_or(0);
    let length = q.length.unwrap_or(MAX_READ).min(MAX_READ);
    let result = sandbox_file(&agent, &peer, &headers, &q, move |mut f| {
        let size = f.metadata()?.len();
        f.seek(SeekFrom::Start(offset.min(size)))?;
        let mut buf = Vec::new();
        f.take(length).read_to_end(&mut buf)?;
        Ok(buf)
    })
    .await;
    match result {
        Ok(data) => axum::Json(serde_json::json!({
            "data": String::from_utf8_lossy(&data),
            "offset": offset,
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn download(
    State(agent): State<Arc<Agent>>,
    peer: PeerCert,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Response {
    let result = sandbox_file(&agent, &peer, &headers, &q, |mut f| {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    })
    .await;
    match result {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(r) => r,
    }
}

/// What `/files/read` and `/files/download` share: checks the caller, resolves `q.path` inside
/// the sandboxes, opens it (see [`open_inside`]) and runs `read` on it off the async threads.
/// Failures are the answer to send: 400 for a bad path, 404, 403, 500.
async fn sandbox_file<T: Send + 'static>(
    agent: &Agent,
    peer: &PeerCert,
    headers: &HeaderMap,
    q: &FileQuery,
    read: impl FnOnce(std::fs::File) -> std::io::Result<T> + Send + 'static,
) -> Result<T, Response> {
    authorized(agent, peer, headers, Caller::MasterOrOwnToken)?;
    let root = agent.sandbox_root();
    let path = resolve(&root, &q.path).map_err(bad)?;
    let result = tokio::task::spawn_blocking(move || read(open_inside(&root, &path)?)).await;
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err((StatusCode::NOT_FOUND, format!("no file {}", q.path)).into_response())
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err((StatusCode::FORBIDDEN, format!("{}: {e}", q.path)).into_response())
        }
        Ok(Err(e)) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {}: {e}", q.path),
        )
            .into_response()),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "file reader failed").into_response()),
    }
}

/// Opens `path` for reading, refusing a file outside `root`. Sandboxes belong to task users, who
/// may put links anywhere in them, and the agent reads as root: so the check is on the file that
/// was actually opened (its `/proc/self/fd` link), which no later swap of a link can change.
fn open_inside(root: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    let root = std::fs::canonicalize(root)?;
    if !real.starts_with(&root) || !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a file inside the sandboxes (a link leads out of them)",
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_cannot_leave_the_sandbox_root() {
        let root = Path::new("/w/sandboxes");
        assert_eq!(
            resolve(root, "f/t/stdout").unwrap(),
            Path::new("/w/sandboxes/f/t/stdout")
        );
        assert_eq!(
            resolve(root, "/f/t/stdout").unwrap(),
            Path::new("/w/sandboxes/f/t/stdout")
        );
        assert!(resolve(root, "../etc/passwd").is_err());
        assert!(resolve(root, "f/../../x").is_err());
        assert!(resolve(root, "").is_err());
    }

    #[test]
    fn links_out_of_the_sandboxes_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sandboxes");
        std::fs::create_dir_all(root.join("f/t")).unwrap();
        std::fs::write(root.join("f/t/stdout"), "out").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("f/t/leak")).unwrap();
        std::os::unix::fs::symlink("stdout", root.join("f/t/inside")).unwrap();
        assert!(open_inside(&root, &root.join("f/t/stdout")).is_ok());
        assert!(open_inside(&root, &root.join("f/t/inside")).is_ok());
        let e = open_inside(&root, &root.join("f/t/leak")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        let e = open_inside(&root, &root.join("f/t")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "a folder");
    }
}
