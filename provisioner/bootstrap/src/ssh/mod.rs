//! SSH engine: one authenticated, reused connection per host, built on russh (whose types never
//! leave this module).
//!
//! ```text
//! Session::connect(Target, Auth, HostKeyPolicy, ConnectOptions)
//!   TCP (or direct-tcpip through a jump host) -- retried with backoff only while refused / no route
//!   -> key exchange -> host key checked against the policy (mismatch: hard error, nothing runs)
//!   -> auth: key files (ed25519, RSA, encrypted with DCFORM_SSH_PASSPHRASE), then ssh-agent
//! Session::run / exec(Command)  -- one channel per command, at most `max_channels` at once,
//!                                  streamed output, exit status/signal, timeout, `sudo -n` if not root
//! Session::upload(Upload)       -- streamed, sha256 checked remotely, atomic mv, skipped if present,
//!                                  retried on a new connection if the old one dies
//! ```
//!
//! Every command, its output and its result go to the per-host session log when one is given.

mod auth;
mod connect;
mod exec;
mod host_key;
mod keygen;
mod log;
mod pacing;
mod upload;

use std::path::PathBuf;
use std::time::Duration;

pub use exec::{Command, ExecOutput, OutputLine, OutputSink, OutputStream};
pub use upload::{Upload, UploadOutcome, UploadSource};

pub use connect::Session;
pub use keygen::{GeneratedKey, generate_ed25519};

use dc_support::retry::Backoff;

/// Environment variable holding the passphrase of encrypted private keys.
pub const PASSPHRASE_ENV: &str = "DCFORM_SSH_PASSPHRASE";

/// One SSH endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (22).
    pub port: u16,
    /// Login user; commands marked privileged run through `sudo -n` unless this is `root`.
    pub user: String,
    /// Bastion to tunnel through (direct-tcpip), if any.
    pub jump: Option<Box<JumpHost>>,
}

impl Target {
    /// A target on port 22 without a jump host.
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: 22,
            user: user.into(),
            jump: None,
        }
    }

    /// `user@host:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// A bastion host and how its own host key is checked. It is authenticated with the same
/// [`Auth`] as the target, and only the hop from it to the target is retried while booting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    /// Where the bastion is.
    pub target: Target,
    /// Host key policy for the bastion.
    pub host_key: HostKeyPolicy,
}

/// How the server's host key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only this key is accepted: an OpenSSH fingerprint `SHA256:...` (what dcform keeps in its state).
    Pinned(String),
    /// Accept whatever key the host shows now; the caller records [`Session::host_key`] and pins it next time.
    TrustOnFirstUse,
    /// Check against an OpenSSH known_hosts file; an unknown host is added to it (accept-new).
    KnownHosts(PathBuf),
    /// Accept any key. For throwaway test clusters only; callers must warn the user.
    InsecureSkip,
}

