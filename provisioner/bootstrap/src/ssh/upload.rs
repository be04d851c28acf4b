//! Uploads: streamed over one channel into a temp file next to the destination, sha256 checked on
//! the far side, then moved into place atomically. Skipped when the destination already has the
//! same content and mode; retried on a new connection when the connection dies mid-way.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::connect::{Session, error_chain};

use super::{SshError, shell_quote};

/// What to upload.
#[derive(Debug, Clone)]
pub enum UploadSource {
    /// A local file, streamed.
    File(PathBuf),
    /// Bytes in memory (rendered configs, tokens). Never logged.
    Bytes(Vec<u8>),
}

/// One upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Step name for errors and the log.
    pub step: String,
    /// Content.
    pub source: UploadSource,
    /// Absolute remote path.
    pub dest: String,
    /// File mode, e.g. `0o755`.
    pub mode: u32,
    /// Write as root (`sudo -n` for other users).
    pub privileged: bool,
    /// Limit for one attempt.
    pub timeout: Duration,
}

impl Upload {
    /// An upload with a 10-minute timeout per attempt.
    pub fn new(
        step: impl Into<String>,
        source: UploadSource,
        dest: impl Into<String>,
        mode: u32,
    ) -> Self {
        Self {
            step: step.into(),
            source,
            dest: dest.into(),
            mode,
            privileged: false,
            timeout: Duration::from_secs(600),
        }
    }

    /// Writes as root.
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The file was written (`attempts` > 1 when a connection died and it was retried).
    Uploaded {
        /// sha256 (hex) of the content.
        sha256: String,
        /// Size in bytes.
        bytes: u64,
        /// Attempts it took.
        attempts: u32,
    },
    /// The destination already had this content and mode: nothing was sent.
    AlreadyPresent {
        /// sha256 (hex) of the content.
        sha256: String,
    },
}

impl UploadOutcome {
    /// True when the remote file changed.
    pub fn changed(&self) -> bool {
        matches!(self, UploadOutcome::Uploaded { .. })
    }
}

/// Read size for streamed files.
const CHUNK: usize = 1 << 20;

/// Exit status the receiving script uses for a hash mismatch.
const HASH_MISMATCH: u32 = 86;

async fn local_hash(src: &UploadSource) -> Result<(String, u64), std::io::Error> {
    match src {
        UploadSource::Bytes(b) => Ok((hex::encode(Sha256::digest(b)), b.len() as u64)),
        UploadSource::File(p) => {
            let mut f = tokio::fs::File::open(p).await?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut n_total = 0u64;
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                n_total += n as u64;
            }
            Ok((hex::encode(h.finalize()), n_total))
        }
    }
}

/// Marker lines of the receiving script: the first line it prints says whether to send.
const HAVE: &str = "DCFORM_UPLOAD_HAVE";
const NEED: &str = "DCFORM_UPLOAD_NEED";

/// How one transfer attempt ended.
struct Attempt {
    status: super::ExitStatus,
    tail: Vec<String>,
    /// The destination already had the content: nothing was sent.
    skipped: bool,
}

