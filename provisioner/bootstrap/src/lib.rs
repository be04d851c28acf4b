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
//! Vocabulary: a *target* is one SSH endpoint (host, port, user, optional jump host); a *session*
//! is one authenticated connection to it, reused for every command and upload; a *step* is one
//! named part of the bootstrap, carried by every error.

pub mod bootstrap;
pub mod install;
pub mod node_image;
pub mod retry;
pub mod ssh;
