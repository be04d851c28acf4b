//! [`SshRemote`]: a [`Remote`] over one `dcform_bootstrap::ssh::Session`, shared by the `ssh` and `docker`
//! providers. [`SshConnector`] holds what every connection of a cluster shares (user, keys, port, bastion,
//! host-key rules, log folder) and turns a node of the state into a session.
//!
//! Host keys: the first connection to a node trusts the key it sees (the executor then records
//! [`Remote::host_key`] in `NodeState.ssh_host_key`); every later connection pins that fingerprint, so a
//! replaced machine at the same address is a hard error naming both fingerprints and nothing runs there.
//! A `known_hosts` file from the definition replaces trust-on-first-use; `--insecure-skip-host-key` turns
//! every check off (throwaway clusters only; the CLI warns).
//!
//! The bastion (`ssh { bastion = ... }`) is held to the same rule: the provider's `prepare` connects to it
//! before any node step and records its fingerprint in the state's `resources` under [`BASTION_HOST_KEY`]
//! ([`SshConnector::record_bastion_host_key`]); every later connection (apply, destroy, `dcform exec`) pins
//! it ([`SshConnector::pin_recorded`]), and a changed bastion key is refused before anything reaches a node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dc_support::error::chain;
use dc_support::retry::Backoff;
use dcform_bootstrap::ssh::{
    Auth, Command, ConnectOptions, ExitStatus, HostKeyPolicy, JumpHost, Session, SshError, Target,
    Upload, UploadSource,
};

use crate::apply::{CmdOutput, ProviderError, Remote, RemoteError};
use crate::spec::{Bastion, SshSpec};
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
    /// Jump host (parsed by `spec::load`).
    pub bastion: Option<Bastion>,
    /// Accept any host key (`--insecure-skip-host-key`).
    pub insecure_skip_host_key: bool,
    /// Folder of the per-node session logs (`<state dir>/logs`).
    pub log_dir: PathBuf,
    /// Passphrase typed at the prompt for an encrypted key (`DCFORM_SSH_PASSPHRASE` wins when set).
    pub passphrase: Option<String>,
    /// The bastion's pinned host key fingerprint: the state's record ([`SshConnector::pin_recorded`]),
    /// or the key the first connection of this run saw. Shared by clones, so every node of a run is
    /// held to one bastion key.
    pub bastion_host_key: Arc<Mutex<Option<String>>>,
}

/// Key of the bastion's pinned host key fingerprint in the state's `resources`.
pub const BASTION_HOST_KEY: &str = "ssh_bastion_host_key";

impl SshConnector {
    /// The connector for a definition's `ssh {}` block; `extra_key` (a provider's generated key) is offered
    /// after the definition's own key.
    pub fn from_spec(
        ssh: &SshSpec,
        extra_key: Option<PathBuf>,
        log_dir: PathBuf,
        insecure_skip_host_key: bool,
    ) -> SshConnector {
        let key_files: Vec<PathBuf> = ssh.private_key.iter().cloned().chain(extra_key).collect();
        // An encrypted key with no DCFORM_SSH_PASSPHRASE: ask once on the terminal (nothing without one).
        let passphrase = if std::env::var_os("DCFORM_SSH_PASSPHRASE").is_some() {
            None
        } else {
            key_files
                .iter()
                .find(|k| dcform_bootstrap::ssh::key_needs_passphrase(k).unwrap_or(false))
                .and_then(|k| dcform_bootstrap::ssh::prompt_passphrase(k).ok().flatten())
        };
        SshConnector {
            passphrase,
            user: ssh.user.clone(),
            port: ssh.port,
            key_files,
            known_hosts: ssh.known_hosts.clone(),
            bastion: ssh.bastion.clone(),
            insecure_skip_host_key,
            log_dir,
            bastion_host_key: Arc::default(),
        }
    }

    /// The bastion as an SSH target (`None` without one); its user defaults to the nodes' user.
    pub fn bastion_target(&self) -> Option<Target> {
        self.bastion.as_ref().map(|b| {
            let mut t = Target::new(b.host.clone(), b.user_or(&self.user));
            t.port = b.port;
            t
        })
    }

