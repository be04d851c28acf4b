//! Running commands: one channel per command, output streamed line by line, status, timeout, sudo.

use std::collections::VecDeque;
use std::time::Duration;

use russh::ChannelMsg;

use super::connect::Session;
use super::{ExitStatus, SshError, shell_quote};
use dc_support::error::chain;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a command's output, as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// Host it came from.
    pub host: String,
    /// Step it belongs to.
    pub step: String,
    /// Stream.
    pub stream: OutputStream,
    /// The line, without its newline.
    pub line: String,
}

/// Where streamed output lines go.
pub type OutputSink = tokio::sync::mpsc::UnboundedSender<OutputLine>;

/// A command to run on the host (a shell script, run by the login shell).
#[derive(Debug, Clone)]
pub struct Command {
    /// Step name, carried by errors and the log.
    pub step: String,
    /// The shell script. It is written to the session log, so it must not hold secrets: pass
    /// secrets through `stdin` or an uploaded file.
    pub script: String,
    /// Bytes fed to the command's standard input (never logged).
    pub stdin: Option<Vec<u8>>,
    /// Run as root: through `sudo -n` when the login user is not root.
    pub privileged: bool,
    /// Limit for the whole command.
    pub timeout: Duration,
    /// Safe to run again: retried on a new connection if the connection dies under it.
    pub idempotent: bool,
    /// Receives each output line as it arrives.
    pub sink: Option<OutputSink>,
}

impl Command {
    /// A command with a 5-minute timeout, unprivileged, not retried.
    pub fn new(step: impl Into<String>, script: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            script: script.into(),
            stdin: None,
            privileged: false,
            timeout: Duration::from_secs(300),
            idempotent: false,
            sink: None,
        }
    }

    /// Runs as root (`sudo -n` for other users).
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }

    /// Feeds `data` to standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Marks the command safe to re-run after a lost connection.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Streams output lines to `sink`.
    pub fn sink(mut self, sink: Option<OutputSink>) -> Self {
        self.sink = sink;
        self
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (capped at 4 MiB).
    pub stdout: String,
    /// Everything it wrote to stderr (capped at 4 MiB).
    pub stderr: String,
    /// The last 20 lines of both streams, interleaved as they arrived.
    pub tail: Vec<String>,
}

impl ExecOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }
}

const CAP: usize = 4 << 20;
const TAIL_LINES: usize = 20;

/// Collects output: splits into lines for the sink, the log and the tail.
struct Collector<'a> {
    session: &'a Session,
    step: &'a str,
    sink: Option<&'a OutputSink>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl Collector<'_> {
    fn push(&mut self, stream: OutputStream, data: &[u8]) {
        let (buf, idx) = match stream {
            OutputStream::Stdout => (&mut self.stdout, 0),
            OutputStream::Stderr => (&mut self.stderr, 1),
        };
        if buf.len() < CAP {
            buf.extend_from_slice(&data[..data.len().min(CAP - buf.len())]);
        }
        self.partial[idx].extend_from_slice(data);
        while let Some(pos) = self.partial[idx].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial[idx].drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.emit(stream, line);
        }
    }

    fn emit(&mut self, stream: OutputStream, line: String) {
        let tag = match stream {
            OutputStream::Stdout => "out",
            OutputStream::Stderr => "err",
        };
        self.session.log.line(&format!("  {tag}| {line}"));
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        if let Some(sink) = self.sink {
            let _ = sink.send(OutputLine {
                host: self.session.target.host.clone(),
                step: self.step.to_string(),
                stream,
                line,
            });
        }
    }

    fn finish(mut self, status: ExitStatus) -> ExecOutput {
        for (idx, stream) in [(0, OutputStream::Stdout), (1, OutputStream::Stderr)] {
            if !self.partial[idx].is_empty() {
                let line =
                    String::from_utf8_lossy(&std::mem::take(&mut self.partial[idx])).into_owned();
                self.emit(stream, line);
            }
        }
        ExecOutput {
            status,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
            tail: self.tail.into_iter().collect(),
        }
    }
}

/// Failure of one attempt: either the connection died (retryable for idempotent work) or a final error.
pub(super) enum ExecFailure {
    ConnectionLost(String),
    Final(SshError),
}

impl Session {
    /// Wraps a script for the login user: `sudo -n sh -c '...'` when privileged and not root.
    pub(super) fn wrap(&self, script: &str, privileged: bool) -> String {
        if privileged && self.target.user != "root" {
            format!("sudo -n -- sh -c {}", shell_quote(script))
        } else {
            script.to_string()
        }
    }

