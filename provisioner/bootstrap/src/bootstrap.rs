//! The bootstrap sequence of one node over an open [`Session`]:
//!
//! ```text
//! preflight -> upload dccore (sha256, skipped if present) -> write config + token -> install + start
//! ```
//!
//! Each step is idempotent, so a re-run after a failure (or on a healthy node) converges; a run
//! that changes nothing reports `changed == false`. Uninstall stops the role and removes every
//! file, directory and unit the install made.

use std::path::Path;

use crate::templates::{InstallParams, RenderedInstall, TemplateError, render};
use crate::ssh::{Command, Session, SshError, Upload, UploadOutcome, UploadSource};

/// One step of the sequence, carried by progress events and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// OS, arch, disk, ports, clock checks.
    Preflight,
    /// Upload of the dccore binary.
    UploadCore,
    /// Config file and join token.
    WriteConfig,
    /// Directories, unit or supervisor, start.
    Install,
    /// Stop and remove everything.
    Uninstall,
}

impl Step {
    /// Step name as shown to users and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::UploadCore => "upload-dccore",
            Step::WriteConfig => "write-config",
            Step::Install => "install",
            Step::Uninstall => "uninstall",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cluster join token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(String);

impl JoinToken {
    /// Wraps a token value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for writing the token file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A progress event.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Node address.
    pub node: &'a str,
    /// Step.
    pub step: Step,
    /// What happened (one line).
    pub message: &'a str,
}

/// How the role is kept running on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceManager {
    /// A systemd unit.
    Systemd,
    /// `dccore supervise` (hosts without systemd, e.g. containers).
    Supervise,
}

/// What a bootstrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    /// False when the node was already installed as asked and running: nothing changed.
    pub changed: bool,
    /// Whether the service was (re)started.
    pub started: bool,
    /// How the role runs.
    pub manager: ServiceManager,
    /// The dccore upload.
    pub core: UploadOutcome,
    /// Preflight lines (`PASS ...`).
    pub preflight: Vec<String>,
}

/// What an uninstall did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallReport {
    /// Paths removed (0: nothing was installed).
    pub removed: u32,
}

/// Errors of the bootstrap, naming node and step.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Rendering failed (bad parameters).
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Preflight checks failed; nothing was installed.
    #[error("node {node}: preflight failed:\n{}{}", .failed.join("\n"), log_hint(.log))]
    Preflight {
        /// Node.
        node: String,
        /// The `FAIL ...` lines.
        failed: Vec<String>,
        /// Session log.
        log: Option<std::path::PathBuf>,
    },
    /// A step failed on the node.
    #[error("node {node}: step {step} failed")]
    Step {
        /// Node.
        node: String,
        /// Step.
        step: Step,
        /// The cause, with exit status and output tail.
        #[source]
        source: SshError,
    },
    /// The install script ended without its result line.
    #[error("node {node}: step {step} gave no result line; output:\n{output}")]
    NoResult {
        /// Node.
        node: String,
        /// Step.
        step: Step,
        /// Output tail.
        output: String,
    },
}

fn log_hint(log: &Option<std::path::PathBuf>) -> String {
    log.as_ref()
        .map(|p| format!("\n(full log: {})", p.display()))
        .unwrap_or_default()
}

impl BootstrapError {
    /// True for failures the user must fix (host keys, credentials, sudo, failed preflight, bad input).
    pub fn is_user_error(&self) -> bool {
        match self {
            BootstrapError::Template(_) | BootstrapError::Preflight { .. } => true,
            BootstrapError::Step { source, .. } => source.is_user_error(),
            BootstrapError::NoResult { .. } => false,
        }
    }
}

/// The progress callback type.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress<'_>) + Send + Sync);

