//! `POST /api/v1/scheduler`: the Mesos v1 scheduler API in its JSON encoding.
//!
//! SUBSCRIBE answers `200` with a chunked RecordIO stream of events and a `Mesos-Stream-Id`
//! header; every other call must carry that header and is answered `202 Accepted`.

use super::{ApiState, Route, ask, authenticate, error, parse};
use crate::auth::ANONYMOUS_PRINCIPAL;
use crate::master::{MasterCommand, MasterHandle, STREAM_BUFFER, Subscription};
use crate::proto::scheduler::{Call, Event, FrameworkInfo};
use crate::tls::PeerCert;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes buffered between the stream writer and the HTTP connection.
const STREAM_PIPE: usize = 64 * 1024;

/// Handles one scheduler call.
pub async fn handle(
    State(h): State<ApiState>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Mesos' `--authenticate_frameworks=false`: a call without credentials comes from an
    // unauthenticated framework. It acts as the anonymous principal: restricted like any other
    // principal (never with the operator token's rights, which "no principal" means to the
    // master), seeing only anonymous frameworks. Credentials that are sent are still checked
    // (an agent certificate with no header is still refused here).
    let principal: Option<String> = if !h.authenticate_frameworks
        && !headers.contains_key(header::AUTHORIZATION)
        && matches!(peer, PeerCert::None)
    {
        Some(ANONYMOUS_PRINCIPAL.to_string())
    } else {
        match authenticate(&h, &peer, &headers, Route::Client) {
            Ok(i) => i.principal().map(str::to_string),
            Err(r) => return r,
        }
    };
    let call: Call = match parse(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if call.kind != "SUBSCRIBE" {
        let stream_id = headers
            .get("mesos-stream-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return match ask(&h, |reply| MasterCommand::Call {
            call,
            principal: principal.clone(),
            stream_id,
            reply,
        })
        .await
        {
            Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(r) => r,
        };
    }
    let Some(sub) = call.subscribe else {
        return error(
            StatusCode::BAD_REQUEST,
            "SUBSCRIBE needs subscribe.framework_info",
        );
    };
    let info: FrameworkInfo = match serde_json::from_value(sub.framework_info.clone()) {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid subscribe.framework_info: {e}"),
            );
        }
    };
    let framework_id = call.framework_id.map(|i| i.value);
    let sub = match ask(&h, |reply| MasterCommand::Subscribe {
        info_raw: sub.framework_info,
        info,
        framework_id,
        principal,
        reply,
    })
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return e.into_response(),
        Err(r) => return r,
    };
    let (writer, reader) = tokio::io::duplex(STREAM_PIPE);
    let closed = CancellationToken::new();
    let reader = BodyReader {
        inner: reader,
        _closed: closed.clone().drop_guard(),
    };
    let Subscription {
        framework_id,
        stream_id,
        events,
        overflow,
    } = sub;
    let sid = HeaderValue::from_str(&stream_id).expect("invariant: a uuid is a valid header value");
    h.streams.spawn(write_events(
        writer,
        events,
        h.framework_heartbeat,
        h.shutdown.clone(),
        closed,
        overflow,
        h.master.clone(),
        framework_id,
        stream_id,
    ));
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(reader)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert("mesos-stream-id", sid);
    resp
}

/// The response body's end of the pipe. HTTP drops the body as soon as the client's connection
/// closes; dropping this cancels `closed`, so the stream writer notices at once instead of at its
/// next failed write (a framework that vanished must not keep its offers until then).
struct BodyReader {
    inner: tokio::io::DuplexStream,
    _closed: tokio_util::sync::DropGuard,
}

impl tokio::io::AsyncRead for BodyReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// Writes events (and HEARTBEATs when idle) as RecordIO until the master drops the stream, the
/// client goes away (`closed`, or a failed write), or the master shuts down; then tells the
/// master the stream is closed.
#[allow(clippy::too_many_arguments)] // one owned value per concern of the writer task
async fn write_events(
    mut w: tokio::io::DuplexStream,
    mut events: mpsc::Receiver<Event>,
    heartbeat: Duration,
    shutdown: CancellationToken,
    closed: CancellationToken,
    overflow: CancellationToken,
    master: MasterHandle,
    framework_id: String,
    stream_id: String,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last = false;
    while !last {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = closed.cancelled() => break,
            // Events were not queued: say so, as the stream's last event.
            _ = overflow.cancelled() => {
                last = true;
                Event::Error(format!(
                    "the framework fell {STREAM_BUFFER} events behind and events were not delivered: re-subscribe with its framework id and reconcile"
                ))
            }
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = tick.tick() => Event::Heartbeat,
        };
        let record = event.to_record();
        let write = async {
            w.write_all(&record).await?;
            w.flush().await
        };
        // A client that stops reading blocks the write: its going away must still end it.
        let ok = tokio::select! {
            r = write => r.is_ok(),
            _ = closed.cancelled() => false,
            _ = shutdown.cancelled() => false,
        };
        if !ok {
            break;
        }
    }
    let _ = w.shutdown().await;
    let _ = master
        .tell(MasterCommand::StreamClosed {
            framework_id,
            stream_id,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn an_overflowed_stream_ends_with_an_error_event_and_tells_the_master() {
        let (w, mut r) = tokio::io::duplex(STREAM_PIPE);
        let (tx, events) = mpsc::channel(4);
        tx.try_send(Event::Heartbeat).unwrap();
        let overflow = CancellationToken::new();
        overflow.cancel();
        let (master, mut commands) = mpsc::channel(4);
        let writer = write_events(
            w,
            events,
            Duration::from_secs(600),
            CancellationToken::new(),
            CancellationToken::new(),
            overflow,
            MasterHandle::new(master),
            "f".into(),
            "s".into(),
        );
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the writer ends by itself");
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        let records = crate::proto::scheduler::take_records(&mut out);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["type"], "ERROR");
        let msg = records[0]["error"]["message"].as_str().unwrap();
        assert!(msg.contains("re-subscribe"), "{msg}");
        assert!(matches!(
            commands.try_recv(),
            Ok(MasterCommand::StreamClosed { .. })
        ));
    }
}