/// The host key a server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyInfo {
    /// Key algorithm, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// OpenSSH SHA-256 fingerprint, `SHA256:...`, suitable for [`HostKeyPolicy::Pinned`].
    pub fingerprint: String,
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA...`).
    pub openssh: String,
}

/// Credentials to try, in order: key files, then the ssh-agent.
#[derive(Clone, Default)]
pub struct Auth {
    /// Private key files (OpenSSH or PEM; ed25519, RSA, ECDSA; possibly encrypted).
    pub key_files: Vec<PathBuf>,
    /// Passphrase for encrypted key files.
    pub passphrase: Option<String>,
    /// ssh-agent socket to try after the key files (normally `SSH_AUTH_SOCK`).
    pub agent_socket: Option<PathBuf>,
}

impl std::fmt::Debug for Auth {
    // The passphrase must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("key_files", &self.key_files)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("agent_socket", &self.agent_socket)
            .finish()
    }
}

impl Auth {
    /// Key files plus the passphrase from `DCFORM_SSH_PASSPHRASE` and the agent from `SSH_AUTH_SOCK`.
    pub fn from_env(key_files: Vec<PathBuf>) -> Self {
        Self {
            key_files,
            passphrase: std::env::var(PASSPHRASE_ENV).ok().filter(|s| !s.is_empty()),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// True when the private key file is encrypted and cannot be used without a passphrase.
/// The CLI uses it to decide whether to ask for one (see [`prompt_passphrase`]).
pub fn key_needs_passphrase(path: &std::path::Path) -> Result<bool, SshError> {
    let text = std::fs::read_to_string(path).map_err(|e| SshError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    Ok(matches!(
        russh::keys::decode_secret_key(&text, None),
        Err(russh::keys::Error::KeyIsEncrypted)
    ))
}

/// Asks for the passphrase of `key` on the controlling terminal with echo off (`stty -echo`).
/// `Ok(None)` when there is no terminal (CI, pipes): then `DCFORM_SSH_PASSPHRASE` is the way.
/// Blocking; call it before connecting, never from many tasks at once.
pub fn prompt_passphrase(key: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::{BufRead, Write};
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Ok(None);
    };
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(tty.try_clone()?)
            .status()
    };
    let mut out = tty.try_clone()?;
    write!(out, "Passphrase for {}: ", key.display())?;
    out.flush()?;
    let echo_off = stty("-echo").map(|s| s.success()).unwrap_or(false);
    let mut line = String::new();
    let read = std::io::BufReader::new(tty.try_clone()?).read_line(&mut line);
    // Echo comes back on whatever happened to the read.
    if echo_off {
        let _ = stty("echo");
    }
    writeln!(out)?;
    read?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// Connection tuning.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bound of one TCP connect plus SSH handshake.
    pub connect_timeout: Duration,
    /// Retries while the host is still booting (refused / no route / reset during handshake).
    pub boot_retry: Backoff,
    /// SSH keepalive interval (3 missed replies close the connection).
    pub keepalive: Duration,
    /// Channels open at once on one connection; OpenSSH's `MaxSessions` defaults to 10.
    pub max_channels: usize,
    /// Per-host session log (appended), e.g. `.dcform/<cluster>/logs/<node>.log`.
    pub log_path: Option<PathBuf>,
    /// Attempts of an upload (or idempotent command) whose connection died.
    pub reconnect_attempts: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            boot_retry: Backoff::new(Duration::from_millis(250), Duration::from_secs(3))
                .attempts(30),
            keepalive: Duration::from_secs(15),
            max_channels: 8,
            log_path: None,
            reconnect_attempts: 3,
        }
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(u32),
    /// Killed by this signal (e.g. `KILL`).
    Signal(String),
    /// The channel closed without a status (connection lost or server refused).
    Unknown,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
            ExitStatus::Unknown => f.write_str("no exit status"),
        }
    }
}

/// Errors of the SSH engine. Every variant names the host; command errors name the step.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host could not be reached (after the boot retries).
    #[error("cannot connect to {host}:{port} after {attempts} attempt(s)")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Attempts made.
        attempts: u32,
        /// Last cause.
        #[source]
        source: std::io::Error,
    },
    /// The SSH protocol failed (handshake, channel, disconnect).
    #[error("ssh protocol error with {host} during {during}")]
    Protocol {
        /// Host.
        host: String,
        /// What was being done.
        during: String,
        /// The cause (the SSH library's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server's host key is not the one expected. Nothing was run on the host.
    #[error(
        "host key of {host} changed: expected {expected}, got {actual} ({algorithm}); refusing to run \
         anything there (if the machine was legitimately replaced, remove its recorded host key)"
    )]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// Fingerprint(s) expected.
        expected: String,
        /// Fingerprint presented.
        actual: String,
        /// Algorithm of the presented key.
        algorithm: String,
    },
    /// The bastion's host key is not the one expected. Nothing was sent to the target behind it.
    #[error(
        "host key of the bastion {bastion} changed: expected {expected}, got {actual} ({algorithm}); \
         refusing to connect through it to {target} (if the bastion was legitimately replaced, remove \
         its recorded host key)"
    )]
    BastionHostKeyMismatch {
        /// The bastion, `user@host:port`.
        bastion: String,
        /// The host that was to be reached through it.
        target: String,
        /// Fingerprint(s) expected.
        expected: String,
        /// Fingerprint presented.
        actual: String,
        /// Algorithm of the presented key.
        algorithm: String,
    },
    /// The known_hosts file could not be used.
    #[error("known_hosts file {path}: {reason}")]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A private key file could not be loaded.
    #[error("private key {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong (never includes the passphrase).
        reason: String,
    },
    /// The server refused every key offered.
    #[error("authentication failed for {user}@{host}: server refused {}", tried_list(.tried))]
    AuthFailed {
        /// Login user.
        user: String,
        /// Host.
        host: String,
        /// Keys offered, with fingerprints.
        tried: Vec<String>,
    },
    /// A command did not finish in time.
    #[error("step {step} on {host}: command timed out after {after:?}")]
    Timeout {
        /// Host.
        host: String,
        /// Step.
        step: String,
        /// The limit.
        after: Duration,
    },
    /// `sudo -n` refused because it wants a password.
    #[error(
        "step {step} on {host}: user {user} needs passwordless sudo (sudo -n asked for a password); \
         log in as root or allow NOPASSWD for {user}"
    )]
    SudoNeedsPassword {
        /// Host.
        host: String,
        /// Login user.
        user: String,
        /// Step.
        step: String,
    },
    /// A command ended unsuccessfully.
    #[error("step {step} on {host} failed ({status}); last output:\n{tail}{}", log_hint(.log))]
    CommandFailed {
        /// Host.
        host: String,
        /// Step.
        step: String,
        /// How it ended.
        status: ExitStatus,
        /// Last 20 lines of its output.
        tail: String,
        /// The session log, if kept.
        log: Option<PathBuf>,
    },
    /// The uploaded file did not arrive intact.
    #[error("upload of {dest} to {host}: sha256 mismatch on the remote side (expected {expected})")]
    HashMismatch {
        /// Host.
        host: String,
        /// Remote path.
        dest: String,
        /// Local hash.
        expected: String,
    },
    /// Local file work failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        "no keys were available (give a key file or start ssh-agent)".into()
    } else {
        tried.join(", ")
    }
}

fn log_hint(log: &Option<PathBuf>) -> String {
    log.as_ref()
        .map(|p| format!("\n(full log: {})", p.display()))
        .unwrap_or_default()
}

impl SshError {
    /// True for failures the user must fix (credentials, host keys, sudo rights) rather than retry.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            SshError::HostKeyMismatch { .. }
                | SshError::BastionHostKeyMismatch { .. }
                | SshError::KeyFile { .. }
                | SshError::AuthFailed { .. }
                | SshError::SudoNeedsPassword { .. }
                | SshError::KnownHosts { .. }
        )
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_wraps_the_rest() {
        assert_eq!(
            shell_quote("/usr/local/bin/dccore"),
            "/usr/local/bin/dccore"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn auth_failure_names_user_host_and_keys() {
        let e = SshError::AuthFailed {
            user: "root".into(),
            host: "10.0.0.5".into(),
            tried: vec!["/k/id (ssh-ed25519 SHA256:abc)".into()],
        };
        let s = e.to_string();
        assert!(s.contains("root@10.0.0.5") && s.contains("/k/id") && s.contains("authentication"));
        assert!(e.is_user_error());
    }

    #[test]
    fn auth_debug_never_shows_the_passphrase() {
        let a = Auth {
            passphrase: Some("hunter2".into()),
            ..Auth::default()
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
