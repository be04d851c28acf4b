//! The server side of dccore's TLS: serving HTTPS (master, agent) and who a client is by its
//! verified certificate. The TLS material, the rustls configurations and every client set-up
//! live in [`dccore_api::tls`] and are re-exported here.
//!
//! ```text
//! Tls::server_config (dccore_api) ─▶ serve(listener, config) ── TlsListener (handshakes beside
//!        the accept loop) ─▶ axum ─▶ every request carries the connection's verified PeerCert
//! ```
//!
//! Who is who is read from the verified certificate's SAN URIs (issued by dcform, one per node):
//!
//! | SAN URI | [`PeerCert`] | what it opens |
//! |---|---|---|
//! | `urn:dcform:agent:NODE` | [`PeerCert::Agent`] | the master's agent routes (like an agent token) |
//! | `urn:dcform:master:NODE` | [`PeerCert::Master`] | launch and kill on an agent (like the per-run secret) |

pub use dccore_api::tls::{Ca, CertKey, Tls, TlsError, TlsFiles, install_default_provider};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::connect_info::Connected;
use axum::http::request::Parts;
use axum::serve::IncomingStream;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// SAN URI prefix of an agent's certificate: `urn:dcform:agent:NODE`.
pub const AGENT_URI_PREFIX: &str = "urn:dcform:agent:";
/// SAN URI prefix of a master's certificate: `urn:dcform:master:NODE`.
pub const MASTER_URI_PREFIX: &str = "urn:dcform:master:";

/// A client that opened a connection but has not finished its handshake by then is dropped, so
/// that idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who the client of a connection is by its certificate (verified against the CA during the
/// handshake). Handlers take it as an extractor; plain HTTP connections are [`PeerCert::None`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerCert {
    /// No client certificate (plain HTTP, a client without one, or a server without a CA).
    #[default]
    None,
    /// `urn:dcform:agent:NODE`.
    Agent {
        /// The node named in the certificate.
        node: String,
    },
    /// `urn:dcform:master:NODE`.
    Master {
        /// The node named in the certificate.
        node: String,
    },
    /// A certificate of the CA that names no role (or more than one): no rights.
    Other,
}

impl PeerCert {
    /// Reads the role from the SAN URIs of the first (end-entity) certificate of a verified
    /// chain.
    pub fn from_verified_chain(chain: Option<&[CertificateDer<'_>]>) -> PeerCert {
        let Some(cert) = chain.and_then(|c| c.first()) else {
            return PeerCert::None;
        };
        let mut roles = san_uris(cert.as_ref())
            .into_iter()
            .filter_map(|u| {
                if let Some(n) = u.strip_prefix(AGENT_URI_PREFIX) {
                    Some(PeerCert::Agent { node: n.into() })
                } else {
                    u.strip_prefix(MASTER_URI_PREFIX)
                        .map(|n| PeerCert::Master { node: n.into() })
                }
            })
            .filter(|r| !matches!(r, PeerCert::Agent { node } | PeerCert::Master { node } if node.is_empty()));
        match (roles.next(), roles.next()) {
            (Some(role), None) => role,
            // Two roles in one certificate is a mistake in issuing: it gets neither.
            _ => PeerCert::Other,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerCert {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ConnectInfo<PeerCert>>()
            .map(|c| c.0.clone())
            .unwrap_or_default())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerCert {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, conn) = stream.io().get_ref();
        PeerCert::from_verified_chain(conn.peer_certificates())
    }
}

/// The URIs in a DER certificate's subjectAltName extension. A minimal DER walk (the
/// certificate was verified by webpki already; anything unexpected yields no URIs).
fn san_uris(der: &[u8]) -> Vec<String> {
    san_uris_inner(der).unwrap_or_default()
}

/// One DER TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The TLVs of a constructed value's contents.
fn items(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = tlv(input)?;
        input = rest;
        Some((tag, value))
    })
}

const SEQUENCE: u8 = 0x30;
/// `[3] EXPLICIT Extensions` in TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `[6] IMPLICIT IA5String` (uniformResourceIdentifier) in GeneralName.
const URI: u8 = 0x86;
/// OID 2.5.29.17, subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