/// Bootstraps one node: preflight, upload dccore, write config and token, install and start.
/// Idempotent; the report says whether anything changed.
pub async fn bootstrap_node(
    session: &Session,
    params: &InstallParams,
    token: &JoinToken,
    dccore: &Path,
    progress: ProgressFn<'_>,
) -> Result<BootstrapReport, BootstrapError> {
    let r = render(params)?;
    let node = params.node.as_str();
    let say = |step: Step, message: &str| {
        session.log_line(&format!("== {step}: {message}"));
        progress(Progress {
            node,
            step,
            message,
        });
    };
    let fail = |step: Step| {
        move |source: SshError| BootstrapError::Step {
            node: node.to_string(),
            step,
            source,
        }
    };

    // 1. Preflight: read-only checks, one PASS/FAIL line each.
    say(
        Step::Preflight,
        "checking OS, architecture, disk, ports and clock",
    );
    let out = session
        .exec(&script(Step::Preflight, "sh -s", &r.preflight))
        .await
        .map_err(fail(Step::Preflight))?;
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for line in out.stdout.lines() {
        if line.starts_with("PASS ") {
            say(Step::Preflight, line);
            passed.push(line.to_string());
        } else if line.starts_with("FAIL ") {
            say(Step::Preflight, line);
            failed.push(line.to_string());
        }
    }
    if !failed.is_empty() || !out.success() {
        if failed.is_empty() {
            failed = out.tail.clone();
        }
        return Err(BootstrapError::Preflight {
            node: node.to_string(),
            failed,
            log: session.log_path(),
        });
    }

    // 2. The binary: skipped when the same hash is already installed.
    let core = session
        .upload(
            &Upload::new(
                Step::UploadCore.name(),
                UploadSource::File(dccore.to_path_buf()),
                r.paths.bin.clone(),
                0o755,
            )
            .privileged(),
        )
        .await
        .map_err(fail(Step::UploadCore))?;
    say(
        Step::UploadCore,
        &match &core {
            UploadOutcome::Uploaded { bytes, sha256, .. } => {
                format!("uploaded dccore ({bytes} bytes, sha256 {})", &sha256[..12])
            }
            UploadOutcome::AlreadyPresent { sha256 } => {
                format!(
                    "dccore already installed (sha256 {}); skipped",
                    &sha256[..12]
                )
            }
        },
    );

    // 3. Config and token (the token only ever travels as file content, never in a command line).
    let cfg = session
        .upload(
            &Upload::new(
                Step::WriteConfig.name(),
                UploadSource::Bytes(r.config.clone().into_bytes()),
                r.paths.config_file.clone(),
                0o644,
            )
            .privileged(),
        )
        .await
        .map_err(fail(Step::WriteConfig))?;
    let tok = session
        .upload(
            &Upload::new(
                Step::WriteConfig.name(),
                UploadSource::Bytes(format!("{}\n", token.expose()).into_bytes()),
                r.paths.token_file.clone(),
                0o600,
            )
            .privileged(),
        )
        .await
        .map_err(fail(Step::WriteConfig))?;
    let files_changed = core.changed() || cfg.changed() || tok.changed();
    say(
        Step::WriteConfig,
        if cfg.changed() || tok.changed() {
            "wrote config and token"
        } else {
            "config and token unchanged"
        },
    );

    // 4. Install and start.
    let (changed, started, manager) = install(session, &r, files_changed, node, &say).await?;
    Ok(BootstrapReport {
        changed: changed || files_changed,
        started,
        manager,
        core,
        preflight: passed,
    })
}

async fn install(
    session: &Session,
    r: &RenderedInstall,
    files_changed: bool,
    node: &str,
    say: &(dyn Fn(Step, &str) + Send + Sync),
) -> Result<(bool, bool, ServiceManager), BootstrapError> {
    let cmd = format!("CHANGED={} sh -s", u8::from(files_changed));
    let out = session
        .run(&script(Step::Install, &cmd, &r.install))
        .await
        .map_err(|source| BootstrapError::Step {
            node: node.to_string(),
            step: Step::Install,
            source,
        })?;
    for line in out.stdout.lines().filter(|l| l.starts_with("install: ")) {
        say(Step::Install, line.trim_start_matches("install: "));
    }
    let result = result_line(&out.stdout).ok_or_else(|| BootstrapError::NoResult {
        node: node.to_string(),
        step: Step::Install,
        output: out.tail.join("\n"),
    })?;
    let manager = if field(result, "manager") == Some("systemd") {
        ServiceManager::Systemd
    } else {
        ServiceManager::Supervise
    };
    Ok((
        field(result, "changed") == Some("1"),
        field(result, "started") == Some("1"),
        manager,
    ))
}

