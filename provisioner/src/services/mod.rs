//! Services on an applied cluster: dcform's typed client of the masters' Marathon-compatible
//! `/v2` API (served by dccore's built-in services framework), used by `dcform app` and by
//! apply's convergence of declared services.
//!
//! ```text
//! dcform app deploy/list/show/scale/restart/remove ─┐
//! apply (declared services)                         ┴─▶ MarathonClient ──/v2/apps, /v2/deployments, /v2/queue──▶ leader master
//!                                                        └─ wait_deployment: polls until the deployments are gone
//!                                                           and the apps run; a timeout carries the queue's reasons
//! ```
//! The answers are dccore's own types (`dccore_api::marathon::answers`): a field renamed in
//! dccore breaks this build, not a user's deploy.
//!
//! * `client`: [`MarathonClient`] (calls, redirects to the leader, typed [`ServiceApiError`]s);
//! * `converge`: apply's last phase ([`converge::converge`]: removals, then PUT/PATCH, recorded in
//!   the state, then the wait) and the live apps a plan compares with ([`converge::live_apps`]);
//! * `wait`: [`MarathonClient::wait_deployment`], [`Awaited`], [`WaitProgress`].

mod client;
pub mod converge;
#[cfg(test)]
mod redirect_tests;
mod wait;

pub use client::{MarathonClient, ServiceApiError};
pub use wait::{Awaited, WaitProgress, app_line, counts_line};
