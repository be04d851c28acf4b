//! Key generation for clusters whose machines dcform creates (the docker provider's per-cluster key).

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};

use super::SshError;

/// A freshly generated key pair in OpenSSH formats.
pub struct GeneratedKey {
    /// The private key, OpenSSH PEM (`-----BEGIN OPENSSH PRIVATE KEY-----`). Secret: write it 0600.
    pub private_openssh: String,
    /// The public key line for `authorized_keys` (`ssh-ed25519 AAAA... comment`).
    pub public_line: String,
    /// Its `SHA256:...` fingerprint.
    pub fingerprint: String,
}

impl std::fmt::Debug for GeneratedKey {
    // The private half must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("public_line", &self.public_line)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Makes a new ed25519 key from the operating system's random source (`/dev/urandom`).
pub fn generate_ed25519(comment: &str) -> Result<GeneratedKey, SshError> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|source| SshError::Io {
            what: "read /dev/urandom for a new SSH key".into(),
            source,
        })?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    key.set_comment(comment);
    let encode_err = |e: russh::keys::ssh_key::Error| SshError::Io {
        what: "encode the new SSH key".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(encode_err)?
        .to_string();
    let public_line = key.public_key().to_openssh().map_err(encode_err)?;
    Ok(GeneratedKey {
        private_openssh,
        public_line,
        fingerprint: key.public_key().fingerprint(HashAlg::Sha256).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_decode_again() {
        let a = generate_ed25519("test").unwrap();
        let b = generate_ed25519("test").unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(a.public_line.starts_with("ssh-ed25519 ") && a.public_line.ends_with(" test"));
        let back = russh::keys::decode_secret_key(&a.private_openssh, None).unwrap();
        assert_eq!(
            back.public_key().fingerprint(HashAlg::Sha256).to_string(),
            a.fingerprint
        );
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