    /// Pins the bastion to the fingerprint recorded in the state's `resources`, if there is one.
    pub fn pin_recorded(&self, resources: &BTreeMap<String, String>) {
        if let Some(fp) = resources.get(BASTION_HOST_KEY).filter(|f| !f.is_empty())
            && let Ok(mut pinned) = self.bastion_host_key.lock()
        {
            *pinned = Some(fp.clone());
        }
    }

    fn pinned_bastion(&self) -> Option<String> {
        self.bastion_host_key.lock().ok().and_then(|p| p.clone())
    }

    /// The host-key rule for the bastion: skip, known_hosts, the pinned key, or first use.
    pub fn bastion_policy(&self) -> HostKeyPolicy {
        if self.insecure_skip_host_key {
            HostKeyPolicy::InsecureSkip
        } else if let Some(kh) = &self.known_hosts {
            HostKeyPolicy::KnownHosts(kh.clone())
        } else if let Some(fp) = self.pinned_bastion() {
            HostKeyPolicy::Pinned(fp)
        } else {
            HostKeyPolicy::TrustOnFirstUse
        }
    }

    /// What every SSH-reached provider's `prepare` does first: makes the log folder the sessions write
    /// to, then records the bastion's host key ([`Self::record_bastion_host_key`]).
    pub async fn prepare(
        &self,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        self.make_log_dir()?;
        self.record_bastion_host_key(resources).await
    }

    /// Makes the folder the SSH sessions write their logs to. A provider whose bastion may not
    /// exist yet at `prepare` (aws: it may be one of the machines it is about to make) calls only
    /// this, not [`Self::prepare`].
    pub fn make_log_dir(&self) -> Result<(), ProviderError> {
        std::fs::create_dir_all(&self.log_dir).map_err(|e| ProviderError {
            node: "cluster".into(),
            message: format!(
                "cannot create the log folder {}: {e}",
                self.log_dir.display()
            ),
            transient: false,
            source: Some(Box::new(e)),
        })
    }

    /// For a provider's `prepare`: connects to the bastion alone (pinned to the state's record, or
    /// trusting it on first use) and returns `resources` with its fingerprint recorded under
    /// [`BASTION_HOST_KEY`]. Runs before any node step, so a changed bastion key stops the apply before
    /// anything reaches a node. Nothing to do without a bastion, with a known_hosts file (which then
    /// holds the bastion's key) or with `--insecure-skip-host-key`.
    pub async fn record_bastion_host_key(
        &self,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut r = resources.clone();
        let Some(target) = self.bastion_target() else {
            return Ok(r);
        };
        if self.insecure_skip_host_key || self.known_hosts.is_some() {
            return Ok(r);
        }
        self.pin_recorded(resources);
        let opts = ConnectOptions {
            log_path: Some(self.log_dir.join("bastion.log")),
            ..self.connect_options()
        };
        let policy = self.bastion_policy();
        let session = Session::connect(target.clone(), self.auth(), policy, opts)
            .await
            .map_err(|e| {
                let e = match e {
                    SshError::HostKeyMismatch {
                        expected,
                        actual,
                        algorithm,
                        ..
                    } => SshError::BastionHostKeyMismatch {
                        bastion: target.display(),
                        target: "the cluster's nodes".into(),
                        expected,
                        actual,
                        algorithm,
                    },
                    other => other,
                };
                let transient = matches!(e, SshError::Connect { .. } | SshError::Protocol { .. });
                let bastion = matches!(e, SshError::BastionHostKeyMismatch { .. });
                let message = self.with_hint(chain(&e), bastion);
                ProviderError {
                    node: "cluster".into(),
                    message,
                    transient,
                    source: Some(Box::new(e)),
                }
            })?;
        let fp = session.host_key().fingerprint.clone();
        session.close().await;
        if let Ok(mut pinned) = self.bastion_host_key.lock() {
            *pinned = Some(fp.clone());
        }
        r.insert(BASTION_HOST_KEY.into(), fp);
        Ok(r)
    }

