//! Connecting: TCP or jump-host tunnel, boot retries, host key policy, authentication.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{RwLock, Semaphore};

use super::auth::authenticate;
use super::host_key::{Client, KeyVerdict, policy_name};
use super::log::SessionLog;
use super::{Auth, ConnectOptions, HostKeyInfo, HostKeyPolicy, SshError, Target};
use dc_support::error::chain;
use dc_support::retry::{self, Backoff, Next};

/// One authenticated connection to a host, reused by every command and upload.
///
/// Cheap to share behind an `Arc`; commands may run concurrently (bounded by `max_channels`).
pub struct Session {
    pub(super) target: Target,
    auth: Auth,
    pub(super) opts: ConnectOptions,
    host_key: HostKeyInfo,
    /// The bastion's host key as seen at first connect (when there is a bastion).
    jump_host_key: Option<HostKeyInfo>,
    pub(super) conn: RwLock<Conn>,
    pub(super) channels: Semaphore,
    pub(super) log: SessionLog,
}

/// The live connection; replaced as a whole when it dies and an idempotent operation reconnects.
pub(super) struct Conn {
    pub(super) handle: Arc<Handle<Client>>,
    /// Bumped on every reconnect, so concurrent callers reconnect once.
    pub(super) generation: u64,
    /// The bastion session the tunnel runs through; must outlive `handle`.
    _jump: Option<Box<Session>>,
    /// How long opening the transport took (TCP connect, or the tunnel through the bastion):
    /// a round-trip time measured by the kernels, not inflated by a busy sshd.
    rtt: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("host_key", &self.host_key.fingerprint)
            .finish()
    }
}

impl Session {
    /// Connects and authenticates. Retries (bounded, with backoff) only while the host refuses or
    /// cannot be routed to, as a booting machine does; auth and host key failures return at once.
    pub async fn connect(
        target: Target,
        auth: Auth,
        host_key: HostKeyPolicy,
        opts: ConnectOptions,
    ) -> Result<Session, SshError> {
        let log = SessionLog::open(opts.log_path.as_deref())?;
        log.line(&format!(
            "connect {} (host key policy: {})",
            target.display(),
            policy_name(&host_key)
        ));
        let (handle, seen, jump, rtt) =
            match establish(&target, &auth, &host_key, &opts, &log).await {
                Ok(v) => v,
                Err(e) => {
                    log.line(&format!("connect failed: {}", chain(&e)));
                    return Err(e);
                }
            };
        log.line(&format!(
            "connected (transport opened in {:.1} ms); host key {} {}",
            rtt.as_secs_f64() * 1000.0,
            seen.algorithm,
            seen.fingerprint
        ));
        let channels = Semaphore::new(opts.max_channels.max(1));
        let jump_host_key = jump.as_ref().map(|j| j.host_key.clone());
        Ok(Session {
            target,
            auth,
            opts,
            host_key: seen,
            jump_host_key,
            conn: RwLock::new(Conn {
                handle: Arc::new(handle),
                generation: 0,
                _jump: jump,
                rtt,
            }),
            channels,
            log,
        })
    }

    /// The host key the server presented (store its fingerprint and pin it next time).
    pub fn host_key(&self) -> &HostKeyInfo {
        &self.host_key
    }

    /// The host key the bastion presented at first connect, `None` without a bastion. A caller
    /// that trusted it on first use stores its fingerprint and pins it next time, as for
    /// [`Session::host_key`].
    pub fn jump_host_key(&self) -> Option<&HostKeyInfo> {
        self.jump_host_key.as_ref()
    }

    /// The target this session is connected to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The session log path, if one is kept.
    pub fn log_path(&self) -> Option<std::path::PathBuf> {
        self.log.path()
    }

    /// Appends a line to the session log (for callers' step markers).
    pub fn log_line(&self, text: &str) {
        self.log.line(text);
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let conn = self.conn.read().await;
        let _ = conn
            .handle
            .disconnect(russh::Disconnect::ByApplication, "bye", "en")
            .await;
        self.log.line("disconnected");
    }

    /// The current connection and its generation.
    pub(super) async fn current(&self) -> (Arc<Handle<Client>>, u64) {
        let c = self.conn.read().await;
        (c.handle.clone(), c.generation)
    }

    /// The round-trip time measured when the current connection was opened.
    pub(super) async fn rtt(&self) -> Duration {
        self.conn.read().await.rtt
    }

