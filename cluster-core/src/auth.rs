//! Authentication: a bearer token for operators and agents (`--token-file`) and HTTP Basic with a
//! principal/secret from a Mesos credentials file for frameworks (`--credentials`).

use crate::proto::base64_decode;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token or credentials file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("token file {path} is empty")]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The credentials file is not `{"credentials":[{"principal":..,"secret":..}]}`.
    #[error(
        "credentials file {path} is not Mesos credentials JSON {{\"credentials\":[{{\"principal\":..,\"secret\":..}}]}}"
    )]
    BadCredentials {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a token file (surrounding whitespace is ignored).
pub fn read_token(path: &Path) -> Result<String, AuthError> {
    let t = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.into(),
        source,
    })?;
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(AuthError::EmptyToken { path: path.into() });
    }
    Ok(t)
}

#[derive(Deserialize)]
struct CredFile {
    credentials: Vec<Cred>,
}

#[derive(Deserialize)]
struct Cred {
    principal: String,
    secret: String,
}

/// Who a request was authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Holder of the cluster token (operator or agent).
    Token,
    /// A framework principal from the credentials file.
    Principal(String),
}

/// The master's view of valid credentials.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    token: String,
    principals: HashMap<String, String>,
}

impl Authenticator {
    /// Token only.
    pub fn new(token: impl Into<String>) -> Self {
        Authenticator {
            token: token.into(),
            principals: HashMap::new(),
        }
    }

    /// Adds framework principals from a Mesos credentials JSON file.
    pub fn with_credentials_file(mut self, path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.into(),
            source,
        })?;
        let f: CredFile =
            serde_json::from_str(&text).map_err(|source| AuthError::BadCredentials {
                path: path.into(),
                source,
            })?;
        for c in f.credentials {
            self.principals.insert(c.principal, c.secret);
        }
        Ok(self)
    }

    /// Adds one framework principal.
    pub fn with_principal(mut self, principal: &str, secret: &str) -> Self {
        self.principals.insert(principal.into(), secret.into());
        self
    }

    /// The cluster token (the master uses it to call agents).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Checks an `Authorization` header value. Bearer must equal the token; Basic must match a
    /// principal's secret. Comparison is constant-time in the secret's length.
    pub fn check(&self, header: Option<&str>) -> Option<Identity> {
        let header = header?.trim();
        if let Some(tok) = header.strip_prefix("Bearer ") {
            return ct_eq(tok.trim().as_bytes(), self.token.as_bytes()).then_some(Identity::Token);
        }
        let b64 = header.strip_prefix("Basic ")?;
        let raw = String::from_utf8(base64_decode(b64)?).ok()?;
        let (principal, secret) = raw.split_once(':')?;
        let want = self.principals.get(principal)?;
        ct_eq(secret.as_bytes(), want.as_bytes())
            .then(|| Identity::Principal(principal.to_string()))
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_are_checked() {
        let a = Authenticator::new("tok").with_principal("bar", "barsecret");
        assert_eq!(a.check(Some("Bearer tok")), Some(Identity::Token));
        assert_eq!(a.check(Some("Bearer nope")), None);
        assert_eq!(
            a.check(Some("Basic YmFyOmJhcnNlY3JldA==")),
            Some(Identity::Principal("bar".into()))
        );
        assert_eq!(a.check(Some("Basic YmFyOndyb25n")), None);
        assert_eq!(a.check(None), None);
        assert_eq!(a.check(Some("Basic !!!")), None);
    }
}
