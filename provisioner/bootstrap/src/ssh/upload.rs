//! Uploads: streamed over one channel into a temp file next to the destination, sha256 checked on
//! the far side, then moved into place atomically. Skipped when the destination already has the
//! same content and mode; retried on a new connection when the connection dies mid-way.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::connect::Session;
use super::pacing::{PACE_STALL, Pacer, Pieces};
use dc_support::error::chain;

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

/// Exit status the receiving script uses for a hash mismatch.
const HASH_MISMATCH: u32 = 86;

/// What identifies one version of a local file: path, size, modification time and inode.
type FileKey = (PathBuf, u64, std::time::SystemTime, u64);

/// Hashes of local files already read by this process. One apply uploads the same `dccore` to
/// every host; hashing it once instead of once per host saves a full read and sha256 per host.
static HASHED: std::sync::Mutex<Vec<(FileKey, String)>> = std::sync::Mutex::new(Vec::new());

fn file_key(p: &std::path::Path, meta: &std::fs::Metadata) -> Option<FileKey> {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0;
    Some((p.to_path_buf(), meta.len(), meta.modified().ok()?, ino))
}

async fn local_hash(src: &UploadSource) -> Result<(String, u64), std::io::Error> {
    match src {
        UploadSource::Bytes(b) => Ok((hex::encode(Sha256::digest(b)), b.len() as u64)),
        UploadSource::File(p) => {
            let mut f = tokio::fs::File::open(p).await?;
            let key = file_key(p, &f.metadata().await?);
            if let Some(key) = &key {
                let known = HASHED.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, sha)) = known.iter().find(|(k, _)| k == key) {
                    return Ok((sha.clone(), key.1));
                }
            }
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
            let sha = hex::encode(h.finalize());
            // Remember it only if the file did not change while we read it.
            let after = file_key(p, &tokio::fs::metadata(p).await?);
            if let Some(key) = key.filter(|k| after.as_ref() == Some(k) && k.1 == n_total) {
                let mut known = HASHED.lock().unwrap_or_else(|e| e.into_inner());
                known.retain(|(k, _)| k.0 != key.0);
                known.push((key, sha.clone()));
            }
            Ok((sha, n_total))
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
        handle: &russh::client::Handle<super::host_key::Client>,
        wrapped: &str,
        src: &UploadSource,
    ) -> Result<Option<Attempt>, String> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| "session closed".to_string())?;
        let e = |e: russh::Error| chain(&e);
        let mut ch = self.open_channel(handle).await.map_err(e)?;
        let transfer = async {
            ch.exec(true, wrapped.as_bytes()).await.map_err(e)?;
            let mut status = None;
            let mut lines: Vec<String> = Vec::new();
            let mut partial = Vec::new();
            // Phase 1: wait for the script's verdict (or its early end, e.g. sudo refusing).
            let mut verdict = None;
            // The window before any data is sent: OpenSSH opens a session channel with none and
            // grants its full window once the command runs, before the command's first output.
            let mut window = None;
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
                    russh::ChannelMsg::WindowAdjusted { new_size } => window = Some(new_size),
                    _ => {}
                }
            }
            let skipped = verdict == Some(true);
            // Phase 2: send the content only when asked for it.
            if verdict == Some(false) {
                let pacer = Pacer::new(window, self.rtt().await);
                self.send_paced(&mut ch, src, pacer, &mut lines, &mut status)
                    .await?;
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

    /// Streams the content, paced so that at most [`PACE_LIMIT`](super::pacing::PACE_LIMIT) bytes wait unconsumed on the
    /// far side (see [`Pacer`]). Output and the exit status
    /// that arrive meanwhile go to `lines` and `status`; an early exit stops the stream.
    async fn send_paced(
        &self,
        ch: &mut russh::Channel<russh::client::Msg>,
        src: &UploadSource,
        mut pacer: Pacer,
        lines: &mut Vec<String>,
        status: &mut Option<super::ExitStatus>,
    ) -> Result<(), String> {
        let e = |e: russh::Error| chain(&e);
        let mut pieces = Pieces::open(src).await?;
        loop {
            if pacer.may_send() {
                let Some(piece) = pieces.next().await? else {
                    return Ok(());
                };
                pacer.sent(piece.len());
                ch.data_bytes(piece).await.map_err(e)?;
                continue;
            }
            match tokio::time::timeout(PACE_STALL, ch.wait()).await {
                Err(_) => pacer.stalled(),
                Ok(Some(russh::ChannelMsg::WindowAdjusted { new_size })) => {
                    pacer.adjusted(new_size)
                }
                Ok(Some(
                    russh::ChannelMsg::Data { data } | russh::ChannelMsg::ExtendedData { data, .. },
                )) => lines.extend(String::from_utf8_lossy(&data).lines().map(str::to_string)),
                Ok(Some(russh::ChannelMsg::ExitStatus { exit_status })) => {
                    *status = Some(super::ExitStatus::Code(exit_status));
                    return Ok(());
                }
                Ok(Some(russh::ChannelMsg::ExitSignal { signal_name, .. })) => {
                    *status = Some(super::ExitStatus::Signal(format!("{signal_name:?}")));
                    return Ok(());
                }
                Ok(Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close)) | Ok(None) => {
                    return Ok(());
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[tokio::test]
    async fn a_file_is_hashed_once_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dccore");
        std::fs::write(&p, b"first version").unwrap();
        let src = UploadSource::File(p.clone());
        assert_eq!(local_hash(&src).await.unwrap(), (sha(b"first version"), 13));
        let cached = HASHED.lock().unwrap().iter().any(|(k, _)| k.0 == p);
        assert!(cached, "the hash is remembered for this file");
        // A new version (new size, new mtime) is hashed again, and replaces the old entry.
        std::fs::write(&p, b"second, longer version").unwrap();
        assert_eq!(
            local_hash(&src).await.unwrap(),
            (sha(b"second, longer version"), 22)
        );
        let entries = HASHED
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.0 == p)
            .count();
        assert_eq!(entries, 1);
    }
}