    /// Says how to get past a changed bastion key: the record is in the state, not in a known_hosts.
    fn with_hint(&self, message: String, bastion_key_changed: bool) -> String {
        if !bastion_key_changed {
            return message;
        }
        let dir = self.log_dir.parent().unwrap_or(&self.log_dir);
        format!(
            "{message}. The bastion's key is recorded as `resources.{BASTION_HOST_KEY}` in the state file in {}: \
             if the bastion was legitimately replaced, delete that entry and run again (the next connection \
             records the new key)",
            dir.display()
        )
    }

    fn auth(&self) -> Auth {
        let mut auth = Auth::from_env(self.key_files.clone());
        if auth.passphrase.is_none() {
            auth.passphrase = self.passphrase.clone();
        }
        auth
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            // The executor retries an unreachable host with its own (growing) backoff; the engine polls
            // briefly and often (~5 s) so a container whose sshd comes up is reached within a tenth of a second.
            boot_retry: Backoff::new(Duration::from_millis(100), Duration::from_millis(500))
                .attempts(12),
            ..ConnectOptions::default()
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

    /// The address to reach `node` at: its first recorded address, else its private one (a machine
    /// with no public address, reached through a bastion), else its on-prem host.
    pub fn host_of(node: &NodeState) -> Option<String> {
        node.addresses
            .first()
            .or(node.private_address.as_ref())
            .cloned()
            .or_else(|| node.host.clone())
            // An address may carry a port (`host:port`) for the API; SSH only wants the host.
            .map(|a| match a.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => h.to_string(),
                _ => a,
            })
    }

    fn target(&self, host: &str) -> Target {
        let mut t = Target::new(host, self.user.clone());
        t.port = self.port;
        if let Some(jump) = self.bastion_target() {
            t.jump = Some(Box::new(JumpHost {
                host_key: self.bastion_policy(),
                target: jump,
            }));
        }
        t
    }

    /// Connects to `node` (authenticated, host key checked) with its session log at `<log_dir>/<node>.log`.
    pub async fn connect(&self, node: &NodeState) -> Result<SshRemote, RemoteError> {
        self.connect_checking(node, self.policy_for(node)).await
    }

    /// [`connect`](Self::connect) with the host key checked by `policy` (a provider that learnt the
    /// machine's keys out of band, e.g. from EC2's console output, passes them as a known_hosts file).
    pub async fn connect_checking(
        &self,
        node: &NodeState,
        policy: HostKeyPolicy,
    ) -> Result<SshRemote, RemoteError> {
        let host = Self::host_of(node).ok_or_else(|| RemoteError::Refused {
            host: node.name.clone(),
            message: "no address recorded for this node".into(),
        })?;
        self.connect_target(node, self.target(&host), policy).await
    }

    /// Connects to `node` at `host` through `jump` (not the definition's bastion: a jump host the
    /// provider chose, e.g. an AWS master for a private agent), whose host key must be `jump_key`
    /// (the fingerprint pinned for it as a node), else is trusted on first use.
    pub async fn connect_through(
        &self,
        node: &NodeState,
        host: &str,
        jump: &Bastion,
        jump_key: Option<String>,
        policy: HostKeyPolicy,
    ) -> Result<SshRemote, RemoteError> {
        let mut target = Target::new(host, self.user.clone());
        target.port = self.port;
        let mut via = Target::new(jump.host.clone(), jump.user_or(&self.user));
        via.port = jump.port;
        let host_key = if self.insecure_skip_host_key {
            HostKeyPolicy::InsecureSkip
        } else if let Some(kh) = &self.known_hosts {
            HostKeyPolicy::KnownHosts(kh.clone())
        } else if let Some(fp) = jump_key {
            HostKeyPolicy::Pinned(fp)
        } else {
            HostKeyPolicy::TrustOnFirstUse
        };
        target.jump = Some(Box::new(JumpHost {
            host_key,
            target: via,
        }));
        self.connect_target(node, target, policy).await
    }

