//! `dccore` command line: `master`, `agent`, `supervise`, and the operator clients `probe`, `drain`,
//! `reactivate` (from `dccore-api`). Thin: parse, set up logging, run, map the result to an exit
//! code, the same scheme as dcform's: 0 = success, 1 = bad usage/config (flags, files), 2 = runtime
//! failure (a probe that finds something missing, a drain that times out, a server that fails).

use anyhow::Context;
use clap::{Parser, Subcommand};
use dccore::agent::{self, AgentConfig};
use dccore::auth::{Authenticator, read_agent_tokens, read_token};
use dccore::master::MasterConfig;
use dccore_api::client::OperatorClient;
use dccore_api::tls::{Tls, TlsFiles};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// dccore: master and agent of the dcform cluster core.
#[derive(Parser)]
#[command(name = "dccore", version = dccore::VERSION)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a master (registry, allocator, scheduler and operator APIs).
    Master {
        /// Address to listen on; port 0 picks a free port (printed and written to DIR/address).
        #[arg(long)]
        listen: String,
        /// Work directory (registry, address file).
        #[arg(long)]
        work_dir: PathBuf,
        /// File holding the operator's bearer token (every right; agents given it still work).
        #[arg(long)]
        token_file: PathBuf,
        /// File holding the agents' bearer token(s), one per line: accepted only on the agent
        /// routes (/internal/v1/agents/*).
        #[arg(long)]
        agent_token_file: Option<PathBuf>,
        /// Mesos credentials JSON for frameworks: {"credentials":[{"principal":..,"secret":..}]}.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// Mesos ACL JSON: what framework principals may do (default: built-in rules, see the
        /// README). Overrides the config file's `acls`.
        #[arg(long)]
        acls: Option<PathBuf>,
        /// JSON config file (timeouts, role weights).
        #[arg(long)]
        config: Option<PathBuf>,
        /// PEM certificate chain (own certificate first): serve HTTPS, and present it as client
        /// certificate when calling agents. Needs --tls-key. Overrides the config's `tls_cert_file`.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert. Overrides the config's `tls_key_file`.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// PEM CA bundle: the only CAs trusted for outgoing HTTPS calls (agents), and, when
        /// serving HTTPS, the CA client certificates are checked against (urn:dcform:agent:NODE authenticates an agent). Overrides the
        /// config's `ca_file`.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Do not run the built-in services framework (Marathon's /v2 API); same as
        /// `"services": false` in the config file.
        #[arg(long)]
        no_services: bool,
        /// Answer DNS for the running tasks on this address (UDP and TCP), e.g. 0.0.0.0:53;
        /// port 0 picks one (written to DIR/dns_address). Overrides the config's `dns_listen`.
        #[arg(long, value_name = "IP:PORT")]
        dns_listen: Option<String>,
    },
    /// Run an agent (runs tasks for the master).
    Agent {
        /// Master URL, e.g. http://10.0.0.1:5050; with replicated masters every one of them
        /// (repeat the flag or separate with commas): the agent finds the leader itself.
        /// Overrides the config's `masters`; one of the two is required.
        #[arg(long, value_delimiter = ',')]
        master: Vec<String>,
        /// Address to listen on; port 0 picks a free port (printed and written to DIR/address).
        #[arg(long)]
        listen: String,
        /// Work directory (checkpoints, sandboxes, address file).
        #[arg(long)]
        work_dir: PathBuf,
        /// File holding the agent's credential for the master: an agent token (or the operator
        /// token).
        #[arg(long)]
        token_file: PathBuf,
        /// Public agent: resources reserved for role slave_public.
        #[arg(long)]
        public: bool,
        /// Resources, e.g. "cpus:4;mem:8192;disk:10000;ports:[31000-32000]" (default: detected).
        #[arg(long)]
        resources: Option<String>,
        /// Attributes, e.g. "rack:r1;zone:a".
        #[arg(long)]
        attributes: Option<String>,
        /// JSON config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// URL the master uses to reach this agent (default: the listen address, or with a
        /// wildcard listen address the local IP that routes to the master).
        #[arg(long)]
        advertise_url: Option<String>,
        /// PEM certificate chain (own certificate first): serve HTTPS, and present it as client
        /// certificate when calling the master. Needs --tls-key. Overrides the config's `tls_cert_file`.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert. Overrides the config's `tls_key_file`.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// PEM CA bundle: the only CAs trusted for outgoing HTTPS calls (the master), and, when
        /// serving HTTPS, the CA client certificates are checked against (urn:dcform:master:NODE may launch and kill). Overrides the
        /// config's `ca_file`.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Check the master is healthy and (with --agent-url) lists that agent as active; or (with
    /// --agent-work-dir, on the agent's node, no credential needed) that the agent running now is
    /// registered, acknowledged by the master within three heartbeats, and active. Exit 0 if so,
    /// else exit 2 with one line saying what is missing (exit 1: bad flags or files).
    #[command(
        after_help = "Examples:\n  dccore probe --master http://10.0.0.1:5050 --token-file /etc/dcform/token\n  dccore probe --master https://10.0.0.1:5050,https://10.0.0.2:5050,https://10.0.0.3:5050 \\\n    --token-file /etc/dcform/token --ca-file /etc/dcform/ca.pem   # the leader among them\n  dccore probe --agent-work-dir /var/lib/dcform/agent --pid-file /run/dcform/agent.pid"
    )]
    Probe {
        /// Master URL, e.g. http://10.0.0.1:5050; with replicated masters every one of them
        /// (repeat the flag or separate with commas): the leader is found among them, an
        /// unreachable one passed over.
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "agent_work_dir",
            requires = "token_file"
        )]
        master: Vec<String>,
        /// File holding the cluster bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The agent's URL as it registered (its advertised URL), e.g. http://10.0.0.3:5051.
        #[arg(long, requires = "master")]
        agent_url: Option<String>,
        /// The agent's work dir: judge the agent from its registration file (see above).
        #[arg(long)]
        agent_work_dir: Option<PathBuf>,
        /// A pid file whose process must be running (a zombie or a dead pid fails).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Give up after this long.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        /// PEM CA bundle to trust for an https:// master (default: the system's roots).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Drain the agent registered with --agent-url (DRAIN_AGENT) and wait until no task is left
    /// on it; exit 2 with a message on timeout.
    #[command(
        after_help = "Example:\n  dccore drain --master http://10.0.0.1:5050,http://10.0.0.2:5050,http://10.0.0.3:5050 \\\n    --token-file T --agent-url http://10.0.0.7:5051 --timeout-secs 300"
    )]
    Drain {
        /// Master URL, e.g. http://10.0.0.1:5050; with replicated masters every one of them
        /// (repeat the flag or separate with commas): the call goes to the leader among them.
        #[arg(long, value_delimiter = ',', required = true)]
        master: Vec<String>,
        /// File holding the cluster bearer token.
        #[arg(long)]
        token_file: PathBuf,
        /// The agent's URL as it registered (its advertised URL).
        #[arg(long)]
        agent_url: String,
        /// Upper bound of the tasks' kill grace periods, seconds.
        #[arg(long)]
        max_grace_secs: Option<f64>,
        /// Remove the agent for good once drained (tasks end TASK_GONE_BY_OPERATOR).
        #[arg(long)]
        mark_gone: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
        /// PEM CA bundle to trust for an https:// master (default: the system's roots).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Bring the agent registered with --agent-url back into offers (REACTIVATE_AGENT) if it is
    /// deactivated or drained: what undoes an interrupted removal. Exit 0 also when there is
    /// nothing to undo.
    #[command(
        after_help = "Example:\n  dccore reactivate --master http://10.0.0.1:5050 --token-file T --agent-url http://10.0.0.3:5051"
    )]
    Reactivate {
        /// Master URL, e.g. http://10.0.0.1:5050; with replicated masters every one of them
        /// (repeat the flag or separate with commas): the call goes to the leader among them.
        #[arg(long, value_delimiter = ',', required = true)]
        master: Vec<String>,
        /// File holding the operator bearer token.
        #[arg(long)]
        token_file: PathBuf,
        /// The agent's URL as it registered (its advertised URL).
        #[arg(long)]
        agent_url: String,
        /// PEM CA bundle to trust for an https:// master (default: the system's roots).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Run CMD, restart it with backoff when it exits, stop it on SIGTERM.
    Supervise {
        /// Where to write the supervisor's pid.
        #[arg(long)]
        pid_file: PathBuf,
        /// CMD's stdout and stderr are appended here.
        #[arg(long)]
        log_file: PathBuf,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

/// Fails unless the pid file names a running process: a stale pid file (dead pid, or a zombie
/// that a non-reaping parent left behind) is not a running process.
fn probe_pid_file(path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("no pid file {}: {e}", path.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("pid file {} holds no pid", path.display()))?;
    if !dccore::proc::is_running(pid) {
        anyhow::bail!(
            "process {pid} of pid file {} is not running (dead or a zombie)",
            path.display()
        );
    }
    Ok(())
}

/// The `--master` URLs of an operator command (repeated or comma-separated), checked as the
/// agent checks its own.
fn masters_flag(given: &[String]) -> Result<Vec<String>, Usage> {
    agent::leader::parse_masters(given).map_err(|e| Usage(format!("--master: {e}")))
}

/// Exit codes, as dcform's (`dcform::cli::exit`).
mod exit {
    /// Bad usage or configuration: flags, token, config, TLS or ACL files.
    pub const USAGE: i32 = 1;
    /// A runtime failure: what a probe finds missing, a drain timeout, a server that fails.
    pub const FAILURE: i32 = 2;
}

/// A usage or configuration error (exit code [`exit::USAGE`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn main() {
    // clap's own usage errors exit 2; here bad usage is 1, as every other usage error.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::USAGE,
            });
        }
    };
    // The clients print their own one-line verdicts; only warnings from libraries go to the log.
    let default_filter = match cli.cmd {
        Cmd::Probe { .. } | Cmd::Drain { .. } | Cmd::Reactivate { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dccore: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILURE);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("dccore: {e:#}");
        let code = if e.downcast_ref::<Usage>().is_some() {
            exit::USAGE
        } else {
            exit::FAILURE
        };
        std::process::exit(code);
    }
}