    /// Replaces a dead connection (unless someone already did since `seen_generation`). The host
    /// key must be the one seen at first connect: a reconnect never trusts a new key.
    pub(super) async fn reconnect(&self, seen_generation: u64) -> Result<(), SshError> {
        let mut c = self.conn.write().await;
        if c.generation != seen_generation {
            return Ok(());
        }
        self.log.line("connection lost; reconnecting");
        let pinned = HostKeyPolicy::Pinned(self.host_key.fingerprint.clone());
        // The bastion is held to the key it showed at first connect too, unless its checks were
        // switched off: a reconnect through a swapped bastion must not trust it afresh.
        let mut target = self.target.clone();
        if let (Some(j), Some(seen)) = (target.jump.as_mut(), &self.jump_host_key)
            && j.host_key == HostKeyPolicy::TrustOnFirstUse
        {
            j.host_key = HostKeyPolicy::Pinned(seen.fingerprint.clone());
        }
        let (handle, _, jump, rtt) =
            establish(&target, &self.auth, &pinned, &self.opts, &self.log).await?;
        c.handle = Arc::new(handle);
        c.generation += 1;
        c._jump = jump;
        c.rtt = rtt;
        self.log.line("reconnected");
        Ok(())
    }
}

impl Session {
    /// Opens a session channel. sshd refuses new sessions while its `MaxSessions` slots are
    /// taken, and frees a slot only after the close handshake of a finished command, so a
    /// refusal is retried briefly (bounded) before it counts as an error.
    pub(super) async fn open_channel(
        &self,
        handle: &Handle<Client>,
    ) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1)).attempts(12);
        retry::run(backoff, |at| async move {
            match handle.channel_open_session().await {
                Ok(ch) => Next::Done(ch),
                Err(e @ russh::Error::ChannelOpenFailure(_)) => {
                    if !at.last {
                        self.log.line(&format!(
                            "channel open refused ({e}); retry {} in {:?}",
                            at.number, at.backoff
                        ));
                    }
                    at.retry(e)
                }
                Err(e) => Next::Fail(e),
            }
        })
        .await
        .map_err(retry::RetryError::into_error)
    }
}

/// Resolves once the connection behind `handle` is gone. russh wakes a writer waiting for
/// window space only on a window adjust, so a dead connection would leave it waiting forever;
/// racing the transfer against this makes a cut connection an error (and a retry) instead.
pub(super) async fn closed(handle: &Handle<Client>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !handle.is_closed() {
        tick.tick().await;
    }
}

type Established = (Handle<Client>, HostKeyInfo, Option<Box<Session>>, Duration);

/// Connects (through the jump host if any) with boot retries, checks the host key, authenticates.
async fn establish(
    target: &Target,
    auth: &Auth,
    policy: &HostKeyPolicy,
    opts: &ConnectOptions,
    log: &SessionLog,
) -> Result<Established, SshError> {
    // The bastion is connected once; only the hop to the target is retried while it boots.
    let jump = match &target.jump {
        Some(j) => Some(Box::new(
            Box::pin(Session::connect(
                j.target.clone(),
                auth.clone(),
                j.host_key.clone(),
                ConnectOptions {
                    log_path: None,
                    ..opts.clone()
                },
            ))
            .await
            .map_err(|e| match e {
                // Said as the bastion's key, so the user knows which record to look at; the
                // target was never contacted.
                SshError::HostKeyMismatch {
                    expected,
                    actual,
                    algorithm,
                    ..
                } => SshError::BastionHostKeyMismatch {
                    bastion: j.target.display(),
                    target: target.display(),
                    expected,
                    actual,
                    algorithm,
                },
                other => other,
            })?,
        )),
        None => None,
    };
    let attempt = |at: retry::Attempt| {
        let jump = jump.as_deref();
        async move {
            match attempt_once(target, auth, policy, opts, jump).await {
                Ok(v) => Next::Done(v),
                Err(Attempt::Booting(e)) => {
                    if !at.last {
                        log.line(&format!(
                            "attempt {}: {} not ready ({e}); retrying in {:?}",
                            at.number,
                            target.display(),
                            at.backoff
                        ));
                    }
                    at.retry(Attempt::Booting(e))
                }
                Err(other) => Next::Fail(other),
            }
        }
    };
    let res = retry::run(opts.boot_retry, attempt).await;
    match res {
        Ok((handle, info, rtt)) => Ok((handle, info, jump, rtt)),
        Err(e) => {
            let attempts = e.attempts();
            match e.into_error() {
                Attempt::Booting(source) => Err(SshError::Connect {
                    host: target.host.clone(),
                    port: target.port,
                    attempts,
                    source,
                }),
                Attempt::Fatal(e) => Err(e),
            }
        }
    }
}

enum Attempt {
    /// Refused / unreachable / reset: the host may still be booting.
    Booting(std::io::Error),
    Fatal(SshError),
}

fn is_booting(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
            | ErrorKind::TimedOut
            | ErrorKind::BrokenPipe
    )
}

