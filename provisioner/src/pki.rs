//! The cluster's certificate authority and the secrets dcform keeps beside the state.
//!
//! ```text
//! first apply ──ClusterSecrets::load_or_create(state dir)──▶ ca.pem, ca-key.pem, token (operator),
//!                                                            agent-token, principals/NAME.secret   (all 0600)
//! install / configure of a node ──ClusterCa::issue(node, role, addresses)──▶ node cert + key (uploaded, key 0600)
//! ```
//!
//! The CA is made once per cluster with `rcgen` and never leaves the controller; nodes get only
//! the CA certificate and their own certificate and key. A node certificate carries the node's
//! addresses as SANs (what clients connect to), both `serverAuth` and `clientAuth` (every node
//! is a server and a client), and exactly one SAN URI naming its role, which is how dccore tells
//! a master from an agent: `urn:dcform:master:NODE` or `urn:dcform:agent:NODE` (see
//! cluster-core/README.md, "TLS").

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::spec::Role;
use crate::state::write_private;

/// Errors making or loading the cluster's secrets.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{what} {}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Certificate generation failed.
    #[error("cannot make a certificate for {subject}")]
    Certificate {
        /// For whom.
        subject: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
}

/// File names inside the state folder.
pub const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
/// The operator token.
pub const OPERATOR_TOKEN_FILE: &str = "token";
/// The agents' credential (they call only the agent routes with it).
pub const AGENT_TOKEN_FILE: &str = "agent-token";
/// Folder of framework principals' secrets, one `NAME.secret` each.
pub const PRINCIPALS_DIR: &str = "principals";

/// The cluster CA.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// A node's certificate and private key, PEM.
#[derive(Clone)]
pub struct NodeCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (secret: uploaded 0600, never logged).
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert").finish_non_exhaustive()
    }
}

/// The CA's parameters. Rebuilt identically when the CA is loaded again: an issuer needs only
/// its subject, key usages and key (the certificate on disk is what nodes trust).
fn ca_params(cluster: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, format!("dcform cluster {cluster} CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "dcform");
    Ok(params)
}

impl ClusterCa {
    /// The CA of the cluster whose state folder is `dir`: loaded from `ca.pem`/`ca-key.pem`, or
    /// made now (both written 0600) if there is none.
    pub fn load_or_create(dir: &Path, cluster: &str) -> Result<ClusterCa, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_error = |source| PkiError::Certificate {
            subject: format!("the {cluster} CA"),
            source,
        };
        let params = ca_params(cluster).map_err(cert_error)?;
        if key_path.is_file() && cert_path.is_file() {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|e| PkiError::Io {
                    path: p.to_path_buf(),
                    what: "cannot read",
                    source: Box::new(e),
                })
            };
            let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| PkiError::Io {
                path: key_path.clone(),
                what: "not a PEM private key:",
                source: Box::new(e),
            })?;
            return Ok(ClusterCa {
                cert_pem: read(&cert_path)?,
                issuer: Issuer::new(params, key),
            });
        }
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.self_signed(&key).map_err(cert_error)?;
        let write = |p: &Path, bytes: &[u8]| {
            write_private(p, bytes).map_err(|e| PkiError::Io {
                path: p.to_path_buf(),
                what: "cannot write",
                source: Box::new(e),
            })
        };
        // The key first: a CA certificate without its key could never issue.
        write(&key_path, key.serialize_pem().as_bytes())?;
        write(&cert_path, cert.pem().as_bytes())?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM): what every node and client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `node` in `role`, valid for `addresses` (host names or IPs, with or
    /// without `:port`), plus `localhost`/`127.0.0.1` for calls made on the node itself.
    pub fn issue(
        &self,
        node: &str,
        role: Role,
        addresses: &[String],
    ) -> Result<NodeCert, PkiError> {
        let cert_error = |source| PkiError::Certificate {
            subject: node.to_string(),
            source,
        };
        let mut names: Vec<String> = addresses.iter().map(|a| host_of(a).to_string()).collect();
        names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
        names.sort();
        names.dedup();
        let mut params = CertificateParams::new(names).map_err(cert_error)?;
        let uri = role_uri(node, role);
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into().map_err(cert_error)?));
        params.distinguished_name.push(DnType::CommonName, node);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_error)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The SAN URI that names a node's role to dccore.
pub fn role_uri(node: &str, role: Role) -> String {
    match role {
        Role::Master => format!("urn:dcform:master:{node}"),
        Role::Agent | Role::PublicAgent => format!("urn:dcform:agent:{node}"),
    }
}

/// `host` of `host:port`, `[v6]:port` or a bare host.
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => address,
    }
}

/// A random secret: 256 bits, hex.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The masters' shared secret of a cluster (their Raft RPCs carry it), 0600 beside the state.
pub const REPLICA_SECRET_FILE: &str = "replica.secret";

/// 32 random bytes, hex: the masters' secret (four v4 uuids, 488 random bits, hashed to 256).
pub fn random_secret_32() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for _ in 0..4 {
        h.update(uuid::Uuid::new_v4().as_bytes());
    }
    hex::encode(h.finalize())
}

/// The masters' secret at `path`, made (0600, [`random_secret_32`]) if missing or empty.
pub fn load_or_create_replica_secret(path: &Path) -> Result<String, PkiError> {
    load_or_make(path, random_secret_32)
}

/// The secret in `dir/name`, made (0600) if missing or empty.
pub fn load_or_create_secret(path: &Path) -> Result<String, PkiError> {
    load_or_make(path, random_secret)
}

/// The secret at `path`, or one made by `make` and written there (0600) if missing or empty.
fn load_or_make(path: &Path, make: fn() -> String) -> Result<String, PkiError> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(t.to_string());
        }
    }
    let s = make();
    write_private(path, s.as_bytes()).map_err(|e| PkiError::Io {
        path: path.to_path_buf(),
        what: "cannot write",
        source: Box::new(e),
    })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_0600_and_issues_role_certificates_that_chain_to_it() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let d = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(d.path(), "demo").unwrap();
        let mode = |f: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY_FILE), 0o600);
        assert_eq!(mode(CA_CERT_FILE), 0o600);
        let again = ClusterCa::load_or_create(d.path(), "demo").unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem(), "loaded, not made anew");
        // A certificate issued by the reloaded CA verifies against the CA certificate on disk.
        let node = again
            .issue(
                "agents-1",
                Role::Agent,
                &["10.0.0.3".into(), "127.0.0.1:4501".into()],
            )
            .unwrap();
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
                .unwrap();
            r.add(der).unwrap();
            std::sync::Arc::new(r)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf =
            rustls::pki_types::CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("10.0.0.3").unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("the node certificate chains to the cluster CA for its address");
        let other = rustls::pki_types::ServerName::try_from("10.0.0.4").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], rustls::pki_types::UnixTime::now())
                .is_err(),
            "not for another address"
        );
        assert!(
            format!("{node:?}").find("PRIVATE").is_none(),
            "Debug shows no key"
        );
    }

    #[test]
    fn host_of_strips_ports_only() {
        assert_eq!(host_of("127.0.0.1:5050"), "127.0.0.1");
        assert_eq!(host_of("node-1.example"), "node-1.example");
        assert_eq!(host_of("[fd00::1]:5050"), "fd00::1");
        assert_eq!(host_of("fd00::1"), "fd00::1");
    }

    #[test]
    fn a_secret_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("principals/analytics.secret");
        let s = load_or_create_secret(&p).unwrap();
        assert_eq!(s.len(), 64);
        assert_eq!(load_or_create_secret(&p).unwrap(), s);
    }
}
