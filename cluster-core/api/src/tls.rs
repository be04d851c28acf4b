//! A node's TLS material and the rustls configurations built from it, with the *ring* provider:
//! what every client of dccore needs (agent → master, master → agent, `probe`/`drain`/`reactivate`,
//! dcform), and the server configuration dccore's servers accept connections with.
//!
//! ```text
//! --tls-cert/--tls-key/--ca-file ─▶ TlsFiles::load / Tls::load ─▶ Tls { own: CertKey?, ca: Ca? }
//!   client: Tls::http_client ─▶ reqwest: trusts only the CA (or the system roots without one)
//!           and presents the node's own certificate as client certificate
//!   server: Tls::server_config ─▶ dccore's `tls::serve` (the accept loop, who a peer is)
//! ```
//!
//! A server asks for a client certificate only when it has a CA (`--ca-file`) to check it
//! against, and never requires one: operators with curl and frameworks such as pymesos have
//! none and authenticate with their Authorization header as before. A certificate that does not
//! verify against the CA fails the handshake. The server configuration is built here, next to
//! the client's, because both come from the same files and must agree (ALPN `http/1.1`, one
//! provider); accepting connections and reading who a peer is stay in dccore.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// PEM files larger than this are refused: a certificate chain or a CA bundle is a few KiB to a
/// few hundred KiB (the Mozilla bundle is ~220 KiB).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// Errors loading TLS material or setting TLS up. The file variants name the flag, the file and
/// what is wrong with it (they are usage errors: exit 1).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_key_without_its_certificate_and_a_file_without_pem_are_refused_with_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = write(dir, "cert.pem", &cert.pem());
        let key_path = write(dir, "key.pem", &key.serialize_pem());
        let junk = write(dir, "junk.pem", "not pem");
        let e = Tls::load(None, Some(&key_path), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("--tls-cert and --tls-key go together"),
            "{e}"
        );
        let e = Tls::load(None, None, Some(&junk)).unwrap_err();
        assert!(e.to_string().starts_with("--ca-file"), "{e}");
        let tls = Tls::load(Some(&cert_path), Some(&key_path), Some(&cert_path)).unwrap();
        assert_eq!(tls.scheme(), "https");
        assert!(tls.server_config().unwrap().is_some());
        assert!(tls.client_config().is_ok());
    }
}