/// Stops the role and removes every file, directory and unit its install made. Idempotent.
pub async fn uninstall_node(
    session: &Session,
    params: &InstallParams,
    progress: ProgressFn<'_>,
) -> Result<UninstallReport, BootstrapError> {
    let r = render(params)?;
    let node = params.node.as_str();
    let out = session
        .run(&script(Step::Uninstall, "sh -s", &r.uninstall))
        .await
        .map_err(|source| BootstrapError::Step {
            node: node.to_string(),
            step: Step::Uninstall,
            source,
        })?;
    for line in out.stdout.lines().filter(|l| l.starts_with("uninstall: ")) {
        let m = line.trim_start_matches("uninstall: ");
        session.log_line(&format!("== uninstall: {m}"));
        progress(Progress {
            node,
            step: Step::Uninstall,
            message: m,
        });
    }
    let result = result_line(&out.stdout).ok_or_else(|| BootstrapError::NoResult {
        node: node.to_string(),
        step: Step::Uninstall,
        output: out.tail.join("\n"),
    })?;
    Ok(UninstallReport {
        removed: field(result, "removed")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// A rendered script fed on stdin to `cmd`, as root, safe to re-run after a lost connection.
fn script(step: Step, cmd: &str, body: &str) -> Command {
    Command::new(step.name(), cmd)
        .stdin(body.as_bytes().to_vec())
        .privileged()
        .idempotent()
}

fn result_line(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("DCFORM_RESULT "))
}

fn field<'a>(result: &'a str, key: &str) -> Option<&'a str> {
    result
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The architecture of an ELF binary (`x86_64`, `aarch64`, ...), `None` if it is not ELF.
/// Used to set [`InstallParams::binary_arch`] from the dccore binary being uploaded.
pub fn detect_binary_arch(path: &Path) -> std::io::Result<Option<&'static str>> {
    use std::io::Read;
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    if n < 20 || &head[..4] != b"\x7fELF" {
        return Ok(None);
    }
    // e_machine at offset 18; byte order from EI_DATA (1 = little endian).
    let m = if head[5] == 1 {
        u16::from_le_bytes([head[18], head[19]])
    } else {
        u16::from_be_bytes([head[18], head[19]])
    };
    Ok(match m {
        0x3e => Some("x86_64"),
        0xb7 => Some("aarch64"),
        0x03 => Some("i686"),
        0x28 => Some("armv7l"),
        0xf3 => Some("riscv64"),
        0x15 => Some("ppc64le"),
        0x16 => Some("s390x"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The executor spawns bootstraps on a multi-threaded runtime: the futures must be `Send`.
    #[allow(dead_code, reason = "compile-time check only")]
    fn bootstrap_futures_are_send(s: &Session, p: &InstallParams, t: &JoinToken, bin: &Path) {
        assert_send(&bootstrap_node(s, p, t, bin, &|_| {}));
        assert_send(&uninstall_node(s, p, &|_| {}));
    }

    #[test]
    fn result_fields_are_parsed_from_the_last_result_line() {
        let out = "install: x\nDCFORM_RESULT changed=0 started=1 manager=supervise\n";
        let r = result_line(out).expect("result");
        assert_eq!(field(r, "changed"), Some("0"));
        assert_eq!(field(r, "started"), Some("1"));
        assert_eq!(field(r, "manager"), Some("supervise"));
        assert_eq!(field(r, "nope"), None);
    }

    #[test]
    fn join_token_never_prints_its_value() {
        let t = JoinToken::new("tok-123-secret");
        assert!(!format!("{t:?} {t}").contains("tok-123"));
        assert_eq!(t.expose(), "tok-123-secret");
    }

    #[test]
    fn detects_the_architecture_of_the_running_test_binary() {
        let exe = std::env::current_exe().expect("current exe");
        let arch = detect_binary_arch(&exe).expect("read");
        assert_eq!(arch, Some(std::env::consts::ARCH));
        let script = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(script.path(), "#!/bin/sh\n").expect("write");
        assert_eq!(detect_binary_arch(script.path()).expect("read"), None);
    }
}
