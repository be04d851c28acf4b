//! TLS for dccore's servers (master, agent) and for its clients (agent → master, master → agent,
//! `probe`/`drain`/`reactivate`), with rustls and the *ring* provider.
//!
//! ```text
//! --tls-cert/--tls-key/--ca-file ─▶ Tls::load ─▶ Tls { own: CertKey?, ca: roots? }
//!   server: serve(listener, Tls::server_config) ── TlsListener (handshakes beside the accept
//!           loop) ─▶ axum ─▶ every request carries the connection's verified PeerCert
//!   client: Tls::http_client ─▶ reqwest: trusts only the CA (or the system roots without
//!           one) and presents the node's own certificate as client certificate
//! ```
//!
//! Who is who is read from the verified certificate's SAN URIs (issued by dcform, one per node):
//!
//! | SAN URI | [`PeerCert`] | what it opens |
//! |---|---|---|
//! | `urn:dcform:agent:NODE` | [`PeerCert::Agent`] | the master's agent routes (like an agent token) |
//! | `urn:dcform:master:NODE` | [`PeerCert::Master`] | launch and kill on an agent (like the per-run secret) |
//!
//! A server asks for a client certificate only when it has a CA (`--ca-file`) to check it
//! against, and never requires one: operators with curl and frameworks such as pymesos have
//! none and authenticate with their Authorization header as before. A certificate that does not
//! verify against the CA fails the handshake.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::connect_info::Connected;
use axum::http::request::Parts;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// PEM files larger than this are refused: a certificate chain or a CA bundle is a few KiB to a
/// few hundred KiB (the Mozilla bundle is ~220 KiB).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// A client that opened a connection but has not finished its handshake by then is dropped, so
/// that idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors loading TLS material or setting TLS up. The file variants name the flag, the file and
/// what is wrong with it (they are usage errors: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{flag} {path}: cannot read it")]
    Read {
        /// The flag (or config key) that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what the flag needs (not a regular file, too large, no PEM block of the
    /// right kind, a certificate the CA store refuses...).
    #[error("{flag} {path}: {problem}")]
    BadFile {
        /// The flag (or config key) that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, and what would be right.
        problem: String,
    },
    /// The private key is not the key of the certificate.
    #[error(
        "--tls-key {key} does not belong to the certificate in --tls-cert {cert} (the first certificate of the chain must be the node's own)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A key given without its certificate, or the other way round.
    #[error("--tls-cert and --tls-key go together: {given} was given without {missing}")]
    Incomplete {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// rustls refused the configuration (e.g. a key type it cannot sign with).
    #[error("TLS configuration refused ({what})")]
    Config {
        /// What was being set up.
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built from the CA file.
    #[error("--ca-file {path}: cannot verify client certificates with it")]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A certificate chain and its private key (PEM files `--tls-cert`, `--tls-key`).
pub struct CertKey {
    /// The node's certificate first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Clone for CertKey {
    fn clone(&self) -> Self {
        CertKey {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
        }
    }
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CertKey")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// The CA bundle a node trusts (`--ca-file`).
#[derive(Clone)]
pub struct Ca {
    roots: Arc<RootCertStore>,
    path: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("path", &self.path)
            .field("certificates", &self.roots.len())
            .finish()
    }
}

/// Reads a small regular file. FIFOs, devices and folders are refused before they are opened
/// for reading (a FIFO would block start-up forever).
fn read_small(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        flag,
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let bad = |problem: String| TlsError::BadFile {
        flag,
        path: path.into(),
        problem,
    };
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(bad(format!(
            "{} bytes: too large for PEM certificates or a key (at most {MAX_PEM_BYTES})",
            meta.len()
        )));
    }
    std::fs::read(path).map_err(read)
}

/// Reads every `CERTIFICATE` block of a PEM file (at least one).
fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_small(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadFile {
            flag,
            path: path.into(),
            problem: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadFile {
            flag,
            path: path.into(),
            problem: "holds no PEM \"CERTIFICATE\" block".into(),
        });
    }
    Ok(certs)
}

impl CertKey {
    /// Loads `--tls-cert` (PEM chain, own certificate first) and `--tls-key` (PEM private key)
    /// and checks that the key belongs to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<CertKey, TlsError> {
        let chain = read_certs("--tls-cert", cert)?;
        let pem = read_small("--tls-key", key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::BadFile {
            flag: "--tls-key",
            path: key.into(),
            problem: match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "holds no PEM private key (\"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")".into()
                }
                e => format!("not a valid PEM private key: {e}"),
            },
        })?;
        let ck = CertKey {
            chain,
            key: key_der,
            cert_path: cert.into(),
            key_path: key.into(),
        };
        // Building a server config checks the key type and that it matches the certificate, so
        // a wrong pair is reported at start and not at the first handshake.
        ck.check()?;
        Ok(ck)
    }

    fn check(&self) -> Result<(), TlsError> {
        let signer = provider()
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| TlsError::BadFile {
                flag: "--tls-key",
                path: self.key_path.clone(),
                problem: format!("unusable private key: {e}"),
            })?;
        let certified = rustls::sign::CertifiedKey::new(self.chain.clone(), signer);
        match certified.keys_match() {
            Ok(()) => Ok(()),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(TlsError::KeyMismatch {
                    cert: self.cert_path.clone(),
                    key: self.key_path.clone(),
                })
            }
            // The public key could not be compared (an unusual algorithm): the handshake will tell.
            Err(_) => Ok(()),
        }
    }
}