    async fn connect_target(
        &self,
        node: &NodeState,
        target: Target,
        policy: HostKeyPolicy,
    ) -> Result<SshRemote, RemoteError> {
        let host = target.host.clone();
        let declared_bastion = self.bastion.is_some();
        let opts = ConnectOptions {
            log_path: Some(self.log_dir.join(format!("{}.log", node.name))),
            ..self.connect_options()
        };
        let refuse = |e: SshError| {
            let bastion = matches!(e, SshError::BastionHostKeyMismatch { .. });
            let mut r = map_error(&host, e);
            if let RemoteError::Refused { message, .. } = &mut r {
                *message = self.with_hint(std::mem::take(message), bastion);
            }
            r
        };
        let session = Session::connect(target.clone(), self.auth(), policy, opts)
            .await
            .map_err(&refuse)?;
        // No record yet (a state from before bastion keys were kept, or `dcform exec` before any apply):
        // the first node of this run to get through sets the bastion key for all the others.
        if let (Some(jump), Some(seen)) = (&target.jump, session.jump_host_key())
            && declared_bastion
            && jump.host_key == HostKeyPolicy::TrustOnFirstUse
            && let Ok(mut pinned) = self.bastion_host_key.lock()
        {
            match pinned.as_deref() {
                None => *pinned = Some(seen.fingerprint.clone()),
                Some(fp) if fp == seen.fingerprint => {}
                Some(fp) => {
                    return Err(refuse(SshError::BastionHostKeyMismatch {
                        bastion: jump.target.display(),
                        target: target.display(),
                        expected: fp.to_string(),
                        actual: seen.fingerprint.clone(),
                        algorithm: seen.algorithm.clone(),
                    }));
                }
            }
        }
        Ok(SshRemote {
            session: Arc::new(session),
            host,
        })
    }
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
        | SshError::BastionHostKeyMismatch { .. }
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
            pool: crate::spec::PoolName::new("masters").expect("valid pool name"),
            index: 1,
            role: Role::Master,
            host: None,
            provider_id: None,
            addresses: vec![addr.into()],
            private_address: None,
            ssh_host_key: key.map(String::from),
            core_version: None,
            config_hash: None,
            status: NodeStatus::Created,
            replica_id: None,
            replica_member: false,
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
    fn the_bastion_is_pinned_to_the_states_record_unless_checks_are_off() {
        let c = SshConnector {
            bastion: Bastion::parse("ops@jump"),
            ..connector()
        };
        assert_eq!(c.bastion_policy(), HostKeyPolicy::TrustOnFirstUse);
        let resources = BTreeMap::from([(BASTION_HOST_KEY.to_string(), "SHA256:b".to_string())]);
        c.pin_recorded(&resources);
        assert_eq!(c.bastion_policy(), HostKeyPolicy::Pinned("SHA256:b".into()));
        // Clones (one per provider use) share the pin.
        assert_eq!(
            c.clone().target("10.0.0.1").jump.unwrap().host_key,
            HostKeyPolicy::Pinned("SHA256:b".into())
        );
        let insecure = SshConnector {
            insecure_skip_host_key: true,
            ..c.clone()
        };
        assert_eq!(insecure.bastion_policy(), HostKeyPolicy::InsecureSkip);
        let kh = SshConnector {
            known_hosts: Some("/k".into()),
            ..c
        };
        assert_eq!(kh.bastion_policy(), HostKeyPolicy::KnownHosts("/k".into()));
    }

    #[tokio::test]
    async fn without_a_bastion_prepare_records_nothing_and_connects_nowhere() {
        let resources = BTreeMap::from([("x".to_string(), "y".to_string())]);
        assert_eq!(
            connector()
                .record_bastion_host_key(&resources)
                .await
                .unwrap(),
            resources
        );
    }

    #[test]
    fn a_changed_bastion_key_says_where_its_record_is() {
        let c = SshConnector {
            log_dir: PathBuf::from("/d/.dcform/c/logs"),
            ..connector()
        };
        let m = c.with_hint("host key of the bastion changed".into(), true);
        assert!(
            m.contains(BASTION_HOST_KEY) && m.contains("/d/.dcform/c"),
            "{m}"
        );
        assert_eq!(c.with_hint("other".into(), false), "other");
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
