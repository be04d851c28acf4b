//! Built-in services: a Marathon-compatible framework that runs long-running apps on the
//! cluster, started beside the master. It uses the same offer API as any external framework
//! (no back door into the allocator): it subscribes through the master's command channel as
//! framework `marathon` with principal [`PRINCIPAL`], and ACCEPTs, DECLINEs, KILLs,
//! RECONCILEs and ACKNOWLEDGEs like one.
//!
//! ```text
//! api::marathon (/v2/...) ──ServiceCommand──▶ driver (one task, owns the state)
//!                         ◀──oneshot reply──    │  ├─ scheduler.rs  decisions (pure): offers → launches, updates → replacements
//!                                               │  │   ├─ dccore_api::marathon  app JSON, validated, round-trips
//!                                               │  │   ├─ offers.rs    offers dealt out to waiting apps, the rest declined
//!                                               │  │   ├─ placement.rs resources, ports, constraints, refusal reasons
//!                                               │  │   └─ rolling.rs   upgradeStrategy steps (start/kill next), rollback at the deadline
//!                                               │  ├─ health.rs     HTTP / TCP checks (I/O, results fed back)
//!                                               │  ├─ events.rs     state changes → Marathon events (broadcast, /v2/events)
//!                                               │  └─ store.rs      ServiceStore: apps, versions, instance ↔ task
//!                                               │                    (file; replicated key space "services")
//!                                               └──MasterCommand::Subscribe / Call──▶ master
//! ```
//! With replicated masters, leader.rs runs the driver on the leader only (started on taking the
//! lead, from the replicated store; stopped on losing it) and forwards the routes' commands.
//! Vocabulary: an *app* is a definition (`/prod/web`), an *instance* one of its tasks (task
//! name `web.prod`, Mesos-DNS' convention; task id `prod_web.UUID`), a *deployment* the change
//! from one definition to another, running until every instance of the new version is running
//! (and healthy, with health checks), rolled back if that takes longer than the master's
//! `services_deployment_timeout_secs`.

mod driver;
pub mod events;
mod health;
mod launch;
mod leader;
pub mod placement;
pub mod rolling;
pub mod scheduler;
pub mod store;

pub use dccore_api::marathon::{App, AppError, AppId};
pub use events::EventReceiver;
pub use scheduler::{AppEntry, Instance};
pub use store::{FileStore, ReplicatedStore, ServiceStore, StoreError};

use crate::master::MasterHandle;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The framework's principal: the master's rules apply to it like to any framework's.
pub const PRINCIPAL: &str = "dccore-services";
/// The framework's name (the second label of its DNS names: `web.prod.marathon.dccore`).
pub const FRAMEWORK_NAME: &str = "marathon";

/// Why a services request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such app.
    #[error("App '{0}' does not exist")]
    AppNotFound(String),
    /// No such task.
    #[error("Task '{0}' does not exist")]
    TaskNotFound(String),
    /// No such deployment.
    #[error("DeploymentPlan {0} does not exist")]
    DeploymentNotFound(String),
    /// A deployment runs for the app and `force` was not given.
    #[error(
        "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'."
    )]
    Locked {
        /// The running deployments.
        deployments: Vec<String>,
    },
    /// The app already exists (POST).
    #[error("An app with id [{0}] already exists.")]
    Exists(String),
    /// The state could not be saved.
    #[error("cannot save the services state")]
    Store(#[from] StoreError),
    /// The framework has stopped.
    #[error("the services framework is not running")]
    Unavailable,
}

/// What a change answers: the new version and the deployment that carries it out.
#[derive(Clone, Debug)]
pub struct Change {
    /// The app's version after the change.
    pub version: String,
    /// The deployment started.
    pub deployment_id: String,
}

/// An app and its bookkeeping, as `/v2/apps` shows it.
#[derive(Clone, Debug)]
pub struct AppView {
    /// The entry (definition, version, deployment, refusals).
    pub entry: AppEntry,
    /// Instances still wanted.
    pub waiting: u32,
    /// Seconds until the next launch may happen (back-off), if delayed.
    pub delay_secs: Option<f64>,
}

