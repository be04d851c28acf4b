//! The services framework of replicated masters: it runs on the leader only. A follower's
//! framework would subscribe to a master that is not leading (refused), and one that kept its
//! own copy of the apps would act on a stale one after a failover; so this supervisor watches the
//! replica's leadership and
//!
//! * on becoming leader: commits an empty batch (every entry of earlier terms is then applied
//!   here), loads the apps from the replicated key space ([`ReplicatedStore`]) and starts the
//!   driver, which re-subscribes with the framework id of the log (the framework is in the
//!   replicated frameworks table) and reconciles: the master's task table says which instances
//!   run, so none is launched twice and the missing ones are launched;
//! * on losing the lead: stops the driver (no launch or kill after that);
//!
//! and forwards the REST routes' commands to the current driver. Without one (a follower, or a
//! takeover still under way) a command is dropped, which its asker sees as
//! [`ServiceError::Unavailable`](super::ServiceError::Unavailable) (503); followers redirect
//! `/v2` to the leader (307) before that.

use super::store::ReplicatedStore;
use super::{ServiceCommand, Services, ServicesHandle};
use crate::master::MasterHandle;
use crate::replica::Replica;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Wait before trying a failed takeover again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The running driver and the token that stops it.
struct Running {
    services: Services,
    stop: CancellationToken,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.services.stopped().await;
    }
}

impl Services {
    /// Starts the supervisor on `replica`: the framework runs while this master leads. A save
    /// waits at most `commit_timeout` for its commit; a deployment not done within
    /// `deployment_timeout` is rolled back (see `rolling.rs`).
    pub fn on_leader(
        master: MasterHandle,
        replica: Arc<Replica>,
        commit_timeout: Duration,
        deployment_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Services {
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(supervise(
            master,
            replica,
            (commit_timeout, deployment_timeout),
            rx,
            shutdown,
        ));
        Services {
            handle: ServicesHandle { tx },
            task,
        }
    }
}

async fn take_over(
    master: &MasterHandle,
    replica: &Arc<Replica>,
    (commit_timeout, deployment_timeout): (Duration, Duration),
    shutdown: &CancellationToken,
) -> Result<Running, String> {
    // A barrier in this term: once committed, the local state machine has every app the
    // previous leader saved.
    match tokio::time::timeout(commit_timeout, replica.propose(Vec::new())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(dc_support::error::chain(&e)),
        Err(_) => return Err(format!("barrier not committed within {commit_timeout:?}")),
    }
    let store = ReplicatedStore::new(replica.clone(), commit_timeout);
    let stop = shutdown.child_token();
    let services = Services::start(
        master.clone(),
        Box::new(store),
        deployment_timeout,
        stop.clone(),
    )
    .map_err(|e| dc_support::error::chain(&e))?;
    Ok(Running { services, stop })
}

async fn supervise(
    master: MasterHandle,
    replica: Arc<Replica>,
    timeouts: (Duration, Duration),
    mut commands: mpsc::Receiver<ServiceCommand>,
    shutdown: CancellationToken,
) {
    let mut leadership = replica.leadership();
    let mut running: Option<Running> = None;
    loop {
        let leading = leadership.borrow_and_update().is_leader;
        if leading && running.is_none() {
            match take_over(&master, &replica, timeouts, &shutdown).await {
                Ok(r) => {
                    tracing::info!("services: this master leads; the framework runs here");
                    running = Some(r);
                }
                Err(e) => tracing::warn!(error = %e, "services: cannot take over; retrying"),
            }
        } else if !leading && let Some(r) = running.take() {
            r.stop().await;
            tracing::info!("services: this master no longer leads; the framework stopped");
        }
        let retry = leading && running.is_none();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = leadership.changed() => if changed.is_err() { break },
            cmd = commands.recv() => match cmd {
                // Without a driver the command (and its reply channel) is dropped: Unavailable.
                Some(c) => if let Some(r) = &running {
                    let _ = r.services.handle.tx.send(c).await;
                },
                None => break,
            },
            _ = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
    }
    if let Some(r) = running {
        r.stop().await;
    }
}