    /// Runs a command and returns its output whatever its exit status. Errors are transport
    /// failures, timeouts and `sudo` wanting a password.
    pub async fn exec(&self, cmd: &Command) -> Result<ExecOutput, SshError> {
        let attempts = if cmd.idempotent {
            self.opts.reconnect_attempts.max(1)
        } else {
            1
        };
        let mut n = 0;
        loop {
            n += 1;
            let (handle, generation) = self.current().await;
            match self.exec_once(&handle, cmd).await {
                Ok(out) => return Ok(out),
                Err(ExecFailure::Final(e)) => return Err(e),
                Err(ExecFailure::ConnectionLost(why)) => {
                    if n >= attempts {
                        return Err(SshError::Protocol {
                            host: self.target.host.clone(),
                            during: format!("step {}", cmd.step),
                            source: format!("connection lost: {why}").into(),
                        });
                    }
                    self.reconnect(generation).await?;
                }
            }
        }
    }

    /// Runs a command and fails unless it exits 0; the error carries step, status and output tail.
    pub async fn run(&self, cmd: &Command) -> Result<ExecOutput, SshError> {
        let out = self.exec(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.command_failed(&cmd.step, &out))
        }
    }

    pub(super) fn command_failed(&self, step: &str, out: &ExecOutput) -> SshError {
        SshError::CommandFailed {
            host: self.target.host.clone(),
            step: step.to_string(),
            status: out.status.clone(),
            tail: out.tail.join("\n"),
            log: self.log.path(),
        }
    }

    async fn exec_once(
        &self,
        handle: &russh::client::Handle<super::host_key::Client>,
        cmd: &Command,
    ) -> Result<ExecOutput, ExecFailure> {
        // sshd allows MaxSessions (10) channels per connection; stay below it.
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| ExecFailure::ConnectionLost("session closed".into()))?;
        let wrapped = self.wrap(&cmd.script, cmd.privileged);
        self.log.line(&format!("[{}] $ {}", cmd.step, wrapped));
        let lost = |e: russh::Error| ExecFailure::ConnectionLost(chain(&e));
        let mut ch = self.open_channel(handle).await.map_err(lost)?;
        let work = async {
            ch.exec(true, wrapped.as_bytes()).await.map_err(lost)?;
            if let Some(data) = &cmd.stdin {
                ch.data(&data[..]).await.map_err(lost)?;
            }
            ch.eof().await.map_err(lost)?;
            let mut col = Collector {
                session: self,
                step: &cmd.step,
                sink: cmd.sink.as_ref(),
                stdout: Vec::new(),
                stderr: Vec::new(),
                partial: [Vec::new(), Vec::new()],
                tail: VecDeque::new(),
            };
            let mut status = ExitStatus::Unknown;
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => col.push(OutputStream::Stdout, &data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        col.push(OutputStream::Stderr, &data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = ExitStatus::Code(exit_status)
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = ExitStatus::Signal(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
            }
            if status == ExitStatus::Unknown && handle.is_closed() {
                return Err(ExecFailure::ConnectionLost(
                    "connection closed before the command finished".into(),
                ));
            }
            Ok(col.finish(status))
        };
        let out = match tokio::time::timeout(cmd.timeout, work).await {
            Ok(r) => r?,
            Err(_) => {
                // A dropped channel is not closed by russh: kill the command and free the channel
                // so sshd's per-connection session limit is not eaten by abandoned commands.
                let _ = ch.signal(russh::Sig::KILL).await;
                let _ = ch.close().await;
                self.log
                    .line(&format!("[{}] timed out after {:?}", cmd.step, cmd.timeout));
                return Err(ExecFailure::Final(SshError::Timeout {
                    host: self.target.host.clone(),
                    step: cmd.step.clone(),
                    after: cmd.timeout,
                }));
            }
        };
        self.log.line(&format!("[{}] {}", cmd.step, out.status));
        if cmd.privileged
            && self.target.user != "root"
            && out.status == ExitStatus::Code(1)
            && (out.stderr.contains("a password is required")
                || out.stderr.contains("a terminal is required"))
        {
            return Err(ExecFailure::Final(SshError::SudoNeedsPassword {
                host: self.target.host.clone(),
                user: self.target.user.clone(),
                step: cmd.step.clone(),
            }));
        }
        Ok(out)
    }
}
