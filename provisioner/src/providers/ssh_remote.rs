//! [`SshRemote`]: a [`Remote`] over one `dcform_bootstrap::ssh::Session`, shared by the `ssh` and `docker`
//! providers. [`SshConnector`] holds what every connection of a cluster shares (user, keys, port, bastion,
//! host-key rules, log folder) and turns a node of the state into a session.
//!
//! Host keys: the first connection to a node trusts the key it sees (the executor then records
//! [`Remote::host_key`] in `NodeState.ssh_host_key`); every later connection pins that fingerprint, so a
//! replaced machine at the same address is a hard error naming both fingerprints and nothing runs there.
//! A `known_hosts` file from the definition replaces trust-on-first-use; `--insecure-skip-host-key` turns
//! every check off (throwaway clusters only; the CLI warns).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dcform_bootstrap::retry::Backoff;
use dcform_bootstrap::ssh::{
    Auth, Command, ConnectOptions, ExitStatus, HostKeyPolicy, JumpHost, Session, SshError, Target,
    Upload, UploadSource,
};

use crate::apply::{CmdOutput, Remote, RemoteError};
use crate::spec::SshSpec;
use crate::state::NodeState;

/// What every SSH connection of one cluster shares.
#[derive(Debug, Clone)]
pub struct SshConnector {
    /// Login user.
    pub user: String,
    /// SSH port of the nodes.
    pub port: u16,
    /// Private key files to offer (then ssh-agent via `SSH_AUTH_SOCK`).
    pub key_files: Vec<PathBuf>,
    /// Check host keys against this file instead of trust-on-first-use plus pinning.
    pub known_hosts: Option<PathBuf>,
    /// Jump host `user@host:port`.
    pub bastion: Option<String>,
    /// Accept any host key (`--insecure-skip-host-key`).
    pub insecure_skip_host_key: bool,
    /// Folder of the per-node session logs (`<state dir>/logs`).
    pub log_dir: PathBuf,
}

impl SshConnector {
    /// The connector for a definition's `ssh {}` block; `extra_key` (a provider's generated key) is offered
    /// after the definition's own key.
    pub fn from_spec(
        ssh: &SshSpec,
        extra_key: Option<PathBuf>,
        log_dir: PathBuf,
        insecure_skip_host_key: bool,
    ) -> SshConnector {
        let key_files = ssh.private_key.iter().cloned().chain(extra_key).collect();
        SshConnector {
            user: ssh.user.clone(),
            port: ssh.port,
            key_files,
            known_hosts: ssh.known_hosts.clone(),
            bastion: ssh.bastion.clone(),
            insecure_skip_host_key,
            log_dir,
        }
    }

    /// The host-key rule for `node`: skip, known_hosts, the pinned key from the state, or first use.
    pub fn policy_for(&self, node: &NodeState) -> HostKeyPolicy {
        if self.insecure_skip_host_key {
            HostKeyPolicy::InsecureSkip
        } else if let Some(kh) = &self.known_hosts {
            HostKeyPolicy::KnownHosts(kh.clone())
        } else if let Some(fp) = &node.ssh_host_key {
            HostKeyPolicy::Pinned(fp.clone())
        } else {
            HostKeyPolicy::TrustOnFirstUse
        }
    }