/// Loads TLS files: a bad file is a usage error (exit 1) naming the file and what is wrong.
fn load_tls(files: &TlsFiles) -> anyhow::Result<Tls> {
    Ok(files.load().map_err(|e| Usage(chain(&e)))?)
}

/// The CA of `--ca-file` for the operator clients (probe, drain, reactivate).
fn client_tls(ca_file: Option<PathBuf>) -> anyhow::Result<Tls> {
    load_tls(&TlsFiles {
        ca: ca_file,
        ..Default::default()
    })
}

async fn bind(
    listen: &str,
    work_dir: &Path,
    scheme: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listen address")?;
    let url = format!("{scheme}://{addr}");
    // DIR/address first (atomically), then the first stdout line: whoever reads the line can
    // also rely on the file.
    let tmp = work_dir.join(".address.tmp");
    std::fs::write(&tmp, format!("{url}\n")).context("cannot write the address file")?;
    std::fs::rename(&tmp, work_dir.join("address")).context("cannot write the address file")?;
    let mut out = std::io::stdout();
    writeln!(out, "{url}").context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    Ok(listener)
}

fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Master {
            listen,
            work_dir,
            token_file,
            agent_token_file,
            credentials,
            acls,
            config,
            tls_cert,
            tls_key,
            ca_file,
            no_services,
            dns_listen,
        } => {
            let token = read_token(&token_file).map_err(|e| Usage(chain(&e)))?;
            let mut auth = Authenticator::new(token);
            if let Some(c) = &credentials {
                auth = auth
                    .with_credentials_file(c)
                    .map_err(|e| Usage(chain(&e)))?;
            }
            let mut cfg = MasterConfig::new(&work_dir);
            if let Some(c) = &config {
                cfg = cfg.apply_file(c).map_err(|e| Usage(chain(&e)))?;
            }
            if let Some(f) = agent_token_file.as_ref().or(cfg.agent_token_file.as_ref()) {
                let tokens = read_agent_tokens(f).map_err(|e| Usage(chain(&e)))?;
                auth = auth.with_agent_tokens(tokens);
            }
            if let Some(a) = &acls {
                cfg = cfg.with_acls_file(a).map_err(|e| Usage(chain(&e)))?;
            }
            if let Some(l) = &dns_listen {
                let at = dccore::discovery::parse_listen(l)
                    .map_err(|e| Usage(format!("--dns-listen: {e}")))?;
                cfg.discovery.dns_listen = Some(at);
            }
            let files = TlsFiles {
                cert: tls_cert,
                key: tls_key,
                ca: ca_file,
            };
            cfg.tls = load_tls(&files.or(&cfg.tls_files))?;
            cfg.services &= !no_services;
            let listener = bind(&listen, &work_dir, cfg.tls.scheme()).await?;
            dccore::api::serve(listener, cfg, auth, shutdown_on_signals()).await?;
        }
        Cmd::Agent {
            master,
            listen,
            work_dir,
            token_file,
            public,
            resources,
            attributes,
            config,
            advertise_url,
            tls_cert,
            tls_key,
            ca_file,
        } => {
            let token = read_token(&token_file).map_err(|e| Usage(chain(&e)))?;
            let mut cfg = AgentConfig::new(String::new(), &work_dir, token);
            if let Some(c) = &config {
                cfg = cfg.apply_file(c).map_err(|e| Usage(chain(&e)))?;
            }
            if !master.is_empty() || cfg.masters.is_empty() {
                cfg.masters = agent::leader::parse_masters(&master)
                    .map_err(|e| Usage(format!("--master: {e}")))?;
            }
            if let Some(r) = &resources {
                cfg = cfg
                    .with_resources_spec(r)
                    .map_err(|e| Usage(format!("--resources: {e}")))?;
            }
            if let Some(a) = &attributes {
                cfg.attributes = dccore::proto::parse_attributes(a)
                    .map_err(|e| Usage(format!("--attributes: {e}")))?;
            }
            cfg.public |= public;
            if advertise_url.is_some() {
                cfg.advertise_url = advertise_url;
            }
            let files = TlsFiles {
                cert: tls_cert,
                key: tls_key,
                ca: ca_file,
            };
            cfg.tls = load_tls(&files.or(&cfg.tls_files))?;
            let listener = bind(&listen, &work_dir, cfg.tls.scheme()).await?;
            agent::run(listener, cfg, shutdown_on_signals()).await?;
        }
        Cmd::Probe {
            master,
            token_file,
            agent_url,
            agent_work_dir,
            pid_file,
            timeout_secs,
            ca_file,
        } => {
            let tls = client_tls(ca_file)?;
            if let Some(p) = &pid_file {
                probe_pid_file(p)?;
            }
            if let Some(dir) = &agent_work_dir {
                let r = dccore::agent::registration::read(dir).map_err(anyhow::Error::msg)?;
                let seen = match dccore::proc::running_start_time(r.pid) {
                    Some(t) => dccore::agent::registration::ProcessSeen::Running(t),
                    None => dccore::agent::registration::ProcessSeen::Gone,
                };
                let now = dccore::agent::registration::now_unix_ms();
                let ok = dccore::agent::registration::verdict(&r, seen, now)
                    .map_err(anyhow::Error::msg)?;
                println!("{ok}");
            }
            if let (false, Some(token_file)) = (master.is_empty(), token_file) {
                let masters = masters_flag(&master)?;
                let token = read_token(&token_file).map_err(|e| Usage(chain(&e)))?;
                let timeout = Duration::from_secs(timeout_secs.max(1));
                let client = OperatorClient::with_tls(&masters, &token, timeout, &tls)?;
                // The whole probe, not just each request, is bounded by --timeout-secs.
                match tokio::time::timeout(timeout, client.probe(agent_url.as_deref())).await {
                    Ok(r) => r?,
                    Err(_) => anyhow::bail!(
                        "master {}: no answer within {timeout_secs} s",
                        masters.join(", ")
                    ),
                }
                // The master that answered: the leader when several were given.
                let m = client.master();
                match &agent_url {
                    Some(a) => println!("master {m} healthy; agent {a} active"),
                    None => println!("master {m} healthy"),
                }
            }
        }
        Cmd::Reactivate {
            master,
            token_file,
            agent_url,
            ca_file,
        } => {
            let masters = masters_flag(&master)?;
            let token = read_token(&token_file).map_err(|e| Usage(chain(&e)))?;
            let tls = client_tls(ca_file)?;
            let client = OperatorClient::with_tls(&masters, &token, Duration::from_secs(10), &tls)?;
            println!("{}", client.reactivate(&agent_url).await?);
        }
        Cmd::Drain {
            master,
            token_file,
            agent_url,
            max_grace_secs,
            mark_gone,
            timeout_secs,
            ca_file,
        } => {
            let tls = client_tls(ca_file)?;
            let token = read_token(&token_file).map_err(|e| Usage(chain(&e)))?;
            let max_grace = match max_grace_secs {
                Some(s) if !(s.is_finite() && s >= 0.0) => {
                    return Err(Usage(format!("--max-grace-secs {s}: must be >= 0")).into());
                }
                Some(s) => Some(Duration::from_secs_f64(s.min(1e9))),
                None => None,
            };
            let masters = masters_flag(&master)?;
            let client = OperatorClient::with_tls(&masters, &token, Duration::from_secs(10), &tls)?;
            let done = client
                .drain(
                    &agent_url,
                    max_grace,
                    mark_gone,
                    Duration::from_secs(timeout_secs),
                )
                .await?;
            println!("{done}");
        }
        Cmd::Supervise {
            pid_file,
            log_file,
            cmd,
        } => {
            let s = dccore::supervise::Supervisor::new(cmd, pid_file, log_file);
            s.run(shutdown_on_signals()).await?;
        }
    }
    Ok(())
}

use dc_support::error::chain;
