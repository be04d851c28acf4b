//! Node bootstrap for dcform: the node image, the SSH engine and the install templates.
//!
//! ```text
//! node_image::ensure  -> Docker image with sshd (test and docker-provider nodes)
//! ssh::Session::connect(target, auth, host key policy)   -- russh lives only in `ssh`
//!   Session::exec / run (scripts, as root with `privileged`), Session::upload (sha256 checked on the
//!   far side, moved into place atomically, skipped when the same)
//! templates::render(&InstallParams) -> RenderedInstall   -- pure, minijinja with strict undefined:
//!   preflight, install (systemd unit or `dccore supervise`), uninstall, running check, config
//! ```
//!
//! dcform's executor drives a node's bootstrap as plan steps: its `step_ops` turns each step (install,
//! start, restart, wait-healthy, uninstall, ...) into scripts and uploads from [`templates::render`], and
//! its SSH remote carries them out over one [`ssh::Session`] per node, reused for every step:
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use dcform_bootstrap::ssh::{Auth, Command, ConnectOptions, HostKeyPolicy, Session, Target};
//! use dcform_bootstrap::templates::{InstallParams, Role, render};
//!
//! let session = Session::connect(
//!     Target::new("10.0.0.5", "root"),
//!     Auth::from_env(vec!["/home/me/.ssh/id_ed25519".into()]),
//!     HostKeyPolicy::TrustOnFirstUse, // later: Pinned(fingerprint kept in the state)
//!     ConnectOptions { log_path: Some(".dcform/prod/logs/masters-1.log".into()), ..Default::default() },
//! )
//! .await?;
//! let pinned = session.host_key().fingerprint.clone(); // record in the state
//! let r = render(&InstallParams::new("prod", "masters-1", Role::Master, "10.0.0.5:5050", 1_800_000_000))?;
//! let preflight = session.exec(&Command::new("preflight", r.preflight.as_str()).privileged()).await?;
//! # let _ = (pinned, preflight);
//! # Ok(())
//! # }
//! ```
//!
//! Vocabulary: a *target* is one SSH endpoint (host, port, user, optional jump host); a *session*
//! is one authenticated connection to it, reused for every command and upload; a *step* is one
//! named unit of work, carried by every error.

pub mod node_image;
pub mod ssh;
pub mod templates;
