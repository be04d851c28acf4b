//! Node bootstrap for dcform: the node image, the SSH engine and the install templates.
//!
//! ```text
//! node_image::ensure  -> Docker image with sshd (test and docker-provider nodes)
//! ssh::Session::connect(target, auth, host key policy)   -- russh lives only in `ssh`
//!   bootstrap::bootstrap_node(session, params, progress):
//!     preflight (templates/preflight.sh) -> upload dccore (sha256 checked, skipped if same)
//!       -> write config + token -> install (systemd unit or `dccore supervise`) -> start
//!   bootstrap::uninstall_node(session, params, progress): stop, remove every file and unit
//! install::render(&InstallParams) -> RenderedInstall      -- pure, minijinja with strict undefined
//! ```
//!
//! Typical use by the executor (one session per node, reused for every step):
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use dcform_bootstrap::bootstrap::{bootstrap_node, JoinToken};
//! use dcform_bootstrap::install::{InstallParams, Role};
//! use dcform_bootstrap::ssh::{Auth, ConnectOptions, HostKeyPolicy, Session, Target};
//!
//! let session = Session::connect(
//!     Target::new("10.0.0.5", "root"),
//!     Auth::from_env(vec!["/home/me/.ssh/id_ed25519".into()]),
//!     HostKeyPolicy::TrustOnFirstUse, // later: Pinned(fingerprint kept in the state)
//!     ConnectOptions { log_path: Some(".dcform/prod/logs/masters-0.log".into()), ..Default::default() },
//! )
//! .await?;
//! let pinned = session.host_key().fingerprint.clone(); // record in the state
//! let params = InstallParams::new("prod", "masters-0", Role::Master, "0.0.0.0:5050", 1_800_000_000);
//! let report = bootstrap_node(&session, &params, &JoinToken::new("..."), "dccore".as_ref(), &|p| {
//!     println!("{} {}: {}", p.node, p.step, p.message)
//! })
//! .await?;
//! # let _ = (pinned, report);
//! # Ok(())
//! # }
//! ```
//!
//! Vocabulary: a *target* is one SSH endpoint (host, port, user, optional jump host); a *session*
//! is one authenticated connection to it, reused for every command and upload; a *step* is one
//! named part of the bootstrap, carried by every error.

pub mod bootstrap;
pub mod install;
pub mod node_image;
pub mod ssh;
