//! Authentication: each key file, then each ssh-agent identity (RSA keys signed with the best hash the
//! server supports).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};

use super::host_key::Client;
use super::{Auth, SshError, Target};

/// Tries each key file, then each agent identity. The server answers every offer at once, so a
/// wrong key is an immediate [`SshError::AuthFailed`], never a timeout.
pub(super) async fn authenticate(
    handle: &mut Handle<Client>,
    target: &Target,
    auth: &Auth,
) -> Result<(), SshError> {
    let protocol = |during: &str, e: russh::Error| SshError::Protocol {
        host: target.host.clone(),
        during: during.to_string(),
        source: Box::new(e),
    };
    let mut tried = Vec::new();
    for path in &auth.key_files {
        let key = load_key(path, auth.passphrase.as_deref())?;
        let hash = rsa_hash(handle, key.algorithm().is_rsa()).await;
        tried.push(format!(
            "{} ({} {})",
            path.display(),
            key.algorithm().as_str(),
            key.public_key().fingerprint(HashAlg::Sha256)
        ));
        let r = handle
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|e| protocol("public key authentication", e))?;
        if matches!(r, AuthResult::Success) {
            return Ok(());
        }
    }
    if let Some(sock) = &auth.agent_socket {
        match russh::keys::agent::client::AgentClient::connect_uds(sock).await {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                for id in ids {
                    let key = id.public_key().into_owned();
                    let hash = rsa_hash(handle, key.algorithm().is_rsa()).await;
                    tried.push(format!(
                        "agent:{} ({} {})",
                        id.comment(),
                        key.algorithm().as_str(),
                        key.fingerprint(HashAlg::Sha256)
                    ));
                    match handle
                        .authenticate_publickey_with(target.user.clone(), key, hash, &mut agent)
                        .await
                    {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(_) => {}
                        Err(e) => {
                            // The agent declined to sign: try the next identity.
                            tracing::debug!("agent signing failed: {e:?}");
                        }
                    }
                }
            }
            Err(e) => tried.push(format!("agent at {} unusable: {e}", sock.display())),
        }
    }
    Err(SshError::AuthFailed {
        user: target.user.clone(),
        host: target.host.clone(),
        tried,
    })
}

/// RSA signatures use the best SHA-2 the server announces; OpenSSH refuses SHA-1 `ssh-rsa`.
async fn rsa_hash(handle: &Handle<Client>, is_rsa: bool) -> Option<HashAlg> {
    if !is_rsa {
        return None;
    }
    match tokio::time::timeout(Duration::from_secs(5), handle.best_supported_rsa_hash()).await {
        Ok(Ok(Some(h))) => h,
        _ => Some(HashAlg::Sha256),
    }
}

fn load_key(path: &Path, passphrase: Option<&str>) -> Result<russh::keys::PrivateKey, SshError> {
    let text = std::fs::read_to_string(path).map_err(|e| SshError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    russh::keys::decode_secret_key(&text, passphrase).map_err(|e| SshError::KeyFile {
        path: path.to_path_buf(),
        reason: match (e, passphrase) {
            (russh::keys::Error::KeyIsEncrypted, None) => format!(
                "key is encrypted; set {} to its passphrase",
                super::PASSPHRASE_ENV
            ),
            (russh::keys::Error::KeyIsEncrypted, Some(_)) => "wrong passphrase".into(),
            (other, _) => format!("cannot decode: {other}"),
        },
    })
}
