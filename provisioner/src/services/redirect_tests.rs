//! How [`MarathonClient`] follows a follower's `307`: re-sent with the token to the master it
//! names when that is a master of the state, refused (and nothing sent) otherwise. The masters
//! here are one-shot HTTP listeners on 127.0.0.1 that answer as a follower (307) or as the
//! leader would, and record what they were sent.

use std::time::Duration;

use dccore_api::tls::Tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{MarathonClient, ServiceApiError};

/// A listener that answers its first request with `response` and hands back that request.
async fn one_shot(response: String) -> (String, tokio::task::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", l.local_addr().expect("an address"));
    let served = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("a connection");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(response.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&got).to_string()
    });
    (url, served)
}

fn client(masters: &[&str]) -> MarathonClient {
    let http = Tls::default()
        .http_client()
        .expect("a client")
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    MarathonClient::with_http(http, masters, "s3cret")
}

fn redirect_to(location: &str) -> String {
    format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn a_redirect_to_a_master_of_the_state_is_followed_with_the_token() {
    let body = r#"{"apps": []}"#;
    let (leader, leader_got) = one_shot(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let (follower, follower_got) = one_shot(redirect_to(&format!("{leader}/v2/apps"))).await;
    let c = client(&[&follower, &leader]);
    let apps = tokio::time::timeout(Duration::from_secs(10), c.list_apps())
        .await
        .expect("within 10 s")
        .expect("the leader's answer");
    assert!(apps.is_empty());
    for got in [follower_got, leader_got] {
        let req = got.await.expect("served").to_ascii_lowercase();
        assert!(req.starts_with("get /v2/apps "), "{req}");
        assert!(req.contains("authorization: bearer s3cret"), "{req}");
    }
}

#[tokio::test]
async fn a_redirect_elsewhere_is_refused_and_the_token_stays() {
    // 127.0.0.1:9 is no master of the state: never contacted (the refusal comes first).
    let (follower, follower_got) = one_shot(redirect_to("http://127.0.0.1:9/v2/apps")).await;
    let c = client(&[&follower]);
    let e = tokio::time::timeout(Duration::from_secs(10), c.list_apps())
        .await
        .expect("within 10 s")
        .expect_err("not followed");
    assert!(matches!(e, ServiceApiError::Redirect { .. }), "{e:?}");
    assert!(e.to_string().contains("not one of the masters"), "{e}");
    follower_got.await.expect("served");
}