/// A consistent copy of the framework's state for the read-only routes.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Apps in id order.
    pub apps: Vec<AppView>,
    /// Every instance.
    pub instances: Vec<Instance>,
    /// The framework id, once subscribed.
    pub framework_id: Option<String>,
    /// Subscribed to the master now.
    pub connected: bool,
}

/// Requests to the driver.
#[derive(Debug)]
pub enum ServiceCommand {
    /// Create (`create_only`, POST) or replace an app.
    PutApp {
        /// The definition.
        app: Box<App>,
        /// POST: refuse an existing id.
        create_only: bool,
        /// Override a running deployment.
        force: bool,
        /// Answer.
        reply: oneshot::Sender<Result<Change, ServiceError>>,
    },
    /// Remove an app (its instances are killed).
    RemoveApp {
        /// The app.
        id: AppId,
        /// Override a running deployment.
        force: bool,
        /// Answer.
        reply: oneshot::Sender<Result<Change, ServiceError>>,
    },
    /// Replace every instance.
    Restart {
        /// The app.
        id: AppId,
        /// Override a running deployment.
        force: bool,
        /// Answer.
        reply: oneshot::Sender<Result<Change, ServiceError>>,
    },
    /// Kill tasks; with `scale` the apps shrink instead of replacing them.
    KillTasks {
        /// Task ids.
        task_ids: Vec<String>,
        /// Shrink the apps.
        scale: bool,
        /// Answer: the killed instances.
        reply: oneshot::Sender<Result<Vec<Instance>, ServiceError>>,
    },
    /// Stop a deployment: roll back to the previous definition, or with `force` just stop it.
    CancelDeployment {
        /// Deployment id.
        id: String,
        /// Stop without rolling back.
        force: bool,
        /// Answer: the rollback deployment, if one started.
        reply: oneshot::Sender<Result<Option<Change>, ServiceError>>,
    },
    /// Subscribe to the framework's events (`/v2/events`): those from now on, until the
    /// framework stops.
    Events {
        /// Answer.
        reply: oneshot::Sender<EventReceiver>,
    },
    /// Read the state.
    Snapshot {
        /// Answer.
        reply: oneshot::Sender<Arc<Snapshot>>,
    },
}

/// The way in to the running framework. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServicesHandle {
    tx: mpsc::Sender<ServiceCommand>,
}

impl ServicesHandle {
    /// Sends a command and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ServiceCommand,
    ) -> Result<T, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        rx.await.map_err(|_| ServiceError::Unavailable)
    }
}

/// A running services framework.
pub struct Services {
    handle: ServicesHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Services {
    /// Loads the state from `store` and starts the driver; it subscribes to `master` and runs
    /// until `shutdown` is cancelled. A deployment not finished within `deployment_timeout`
    /// is rolled back to the app's previous version.
    pub fn start(
        master: MasterHandle,
        store: Box<dyn ServiceStore>,
        deployment_timeout: std::time::Duration,
        shutdown: CancellationToken,
    ) -> Result<Services, StoreError> {
        let saved = store.load()?;
        let (tx, rx) = mpsc::channel(256);
        let driver = driver::Driver::new(master, store, saved, deployment_timeout);
        let task = tokio::spawn(driver.run(rx, shutdown));
        Ok(Services {
            handle: ServicesHandle { tx },
            task,
        })
    }

    /// A handle for the REST routes.
    pub fn handle(&self) -> ServicesHandle {
        self.handle.clone()
    }

    /// Waits until the driver has stopped (after `shutdown`), its state saved.
    pub async fn stopped(self) {
        drop(self.handle);
        let _ = self.task.await;
    }
}

/// Marathon's time format: ISO-8601 UTC with milliseconds (`2026-12-02T03:04:05.678Z`).
pub fn iso_time(epoch_secs: f64) -> String {
    let ms = (epoch_secs.max(0.0) * 1000.0) as i64;
    let (secs, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm), so no date crate is needed.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_time_is_marathons_format() {
        assert_eq!(super::iso_time(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso_time(1_796_180_645.5), "2026-12-02T03:04:05.500Z");
    }
}
