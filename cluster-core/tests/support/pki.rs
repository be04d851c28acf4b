//! A throw-away certificate authority for the TLS tests (rcgen): a CA and node certificates
//! for 127.0.0.1/localhost with dcform's SAN URIs, written as PEM files.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// A CA whose certificate is at `ca`.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what `--ca-file` takes.
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A node certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct NodeCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} cluster CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).expect("write CA");
        Pki {
            dir: dir.to_path_buf(),
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for 127.0.0.1 and localhost, for server and client use, with `uri` (e.g.
    /// `urn:dcform:agent:a1`) as SAN URI if given; files `NAME.crt`, `NAME.key`.
    pub fn issue(&self, name: &str, uri: Option<&str>) -> NodeCert {
        let key = KeyPair::generate().expect("node key");
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .expect("node params");
        if let Some(u) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(u.try_into().expect("URI SAN")));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("sign node");
        let out = NodeCert {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&out.cert, cert.pem()).expect("write cert");
        std::fs::write(&out.key, key.serialize_pem()).expect("write key");
        out
    }
}

/// The TLS material of a node with `cert` that trusts `ca`.
pub fn node_tls(cert: Option<&NodeCert>, ca: Option<&Path>) -> dccore::tls::Tls {
    dccore::tls::Tls::load(
        cert.map(|c| c.cert.as_path()),
        cert.map(|c| c.key.as_path()),
        ca,
    )
    .expect("TLS files load")
}

/// A reqwest client that trusts `ca` (system roots without) and presents `cert` (if any).
pub fn client(cert: Option<&NodeCert>, ca: Option<&Path>) -> reqwest::Client {
    node_tls(cert, ca)
        .http_client()
        .expect("TLS client config")
        .timeout(super::WAIT)
        .build()
        .expect("client builds")
}