impl Ca {
    /// Loads a PEM CA bundle (`--ca-file`): every certificate in it becomes a trust anchor.
    pub fn load(path: &Path) -> Result<Ca, TlsError> {
        let certs = read_certs("--ca-file", path)?;
        let mut roots = RootCertStore::empty();
        for (i, c) in certs.into_iter().enumerate() {
            roots.add(c).map_err(|e| TlsError::BadFile {
                flag: "--ca-file",
                path: path.into(),
                problem: format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            })?;
        }
        Ok(Ca {
            roots: Arc::new(roots),
            path: path.into(),
        })
    }
}

/// The TLS files a node is given (flags, or the config file's `tls_cert_file`, `tls_key_file`,
/// `ca_file`); each `None` when not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the node's own certificate first.
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key: Option<PathBuf>,
    /// PEM CA bundle.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Each file named here, else the one named in `fallback` (flags win over the config file).
    pub fn or(self, fallback: &TlsFiles) -> TlsFiles {
        TlsFiles {
            cert: self.cert.or_else(|| fallback.cert.clone()),
            key: self.key.or_else(|| fallback.key.clone()),
            ca: self.ca.or_else(|| fallback.ca.clone()),
        }
    }

    /// Loads and checks the files.
    pub fn load(&self) -> Result<Tls, TlsError> {
        Tls::load(
            self.cert.as_deref(),
            self.key.as_deref(),
            self.ca.as_deref(),
        )
    }
}

/// The process's one crypto provider: *ring* (aws-lc-rs would need cmake and a larger binary).
/// Every config is built with it explicitly, so dccore never depends on a process-wide default.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs *ring* as the process-wide rustls provider, for reqwest clients built without
/// [`Tls::http_client`] (tests, benchmarks). Does nothing when one is installed already.
pub fn install_default_provider() {
    // Err only means a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A node's TLS material: its own certificate (to serve HTTPS and to present as client
/// certificate) and the CA it trusts. [`Tls::default`] is plain HTTP with system roots for any
/// `https://` URL.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// `--tls-cert` and `--tls-key`: serve HTTPS, and present them when calling other nodes.
    pub own: Option<CertKey>,
    /// `--ca-file`: the only CA trusted for outgoing calls, and the one client certificates
    /// are checked against.
    pub ca: Option<Ca>,
}

impl Tls {
    /// Loads what the flags name (each `None` when not given): `cert` and `key` go together.
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Tls, TlsError> {
        let own = match (cert, key) {
            (Some(c), Some(k)) => Some(CertKey::load(c, k)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsError::Incomplete {
                    given: "--tls-cert",
                    missing: "--tls-key",
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete {
                    given: "--tls-key",
                    missing: "--tls-cert",
                });
            }
        };
        let ca = ca.map(Ca::load).transpose()?;
        Ok(Tls { own, ca })
    }

    /// Whether this node serves HTTPS.
    pub fn serves_https(&self) -> bool {
        self.own.is_some()
    }

    /// `https` or `http`: the scheme of this node's URLs.
    pub fn scheme(&self) -> &'static str {
        if self.serves_https() { "https" } else { "http" }
    }

    /// The server side: `None` for plain HTTP. With a CA, clients are asked (not required) for
    /// a certificate, which must then verify against that CA.
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let Some(own) = &self.own else {
            return Ok(None);
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: "server protocol versions",
                source,
            })?;
        let builder = match &self.ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(ca.roots.clone(), provider())
                        // Operators (curl) and frameworks (pymesos) have no certificate.
                        .allow_unauthenticated()
                        .build()
                        .map_err(|source| TlsError::Verifier {
                            path: ca.path.clone(),
                            source,
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(own.chain.clone(), own.key.clone_key())
            .map_err(|source| TlsError::Config {
                what: "server certificate",
                source,
            })?;
        // The servers speak HTTP/1.1 only (axum is built with http1).
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(cfg)))
    }

    /// The client side: trusts only the CA when there is one, else the system's roots, and
    /// presents this node's certificate when it has one.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let roots = match &self.ca {
            Some(ca) => ca.roots.clone(),
            None => Arc::new(system_roots()),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: "client protocol versions",
                source,
            })?
            .with_root_certificates(roots);
        let mut cfg = match &self.own {
            Some(own) => builder
                .with_client_auth_cert(own.chain.clone(), own.key.clone_key())
                .map_err(|source| TlsError::Config {
                    what: "client certificate",
                    source,
                })?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// A reqwest client builder with this TLS set-up (for `http://` URLs it changes nothing).
    /// HTTP/1.1 with pooled keep-alive connections, as the servers speak.
    pub fn http_client(&self) -> Result<reqwest::ClientBuilder, TlsError> {
        Ok(reqwest::Client::builder().tls_backend_preconfigured(self.client_config()?))
    }
}

/// The system's trusted roots (`/etc/ssl/certs` and the like, via rustls-native-certs): for
/// `https://` URLs when no `--ca-file` is given. Unreadable entries are skipped; an empty store
/// makes every https call fail with an unknown-issuer error, which names the problem.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "cannot load a system root certificate");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates");
    roots
}

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
