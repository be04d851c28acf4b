//! Host keys: the russh client handler judges the server's key against the [`HostKeyPolicy`] (pinned,
//! trust on first use, known_hosts with accept-new, or insecure skip) and records what it saw.

use std::path::Path;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use super::{HostKeyInfo, HostKeyPolicy};

/// What the host key check concluded, read back after the handshake.
#[derive(Debug, Clone, Default)]
pub(super) enum KeyVerdict {
    #[default]
    NotChecked,
    Accepted(HostKeyInfo),
    Mismatch {
        expected: String,
        actual: HostKeyInfo,
    },
    KnownHostsError(String),
}

/// The russh client handler: checks the host key against the policy and records what it saw.
pub(super) struct Client {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) policy: HostKeyPolicy,
    pub(super) verdict: Arc<Mutex<KeyVerdict>>,
}

fn key_info(key: &PublicKey) -> HostKeyInfo {
    HostKeyInfo {
        algorithm: key.algorithm().as_str().to_string(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        openssh: key.to_openssh().unwrap_or_default(),
    }
}

impl Client {
    fn judge(&self, key: &PublicKey) -> KeyVerdict {
        let info = key_info(key);
        match &self.policy {
            HostKeyPolicy::InsecureSkip | HostKeyPolicy::TrustOnFirstUse => {
                KeyVerdict::Accepted(info)
            }
            HostKeyPolicy::Pinned(fp) => {
                if fp.trim() == info.fingerprint {
                    KeyVerdict::Accepted(info)
                } else {
                    KeyVerdict::Mismatch {
                        expected: fp.trim().to_string(),
                        actual: info,
                    }
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                known_hosts_verdict(&self.host, self.port, key, path)
            }
        }
    }
}

fn known_hosts_verdict(host: &str, port: u16, key: &PublicKey, path: &Path) -> KeyVerdict {
    use russh::keys::known_hosts;
    let info = key_info(key);
    if !path.exists() {
        return match known_hosts::learn_known_hosts_path(host, port, key, path) {
            Ok(()) => KeyVerdict::Accepted(info),
            Err(e) => KeyVerdict::KnownHostsError(e.to_string()),
        };
    }
    match known_hosts::check_known_hosts_path(host, port, key, path) {
        Ok(true) => KeyVerdict::Accepted(info),
        // Unknown host: accept-new, like `StrictHostKeyChecking=accept-new`.
        Ok(false) => match known_hosts::learn_known_hosts_path(host, port, key, path) {
            Ok(()) => KeyVerdict::Accepted(info),
            Err(e) => KeyVerdict::KnownHostsError(e.to_string()),
        },
        Err(russh::keys::Error::KeyChanged { line }) => {
            let recorded = known_hosts::known_host_keys_path(host, port, path)
                .ok()
                .map(|keys| {
                    keys.iter()
                        .map(|(_, k)| k.fingerprint(HashAlg::Sha256).to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                })
                .unwrap_or_default();
            KeyVerdict::Mismatch {
                expected: format!("{recorded} (known_hosts {}:{line})", path.display()),
                actual: info,
            }
        }
        Err(e) => KeyVerdict::KnownHostsError(e.to_string()),
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => PublicKey::new(c.public_key().clone(), ""),
        };
        let verdict = self.judge(&key);
        let ok = matches!(verdict, KeyVerdict::Accepted(_));
        if let Ok(mut v) = self.verdict.lock() {
            *v = verdict;
        }
        Ok(ok)
    }
}

pub(super) fn policy_name(p: &HostKeyPolicy) -> String {
    match p {
        HostKeyPolicy::Pinned(f) => format!("pinned {f}"),
        HostKeyPolicy::TrustOnFirstUse => "trust on first use".into(),
        HostKeyPolicy::KnownHosts(p) => format!("known_hosts {}", p.display()),
        HostKeyPolicy::InsecureSkip => "INSECURE: any host key accepted".into(),
    }
}