impl Session {
    /// Uploads a file (see the module doc). Returns whether anything was written.
    ///
    /// One channel per attempt: the receiving script first compares the destination's sha256
    /// and mode and answers "have" (nothing is sent) or "need"; then it receives the stream into
    /// a temp file beside the destination (same filesystem, so the final `mv` is atomic), checks
    /// the hash and moves it into place. A dead connection leaves a short temp file whose hash
    /// fails; the trap removes it, and the attempt is repeated on a new connection.
    pub async fn upload(&self, up: &Upload) -> Result<UploadOutcome, SshError> {
        let (sha, bytes) = local_hash(&up.source)
            .await
            .map_err(|source| SshError::Io {
                what: format!("read upload source for {}", up.dest),
                source,
            })?;
        let dest = shell_quote(&up.dest);
        let mode = format!("{:o}", up.mode);
        let script = format!(
            "set -eu\n\
             dest={dest}\n\
             # openssl uses the CPU's SHA instructions (several times faster than coreutils); sha256sum otherwise.\n\
             h() {{ if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r \"$1\"; else sha256sum \"$1\"; fi | cut -c1-64; }}\n\
             if [ -f \"$dest\" ] && [ \"$(h \"$dest\") $(stat -c %a \"$dest\")\" = \"{sha} {mode}\" ]; then\n\
               echo {HAVE}; exit 0\n\
             fi\n\
             echo {NEED}\n\
             tmp=\"$dest.dcform-upload.$$\"\n\
             mkdir -p \"$(dirname \"$dest\")\"\n\
             trap 'rm -f \"$tmp\"' EXIT\n\
             trap 'exit 1' HUP INT TERM PIPE\n\
             cat > \"$tmp\"\n\
             got=$(h \"$tmp\")\n\
             if [ \"$got\" != {sha} ]; then echo \"sha256 mismatch: got $got\" >&2; exit {HASH_MISMATCH}; fi\n\
             chmod {mode} \"$tmp\"\n\
             mv -f \"$tmp\" \"$dest\"\n\
             trap - EXIT\n\
             echo \"installed $dest sha256 $got\"\n"
        );
        let wrapped = self.wrap(&script, up.privileged);
        let attempts = self.opts.reconnect_attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let (handle, generation) = self.current().await;
            self.log.line(&format!(
                "[{}] upload {bytes} bytes to {} (attempt {n})",
                up.step, up.dest
            ));
            let res =
                tokio::time::timeout(up.timeout, self.stream_once(&handle, &wrapped, &up.source))
                    .await;
            let res = match res {
                Ok(r) => r,
                Err(_) => {
                    return Err(SshError::Timeout {
                        host: self.target.host.clone(),
                        step: up.step.clone(),
                        after: up.timeout,
                    });
                }
            };
            match res {
                Ok(Some(Attempt {
                    status,
                    tail,
                    skipped,
                })) => {
                    let out = super::ExecOutput {
                        status: status.clone(),
                        stdout: String::new(),
                        stderr: tail.join("\n"),
                        tail,
                    };
                    if out.success() && skipped {
                        self.log.line(&format!(
                            "[{}] {} already has sha256 {sha}; skipped",
                            up.step, up.dest
                        ));
                        return Ok(UploadOutcome::AlreadyPresent { sha256: sha });
                    }
                    if out.success() {
                        return Ok(UploadOutcome::Uploaded {
                            sha256: sha,
                            bytes,
                            attempts: n,
                        });
                    }
                    if status == super::ExitStatus::Code(HASH_MISMATCH) && !handle.is_closed() {
                        return Err(SshError::HashMismatch {
                            host: self.target.host.clone(),
                            dest: up.dest.clone(),
                            expected: sha,
                        });
                    }
                    if up.privileged
                        && self.target.user != "root"
                        && (out.stderr.contains("a password is required")
                            || out.stderr.contains("a terminal is required"))
                    {
                        return Err(SshError::SudoNeedsPassword {
                            host: self.target.host.clone(),
                            user: self.target.user.clone(),
                            step: up.step.clone(),
                        });
                    }
                    if !handle.is_closed() {
                        return Err(self.command_failed(&up.step, &out));
                    }
                    // Connection died: fall through to reconnect.
                }
                Ok(None) => {}
                Err(e) => {
                    self.log
                        .line(&format!("[{}] transfer interrupted: {e}", up.step));
                }
            }
            if n >= attempts {
                return Err(SshError::Protocol {
                    host: self.target.host.clone(),
                    during: format!("upload of {} (step {})", up.dest, up.step),
                    source: format!("connection lost {n} time(s)").into(),
                });
            }
            self.reconnect(generation).await?;
        }
    }

    /// One attempt. `Ok(None)`: the connection was lost before the script finished.
    async fn stream_once(
        &self,
        handle: &russh::client::Handle<super::connect::Client>,
        wrapped: &str,
        src: &UploadSource,
    ) -> Result<Option<Attempt>, String> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| "session closed".to_string())?;
        let e = |e: russh::Error| error_chain(&e);
        let mut ch = self.open_channel(handle).await.map_err(e)?;
        let transfer = async {
            ch.exec(true, wrapped.as_bytes()).await.map_err(e)?;
            let mut status = None;
            let mut lines: Vec<String> = Vec::new();
            let mut partial = Vec::new();
            // Phase 1: wait for the script's verdict (or its early end, e.g. sudo refusing).
            let mut verdict = None;
            while verdict.is_none() {
                let Some(msg) = ch.wait().await else { break };
                match msg {
                    russh::ChannelMsg::Data { data } => {
                        partial.extend_from_slice(&data);
                        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = partial.drain(..=pos).collect();
                            let line = String::from_utf8_lossy(&line[..pos]).trim().to_string();
                            if line == HAVE || line == NEED {
                                verdict = Some(line == HAVE);
                                break;
                            }
                            lines.push(line);
                        }
                    }
                    russh::ChannelMsg::ExtendedData { data, .. } => {
                        lines.extend(String::from_utf8_lossy(&data).lines().map(str::to_string));
                    }
                    russh::ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(super::ExitStatus::Code(exit_status))
                    }
                    russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(super::ExitStatus::Signal(format!("{signal_name:?}")))
                    }
                    _ => {}
                }
            }
            let skipped = verdict == Some(true);
            // Phase 2: send the content only when asked for it.
            if verdict == Some(false) {
                self.send_source(&ch, src).await?;
            }
            if verdict.is_some() {
                ch.eof().await.map_err(e)?;
            }
            while let Some(msg) = ch.wait().await {
                match msg {
                    russh::ChannelMsg::Data { data }
                    | russh::ChannelMsg::ExtendedData { data, .. } => {
                        lines.extend(String::from_utf8_lossy(&data).lines().map(str::to_string));
                    }
                    russh::ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(super::ExitStatus::Code(exit_status))
                    }
                    russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(super::ExitStatus::Signal(format!("{signal_name:?}")))
                    }
                    _ => {}
                }
            }
            for l in &lines {
                self.log.line(&format!("  | {l}"));
            }
            Ok::<_, String>((status, lines, skipped))
        };
        let (status, mut tail, skipped) = tokio::select! {
            r = transfer => r?,
            _ = super::connect::closed(handle) => return Ok(None),
        };
        let keep = tail.len().saturating_sub(20);
        Ok(status.map(|status| Attempt {
            status,
            tail: tail.split_off(keep),
            skipped,
        }))
    }

    /// Streams the content in 1 MiB owned buffers: `data(reader)` would copy through an 8 KiB
    /// buffer with one blocking-pool round trip per read, which caps a single stream far below
    /// what the link and the ciphers can do.
    async fn send_source(
        &self,
        ch: &russh::Channel<russh::client::Msg>,
        src: &UploadSource,
    ) -> Result<(), String> {
        let e = |e: russh::Error| error_chain(&e);
        match src {
            UploadSource::Bytes(b) => ch.data_bytes(b.clone()).await.map_err(e),
            UploadSource::File(p) => {
                let mut f = tokio::fs::File::open(p)
                    .await
                    .map_err(|err| format!("open {}: {err}", p.display()))?;
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let mut filled = 0;
                    while filled < CHUNK {
                        let n = f
                            .read(&mut buf[filled..])
                            .await
                            .map_err(|err| format!("read {}: {err}", p.display()))?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    if filled == 0 {
                        return Ok(());
                    }
                    buf.truncate(filled);
                    ch.data_bytes(buf).await.map_err(e)?;
                    if filled < CHUNK {
                        return Ok(());
                    }
                }
            }
        }
    }
}