fn client_config(opts: &ConnectOptions) -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: 3,
        nodelay: true,
        // Larger windows and packets keep a single upload stream from stalling on acks.
        window_size: 8 * 1024 * 1024,
        // AES-GCM first: with AES-NI (nearly every x86 server) it is several times cheaper per
        // byte than ChaCha20-Poly1305, which matters when one controller streams to many nodes.
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_256_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
            ]),
            ..russh::Preferred::DEFAULT
        },
        ..client::Config::default()
    })
}

async fn attempt_once(
    target: &Target,
    auth: &Auth,
    policy: &HostKeyPolicy,
    opts: &ConnectOptions,
    jump: Option<&Session>,
) -> Result<(Handle<Client>, HostKeyInfo, Duration), Attempt> {
    let verdict = Arc::new(Mutex::new(KeyVerdict::NotChecked));
    let client = Client {
        host: target.host.clone(),
        port: target.port,
        policy: policy.clone(),
        verdict: verdict.clone(),
    };
    let config = client_config(opts);
    let timeout = opts.connect_timeout;
    let timed_out = || {
        Attempt::Booting(std::io::Error::new(
            ErrorKind::TimedOut,
            format!("no SSH handshake within {timeout:?}"),
        ))
    };
    let opened = std::time::Instant::now();
    let rtt;
    let handshake = match jump {
        None => {
            let tcp = tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
            )
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| {
                if is_booting(e.kind()) {
                    Attempt::Booting(e)
                } else {
                    Attempt::Fatal(SshError::Connect {
                        host: target.host.clone(),
                        port: target.port,
                        attempts: 1,
                        source: e,
                    })
                }
            })?;
            rtt = opened.elapsed();
            let _ = tcp.set_nodelay(true);
            tokio::time::timeout(timeout, handshake(config, tcp, client)).await
        }
        Some(j) => {
            let (h, _) = j.current().await;
            let ch = h
                .channel_open_direct_tcpip(
                    target.host.clone(),
                    u32::from(target.port),
                    "127.0.0.1",
                    0,
                )
                .await
                // The bastion could not reach the target yet: treat like a refused connection.
                .map_err(|e| {
                    Attempt::Booting(std::io::Error::new(
                        ErrorKind::ConnectionRefused,
                        format!(
                            "jump host cannot reach {}:{}: {e}",
                            target.host, target.port
                        ),
                    ))
                })?;
            rtt = opened.elapsed();
            tokio::time::timeout(timeout, handshake(config, ch.into_stream(), client)).await
        }
    };
    let mut handle = match handshake.map_err(|_| timed_out())? {
        Ok(h) => h,
        Err(e) => return Err(classify_handshake_error(target, policy, &verdict, e)),
    };
    let info = match verdict.lock().map(|v| v.clone()) {
        Ok(KeyVerdict::Accepted(info)) => info,
        _ => {
            return Err(Attempt::Fatal(SshError::Protocol {
                host: target.host.clone(),
                during: "host key check".into(),
                source: "server host key was never checked".into(),
            }));
        }
    };
    authenticate(&mut handle, target, auth)
        .await
        .map_err(Attempt::Fatal)?;
    Ok((handle, info, rtt))
}

async fn handshake<S>(
    config: Arc<client::Config>,
    stream: S,
    client: Client,
) -> Result<Handle<Client>, russh::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    client::connect_stream(config, stream, client).await
}

fn classify_handshake_error(
    target: &Target,
    policy: &HostKeyPolicy,
    verdict: &Mutex<KeyVerdict>,
    e: russh::Error,
) -> Attempt {
    let v = verdict.lock().map(|v| v.clone()).unwrap_or_default();
    match v {
        KeyVerdict::Mismatch { expected, actual } => {
            return Attempt::Fatal(SshError::HostKeyMismatch {
                host: target.host.clone(),
                expected,
                actual: actual.fingerprint,
                algorithm: actual.algorithm,
            });
        }
        KeyVerdict::KnownHostsError(reason) => {
            let path = match policy {
                HostKeyPolicy::KnownHosts(p) => p.clone(),
                _ => std::path::PathBuf::new(),
            };
            return Attempt::Fatal(SshError::KnownHosts { path, reason });
        }
        _ => {}
    }
    match e {
        russh::Error::IO(io) if is_booting(io.kind()) => Attempt::Booting(io),
        // sshd accepts TCP before it is ready to talk while it starts; a closed stream then is "booting".
        russh::Error::Disconnect | russh::Error::HUP => Attempt::Booting(std::io::Error::new(
            ErrorKind::ConnectionReset,
            "connection closed during the SSH handshake",
        )),
        other => Attempt::Fatal(SshError::Protocol {
            host: target.host.clone(),
            during: "SSH handshake".into(),
            source: Box::new(other),
        }),
    }
}
