//! Authentication: who a request comes from. Each party has its own proof:
//!
//! | party | proof | [`Identity`] |
//! |---|---|---|
//! | operator | the operator token (`--token-file`), Bearer | [`Identity::Operator`] |
//! | agent | an agent token (`--agent-token-file`, one or more lines), Bearer | [`Identity::Agent`] ([`AgentProof::Token`]) |
//! | agent | a TLS client certificate of the cluster CA with SAN URI `urn:dcform:agent:NODE` | [`Identity::Agent`] ([`AgentProof::Certificate`]) |
//! | framework | principal/secret from a Mesos credentials file (`--credentials`), Basic | [`Identity::Principal`] |
//!
//! What each identity may do is decided by the routes (`api`) and the rules ([`crate::acl`]).

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

/// Reads an agent token file: one token per line (dcform may issue one per node); blank lines
/// and lines starting with `#` are ignored.
pub fn read_agent_tokens(path: &Path) -> Result<Vec<String>, AuthError> {
    let t = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.into(),
        source,
    })?;
    let tokens: Vec<String> = t
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(AuthError::EmptyToken { path: path.into() });
    }
    Ok(tokens)
}

/// How an agent proved it is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentProof {
    /// A token from the master's `--agent-token-file`.
    Token,
    /// A client certificate verified against the master's `--ca-file`, whose SAN URI is
    /// `urn:dcform:agent:NODE` (see [`crate::tls`]).
    Certificate {
        /// The node the certificate was issued to.
        node: String,
    },
}

/// The principal of unauthenticated frameworks (`authenticate_frameworks = false`): one shared,
/// unprivileged party. Empty, so no credentials file can name it (empty principals are refused).
pub const ANONYMOUS_PRINCIPAL: &str = "";

/// Who a request was authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Holder of the operator token: every right.
    Operator,
    /// An agent: the agent routes only.
    Agent(AgentProof),
    /// A framework principal from the credentials file: what the rules allow it.
    Principal(String),
}

impl Identity {
    /// The framework principal, if this is one.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Identity::Principal(p) => Some(p),
            Identity::Operator | Identity::Agent(_) => None,
        }
    }
}

/// The master's view of valid credentials.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    token: String,
    agent_tokens: Vec<String>,
    principals: HashMap<String, String>,
}

impl Authenticator {
    /// The operator token only.
    pub fn new(token: impl Into<String>) -> Self {
        Authenticator {
            token: token.into(),
            agent_tokens: Vec::new(),
            principals: HashMap::new(),
        }
    }

    /// Adds tokens that identify agents (accepted on the agent routes only).
    pub fn with_agent_tokens(mut self, tokens: impl IntoIterator<Item = String>) -> Self {
        self.agent_tokens.extend(tokens);
        self
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
            // The empty principal is the anonymous one; a secret for it would let Basic auth
            // impersonate unauthenticated frameworks.
            if c.principal.is_empty() || c.secret.is_empty() {
                continue;
            }
            self.principals.insert(c.principal, c.secret);
        }
        Ok(self)
    }

    /// Adds one framework principal.
    pub fn with_principal(mut self, principal: &str, secret: &str) -> Self {
        self.principals.insert(principal.into(), secret.into());
        self
    }

    /// The operator token (the master uses it only to call agents that registered with it and
    /// sent no per-run secret: agents of older versions, which already hold it).
    pub fn operator_token(&self) -> &str {
        &self.token
    }

    /// Checks an `Authorization` header value. Bearer must equal the operator token or an agent
    /// token; Basic must match a principal's secret. Comparison is constant-time in the secret's
    /// length.
    pub fn check(&self, header: Option<&str>) -> Option<Identity> {
        let header = header?.trim();
        // `token=TOKEN` is what DC/OS-era clients (Marathon's) send; it means the same as Bearer.
        if let Some(tok) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("token="))
        {
            let tok = tok.trim().as_bytes();
            if ct_eq(tok, self.token.as_bytes()) {
                return Some(Identity::Operator);
            }
            // Every agent token is compared, so the time taken does not tell which one matched.
            let agent = self
                .agent_tokens
                .iter()
                .fold(false, |hit, t| ct_eq(tok, t.as_bytes()) | hit);
            return agent.then_some(Identity::Agent(AgentProof::Token));
        }
        let b64 = header.strip_prefix("Basic ")?;
        let raw = String::from_utf8(base64_decode(b64)?).ok()?;
        let (principal, secret) = raw.split_once(':')?;
        let want = self.principals.get(principal)?;
        ct_eq(secret.as_bytes(), want.as_bytes())
            .then(|| Identity::Principal(principal.to_string()))
    }
}

/// Constant-time comparison (in the length of `b`) of two secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
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
        assert_eq!(a.check(Some("Bearer tok")), Some(Identity::Operator));
        assert_eq!(a.check(Some("Bearer nope")), None);
        assert_eq!(a.check(Some("token=tok")), Some(Identity::Operator));
        assert_eq!(a.check(Some("token=nope")), None);
        assert_eq!(
            a.check(Some("Basic YmFyOmJhcnNlY3JldA==")),
            Some(Identity::Principal("bar".into()))
        );
        assert_eq!(a.check(Some("Basic YmFyOndyb25n")), None);
        assert_eq!(a.check(None), None);
        assert_eq!(a.check(Some("Basic !!!")), None);
    }

    #[test]
    fn agent_tokens_identify_agents_and_never_the_operator() {
        let a = Authenticator::new("op").with_agent_tokens(["ag1".to_string(), "ag2".to_string()]);
        assert_eq!(a.check(Some("Bearer op")), Some(Identity::Operator));
        assert_eq!(
            a.check(Some("Bearer ag2")),
            Some(Identity::Agent(AgentProof::Token))
        );
        assert_eq!(a.check(Some("Bearer ag3")), None);
        assert_eq!(Identity::Principal("p".into()).principal(), Some("p"));
        assert_eq!(Identity::Agent(AgentProof::Token).principal(), None);
    }

    #[test]
    fn agent_token_files_hold_one_token_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agents");
        std::fs::write(&p, "# dcform: one per node\n a1 \n\na2\n").unwrap();
        assert_eq!(read_agent_tokens(&p).unwrap(), vec!["a1", "a2"]);
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(matches!(
            read_agent_tokens(&p),
            Err(AuthError::EmptyToken { .. })
        ));
    }
}