fn san_uris_inner(der: &[u8]) -> Option<Vec<String>> {
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let (_, exts) = items(tbs).find(|(t, _)| *t == EXTENSIONS)?;
    let (SEQUENCE, exts, _) = tlv(exts)? else {
        return None;
    };
    for (tag, ext) in items(exts) {
        if tag != SEQUENCE {
            continue;
        }
        let mut fields = items(ext);
        let Some((0x06, oid)) = fields.next() else {
            continue;
        };
        if oid != SAN_OID {
            continue;
        }
        // critical BOOLEAN DEFAULT FALSE, then the OCTET STRING holding GeneralNames.
        let (_, value) = fields.find(|(t, _)| *t == 0x04)?;
        let (SEQUENCE, names, _) = tlv(value)? else {
            return None;
        };
        return Some(
            items(names)
                .filter(|(t, _)| *t == URI)
                .filter_map(|(_, v)| std::str::from_utf8(v).ok().map(str::to_string))
                .collect(),
        );
    }
    Some(Vec::new())
}

/// An axum [`Listener`](axum::serve::Listener) that hands out finished TLS connections. The TCP
/// accept loop and the handshakes run in a task the listener owns (aborted with it), so a slow
/// or silent client never holds up the next accept.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local, task })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    // Owned here: aborting this task (the listener was dropped) aborts every handshake.
    let mut handshakes = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    // TLS writes records as they come; Nagle would hold small answers back
                    // until the client's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    let (acceptor, ready) = (acceptor.clone(), ready.clone());
                    handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let _ = ready.send((tls, addr)).await;
                            }
                            // A client from another CA, a plain HTTP client, a port scanner:
                            // the client sees the alert; logging each at info would let anyone
                            // fill the log.
                            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // As axum does: out of file descriptors and the like pass; wait a little
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            _ = ready.closed() => return,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ends only when this listener is dropped; until then nothing
            // comes, as with a listener nobody connects to.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` on `listener` until `shutdown`: HTTPS with `tls` (handlers see the client's
/// [`PeerCert`]), else plain HTTP exactly as `axum::serve`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
        Some(cfg) => {
            axum::serve(
                TlsListener::new(listener, cfg)?,
                router.into_make_service_with_connect_info::<PeerCert>(),
            )
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        }
    }
}

/// The warning a node logs when it serves plain HTTP.
pub const PLAIN_HTTP_WARNING: &str = "serving plain HTTP: tokens and secrets cross the network in clear text; serve HTTPS with --tls-cert FILE --tls-key FILE (and --ca-file FILE to verify peers), or tls_cert_file/tls_key_file/ca_file in the config file";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_in_long_form_are_read_and_truncated_input_is_refused() {
        assert_eq!(
            tlv(&[0x04, 0x02, 1, 2, 9]),
            Some((0x04, &[1u8, 2][..], &[9u8][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(tlv(&long).map(|(_, v, _)| v.len()), Some(0x80));
        assert_eq!(tlv(&[0x04, 0x05, 1]), None);
        assert_eq!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]), None);
        assert!(san_uris(b"not a certificate").is_empty());
    }

    fn cert_with(uris: &[&str]) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        for u in uris {
            p.subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_role_comes_from_the_one_dcform_san_uri_of_the_certificate() {
        let role = |uris: &[&str]| PeerCert::from_verified_chain(Some(&[cert_with(uris)]));
        assert_eq!(
            role(&["urn:dcform:agent:agents-2"]),
            PeerCert::Agent {
                node: "agents-2".into()
            }
        );
        assert_eq!(
            role(&["https://example.org/", "urn:dcform:master:m0"]),
            PeerCert::Master { node: "m0".into() }
        );
        assert_eq!(role(&[]), PeerCert::Other, "no role");
        assert_eq!(role(&["urn:dcform:agent:"]), PeerCert::Other, "no node");
        assert_eq!(
            role(&["urn:dcform:agent:a", "urn:dcform:master:a"]),
            PeerCert::Other,
            "two roles in one certificate give neither"
        );
        assert_eq!(PeerCert::from_verified_chain(None), PeerCert::None);
    }
}