    /// The address to reach `node` at: its first recorded address, else its on-prem host.
    pub fn host_of(node: &NodeState) -> Option<String> {
        node.addresses
            .first()
            .cloned()
            .or_else(|| node.host.clone())
            // An address may carry a port (`host:port`) for the API; SSH only wants the host.
            .map(|a| match a.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => h.to_string(),
                _ => a,
            })
    }

    fn target(&self, host: &str) -> Result<Target, RemoteError> {
        let mut t = Target::new(host, self.user.clone());
        t.port = self.port;
        if let Some(b) = &self.bastion {
            let jump = parse_bastion(b, &self.user).ok_or_else(|| RemoteError::Refused {
                host: host.to_string(),
                message: format!("bastion {b:?} is not of the form [user@]host[:port]"),
            })?;
            t.jump = Some(Box::new(JumpHost {
                host_key: match (&self.known_hosts, self.insecure_skip_host_key) {
                    (_, true) => HostKeyPolicy::InsecureSkip,
                    (Some(kh), false) => HostKeyPolicy::KnownHosts(kh.clone()),
                    // The state has no record for the bastion: it is trusted as the user's own machine.
                    (None, false) => HostKeyPolicy::TrustOnFirstUse,
                },
                target: jump,
            }));
        }
        Ok(t)
    }

    /// Connects to `node` (authenticated, host key checked) with its session log at `<log_dir>/<node>.log`.
    pub async fn connect(&self, node: &NodeState) -> Result<SshRemote, RemoteError> {
        let host = Self::host_of(node).ok_or_else(|| RemoteError::Refused {
            host: node.name.clone(),
            message: "no address recorded for this node".into(),
        })?;
        let target = self.target(&host)?;
        let opts = ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            // The executor retries an unreachable host with its own (growing) backoff; the engine polls
            // briefly and often (~5 s) so a container whose sshd comes up is reached within a tenth of a second.
            boot_retry: Backoff {
                initial: Duration::from_millis(100),
                max_delay: Duration::from_millis(500),
                max_attempts: 12,
            },
            log_path: Some(self.log_dir.join(format!("{}.log", node.name))),
            ..ConnectOptions::default()
        };
        let session = Session::connect(
            target,
            Auth::from_env(self.key_files.clone()),
            self.policy_for(node),
            opts,
        )
        .await
        .map_err(|e| map_error(&host, e))?;
        Ok(SshRemote {
            session: Arc::new(session),
            host,
        })
    }
}

/// `[user@]host[:port]`.
fn parse_bastion(s: &str, default_user: &str) -> Option<Target> {
    let (user, rest) = match s.split_once('@') {
        Some((u, r)) => (u.to_string(), r),
        None => (default_user.to_string(), s),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (rest.to_string(), 22),
    };
    if host.is_empty() || user.is_empty() {
        return None;
    }
    let mut t = Target::new(host, user);
    t.port = port;
    Some(t)
}

/// The error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// SSH engine errors as the executor sees them: only an unreachable host is worth retrying; bad
/// credentials and changed host keys are the user's to fix and fail at once.
pub fn map_error(host: &str, e: SshError) -> RemoteError {
    let message = chain(&e);
    match e {
        SshError::Connect { .. } | SshError::Protocol { .. } => RemoteError::Unreachable {
            host: host.into(),
            message,
        },
        SshError::HostKeyMismatch { .. }
        | SshError::KnownHosts { .. }
        | SshError::KeyFile { .. }
        | SshError::AuthFailed { .. }
        | SshError::SudoNeedsPassword { .. } => RemoteError::Refused {
            host: host.into(),
            message,
        },
        SshError::Timeout { step, after, .. } => RemoteError::Timeout {
            host: host.into(),
            command: step,
            after,
        },
        SshError::CommandFailed {
            step, status, tail, ..
        } => RemoteError::Command {
            host: host.into(),
            command: step,
            status: status.to_string(),
            tail,
        },
        SshError::HashMismatch { .. } | SshError::Io { .. } => RemoteError::Other {
            host: host.into(),
            message,
        },
    }
}

/// Commands and uploads on one host over one SSH connection (commands run as root: `sudo -n` for other users).
#[derive(Debug, Clone)]
pub struct SshRemote {
    session: Arc<Session>,
    host: String,
}

