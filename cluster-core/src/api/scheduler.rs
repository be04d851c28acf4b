//! `POST /api/v1/scheduler`: the Mesos v1 scheduler API in its JSON encoding.
//!
//! SUBSCRIBE answers `200` with a chunked RecordIO stream of events and a `Mesos-Stream-Id`
//! header; every other call must carry that header and is answered `202 Accepted`.

use super::{Route, ask, authenticate, error, parse};
use crate::master::{MasterCommand, MasterHandle, Subscription};
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
    State(h): State<MasterHandle>,
    peer: PeerCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let identity = match authenticate(&h, &peer, &headers, Route::Client) {
        Ok(i) => i,
        Err(r) => return r,
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
            principal: identity.principal().map(str::to_string),
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
    let principal = identity.principal().map(str::to_string);
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
    let Subscription {
        framework_id,
        stream_id,
        events,
    } = sub;
    let sid = HeaderValue::from_str(&stream_id).expect("invariant: a uuid is a valid header value");
    h.streams.spawn(write_events(
        writer,
        events,
        h.framework_heartbeat,
        h.shutdown.clone(),
        h.tx.clone(),
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

/// Writes events (and HEARTBEATs when idle) as RecordIO until the master drops the stream, the
/// client goes away, or the master shuts down; then tells the master the stream is closed.
async fn write_events(
    mut w: tokio::io::DuplexStream,
    mut events: mpsc::Receiver<Event>,
    heartbeat: Duration,
    shutdown: CancellationToken,
    master: mpsc::Sender<MasterCommand>,
    framework_id: String,
    stream_id: String,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = tick.tick() => Event::Heartbeat,
        };
        if w.write_all(&event.to_record()).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
    let _ = master
        .send(MasterCommand::StreamClosed {
            framework_id,
            stream_id,
        })
        .await;
}