impl SshRemote {
    /// The underlying session (for `dcform exec`).
    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// The first meaningful line of a script, for the log and errors (never the whole script).
fn label_of(script: &str) -> String {
    script
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set "))
        .unwrap_or("script")
        .chars()
        .take(60)
        .collect()
}

impl Remote for SshRemote {
    async fn run(&self, script: &str, timeout: Duration) -> Result<CmdOutput, RemoteError> {
        // Install steps are idempotent by design, so a command whose connection died may run again.
        let cmd = Command::new(label_of(script), script)
            .privileged()
            .timeout(timeout)
            .idempotent();
        let out = self
            .session
            .exec(&cmd)
            .await
            .map_err(|e| map_error(&self.host, e))?;
        Ok(CmdOutput {
            code: match out.status {
                ExitStatus::Code(c) => Some(c as i32),
                _ => None,
            },
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn upload(
        &self,
        contents: Arc<Vec<u8>>,
        dest: &str,
        mode: u32,
    ) -> Result<(), RemoteError> {
        let up = Upload::new(
            format!("upload {dest}"),
            UploadSource::Bytes(contents.as_ref().clone()),
            dest,
            mode,
        )
        .privileged();
        self.session
            .upload(&up)
            .await
            .map(|_| ())
            .map_err(|e| map_error(&self.host, e))
    }

    fn host_key(&self) -> Option<String> {
        Some(self.session.host_key().fingerprint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;
    use crate::state::NodeStatus;

    fn node(addr: &str, key: Option<&str>) -> NodeState {
        NodeState {
            name: "masters-1".into(),
            pool: "masters".into(),
            index: 1,
            role: Role::Master,
            host: None,
            provider_id: None,
            addresses: vec![addr.into()],
            ssh_host_key: key.map(String::from),
            core_version: None,
            config_hash: None,
            status: NodeStatus::Created,
        }
    }

    fn connector() -> SshConnector {
        SshConnector::from_spec(&SshSpec::default(), None, PathBuf::from("/tmp"), false)
    }

    #[test]
    fn a_recorded_host_key_is_pinned_and_an_unknown_host_is_trusted_once() {
        let c = connector();
        assert_eq!(
            c.policy_for(&node("10.0.0.1", Some("SHA256:x"))),
            HostKeyPolicy::Pinned("SHA256:x".into())
        );
        assert_eq!(
            c.policy_for(&node("10.0.0.1", None)),
            HostKeyPolicy::TrustOnFirstUse
        );
        let insecure = SshConnector {
            insecure_skip_host_key: true,
            ..c
        };
        assert_eq!(
            insecure.policy_for(&node("10.0.0.1", Some("SHA256:x"))),
            HostKeyPolicy::InsecureSkip
        );
    }

    #[test]
    fn the_ssh_host_drops_an_api_port() {
        assert_eq!(
            SshConnector::host_of(&node("10.0.0.1:5050", None)).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            SshConnector::host_of(&node("::1", None)).as_deref(),
            Some("::1")
        );
    }

    #[test]
    fn bastions_parse_with_defaults() {
        let t = parse_bastion("jump.example:2222", "root").unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("root", "jump.example", 2222)
        );
        let t = parse_bastion("ops@jump", "root").unwrap();
        assert_eq!((t.user.as_str(), t.port), ("ops", 22));
        assert!(parse_bastion("ops@jump:x", "root").is_none());
    }

    #[test]
    fn auth_and_host_key_failures_are_refusals_not_retried() {
        let e = map_error(
            "h",
            SshError::HostKeyMismatch {
                host: "h".into(),
                expected: "SHA256:a".into(),
                actual: "SHA256:b".into(),
                algorithm: "ssh-ed25519".into(),
            },
        );
        assert!(!e.is_transient());
        let s = e.to_string();
        assert!(
            s.contains("host key") && s.contains("SHA256:a") && s.contains("SHA256:b"),
            "{s}"
        );
        let e = map_error(
            "h",
            SshError::AuthFailed {
                user: "root".into(),
                host: "h".into(),
                tried: vec![],
            },
        );
        assert!(matches!(e, RemoteError::Refused { .. }));
        let e = map_error(
            "h",
            SshError::Connect {
                host: "h".into(),
                port: 22,
                attempts: 1,
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            },
        );
        assert!(e.is_transient());
    }
}
