//! The framework's one task: owns [`Core`], talks to the master through its command channel
//! exactly as the HTTP scheduler API does, answers the REST routes' [`ServiceCommand`]s, runs
//! health checks and saves the state.

use super::events::Publisher;
use super::placement::OfferView;
use super::scheduler::{Action, Core, Instance};
use super::store::{Saved, SavedApp, ServiceStore};
use super::{
    AppView, Change, FRAMEWORK_NAME, PRINCIPAL, ServiceCommand, ServiceError, Snapshot, health,
    iso_time,
};
use crate::master::{MasterCommand, MasterHandle, Subscription};
use crate::proto::now_secs;
use crate::proto::scheduler::{Event, FrameworkInfo};
use dccore_api::marathon::{App, AppId};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often back-offs, surplus kills, due health checks and saving are looked at.
const TICK: Duration = Duration::from_millis(200);
/// Wait before subscribing again after the master refused or the stream ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How often the instances we know are reconciled explicitly (Marathon: every 10 minutes; this
/// is cheap, and bounds how long an instance on an agent that never came back goes unnoticed).
const RECONCILE_EVERY: Duration = Duration::from_secs(15);
/// Events handled in one go at most (status updates among them share one tick).
const EVENT_BATCH: usize = 1024;
/// The framework's failover timeout: its tasks outlive a master restart.
const FAILOVER_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;

struct Stream {
    events: mpsc::Receiver<Event>,
    overflow: CancellationToken,
    stream_id: String,
}

pub(super) struct Driver {
    master: MasterHandle,
    store: Arc<dyn ServiceStore>,
    core: Core,
    framework_id: Option<String>,
    stream_id: Option<String>,
    dirty: bool,
    http: reqwest::Client,
    /// The health last told to the master per instance (see `report_health`).
    reported_health: std::collections::HashMap<String, bool>,
    /// When the instances were last reconciled explicitly.
    reconciled_at: tokio::time::Instant,
    /// Answers to acknowledgements not looked at yet (see `call`).
    acks: Vec<tokio::sync::oneshot::Receiver<Result<(), crate::master::CallError>>>,
    /// `/v2/events`: told of every change made here.
    events: Publisher,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(super) fn new(
        master: MasterHandle,
        store: Box<dyn ServiceStore>,
        saved: Saved,
        deployment_timeout: Duration,
    ) -> Driver {
        crate::tls::install_default_provider();
        let mut core = Core::default();
        let t = now();
        for s in saved.apps {
            let app = match App::from_json(s.definition, None) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "a saved app is no longer valid: skipped");
                    continue;
                }
            };
            core.put_app(app, s.version, String::new(), t);
            if let Some((def, version)) = s.previous
                && let Ok(prev) = App::from_json(def, None)
                && let Some(e) = core.apps.get_mut(&prev.id)
            {
                e.previous = Some((prev, version));
            }
        }
        // A restart is not a deployment: a saved app is as deployed as it was.
        for e in core.apps.values_mut() {
            e.deployment = None;
            e.deadline = None;
        }
        // Only deployments started from now on have a deadline (see above).
        core.deployment_timeout = Some(deployment_timeout);
        for i in saved.instances {
            core.instances.insert(i.task_id.clone(), i);
        }
        Driver {
            master,
            store: Arc::from(store),
            core,
            framework_id: saved.framework_id,
            stream_id: None,
            dirty: false,
            http: reqwest::Client::new(),
            reported_health: Default::default(),
            reconciled_at: tokio::time::Instant::now(),
            acks: Vec::new(),
            events: Publisher::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<ServiceCommand>,
        shutdown: CancellationToken,
    ) {
        let mut stream: Option<Stream> = None;
        let mut subscribe_at = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        let mut checks: JoinSet<(String, bool)> = JoinSet::new();
        loop {
            if stream.is_none() && tokio::time::Instant::now() >= subscribe_at {
                match self.subscribe().await {
                    Ok(s) => stream = Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "services: cannot subscribe to the master; retrying");
                        subscribe_at = tokio::time::Instant::now() + RESUBSCRIBE_AFTER;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => break,
                },
                ev = next_event(&mut stream) => {
                    let keep = match ev {
                        Some(e) => self.events(e, &mut stream).await,
                        None => false,
                    };
                    if !keep {
                        self.disconnect(&mut stream).await;
                        subscribe_at = tokio::time::Instant::now() + RESUBSCRIBE_AFTER;
                    }
                }
                Some(r) = checks.join_next(), if !checks.is_empty() => {
                    if let Ok((task, ok)) = r {
                        let before = self.core.instances.get(&task).and_then(|i| i.healthy);
                        let acts = self.core.health_result(&task, ok, now());
                        self.events.health(before, self.core.instances.get(&task));
                        self.report_health(&task).await;
                        self.perform(acts).await;
                    }
                }
                _ = tick.tick() => {
                    if self.stream_id.is_some() && self.reconciled_at.elapsed() >= RECONCILE_EVERY {
                        self.reconcile_known().await;
                    }
                    self.check_acks();
                    let t = now();
                    let acts = self.core.tick(t);
                    self.dirty |= !acts.is_empty();
                    self.perform(acts).await;
                    for (task, host, port, check) in self.core.due_checks(t) {
                        let http = self.http.clone();
                        checks.spawn(async move { (task, health::run(&http, &host, port, &check).await) });
                    }
                    if let Err(e) = self.flush().await {
                        tracing::warn!(error = %e, "services: cannot save the state");
                    }
                }
            }
            // After the task and health events of this step: a deployment ends after them.
            self.events.deployments(&self.core);
        }
        checks.shutdown().await;
        self.dirty = true;
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "services: cannot save the state on shutdown");
        }
    }

    async fn subscribe(&mut self) -> Result<Stream, crate::master::CallError> {
        let mut info_raw = json!({
            "user": "", "name": FRAMEWORK_NAME, "roles": ["*"], "principal": PRINCIPAL,
            "failover_timeout": FAILOVER_TIMEOUT_SECS, "capabilities": [{"type": "MULTI_ROLE"}],
        });
        if let Some(id) = &self.framework_id {
            info_raw["id"] = json!({"value": id});
        }
        let info: FrameworkInfo = serde_json::from_value(info_raw.clone())
            .expect("invariant: the framework info above has FrameworkInfo's shape");
        let framework_id = self.framework_id.clone();
        let sub: Subscription = self
            .master
            .ask(|reply| MasterCommand::Subscribe {
                info_raw,
                info,
                framework_id,
                principal: Some(PRINCIPAL.into()),
                reply,
            })
            .await??;
        if self.framework_id.as_deref() != Some(sub.framework_id.as_str()) {
            self.framework_id = Some(sub.framework_id.clone());
            self.dirty = true;
        }
        self.stream_id = Some(sub.stream_id.clone());
        tracing::info!(framework = %sub.framework_id, "services: subscribed");
        Ok(Stream {
            events: sub.events,
            overflow: sub.overflow,
            stream_id: sub.stream_id,
        })
    }

    async fn disconnect(&mut self, stream: &mut Option<Stream>) {
        if let (Some(s), Some(fid)) = (stream.take(), self.framework_id.clone()) {
            let _ = self
                .master
                .tell(MasterCommand::StreamClosed {
                    framework_id: fid,
                    stream_id: s.stream_id,
                })
                .await;
        }
        self.stream_id = None;
    }

    /// Handles `first` and the events queued behind it (up to [`EVENT_BATCH`]), in order, each
    /// run of status updates at once (see [`Core::on_updates`]); false if the stream must be
    /// given up.
    async fn events(&mut self, first: Event, stream: &mut Option<Stream>) -> bool {
        let mut batch = vec![first];
        if let Some(s) = stream {
            while batch.len() < EVENT_BATCH {
                match s.events.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
        }
        let mut updates = Vec::new();
        for e in batch {
            match e {
                Event::Update(st) => updates.push(st),
                other => {
                    self.updates(std::mem::take(&mut updates)).await;
                    if !self.event(other).await {
                        return false;
                    }
                }
            }
        }
        self.updates(updates).await;
        true
    }

    async fn updates(&mut self, updates: Vec<crate::proto::TaskStatus>) {
        if updates.is_empty() {
            return;
        }
        let events = &self.events;
        let acts = self
            .core
            .on_updates_seen(&updates, now(), now_secs(), |before, after, st| {
                events.task_update(before, after, st)
            });
        self.dirty = true;
        self.perform(acts).await;
    }

    /// Handles an event; false if the stream must be given up.
    async fn event(&mut self, e: Event) -> bool {
        match e {
            Event::Subscribed { .. } => {
                // Learn the state of every task the master knows of ours (a restart, a failover).
                // Explicitly for the instances we know (the master answers TASK_UNKNOWN for
                // those it lost), then implicitly for every task it has of ours.
                self.reconcile_known().await;
                self.call(json!({"type": "RECONCILE", "reconcile": {"tasks": []}}))
                    .await;
                self.call(json!({"type": "REVIVE"})).await;
            }
            Event::Offers(offers) => {
                let views: Vec<OfferView> = offers.iter().map(OfferView::of).collect();
                let mut ids = || uuid::Uuid::new_v4().to_string();
                let acts = self.core.on_offers(&views, now(), now_secs(), &mut ids);
                if acts.iter().any(|a| matches!(a, Action::Launch { .. })) {
                    // The instance ↔ task mapping is saved before a task can start.
                    self.dirty = true;
                    if let Err(e) = self.flush().await {
                        tracing::warn!(error = %e, "services: cannot save before launching");
                    }
                }
                self.perform(acts).await;
            }
            Event::Update(st) => self.updates(vec![st]).await,
            Event::Error(message) => {
                tracing::warn!(%message, "services: the master ended the subscription");
                return false;
            }
            Event::Rescind(_) | Event::Failure { .. } | Event::Heartbeat => {}
        }
        true
    }

    /// Tells the master an instance's health from our own (HTTP/TCP) checks when it changed, so
    /// that discovery publishes only healthy instances. Not yet healthy (in the grace period)
    /// counts as unhealthy there.
    async fn report_health(&mut self, task: &str) {
        let (Some(fid), Some(i)) = (&self.framework_id, self.core.instances.get(task)) else {
            return;
        };
        let healthy = i.healthy == Some(true);
        if self.reported_health.insert(task.to_string(), healthy) == Some(healthy) {
            return;
        }
        let cmd = MasterCommand::TaskHealth {
            framework_id: fid.clone(),
            task_id: task.to_string(),
            healthy,
        };
        if self.master.tell(cmd).await.is_err() {
            // The master is stopping: nothing to publish any more.
            return;
        }
        let live = &self.core.instances;
        self.reported_health.retain(|t, _| live.contains_key(t));
    }

    fn saved(&self) -> Saved {
        Saved {
            framework_id: self.framework_id.clone(),
            apps: self
                .core
                .apps
                .values()
                .map(|e| SavedApp {
                    definition: Value::Object(e.app.raw.clone()),
                    version: e.version.clone(),
                    previous: e
                        .previous
                        .as_ref()
                        .map(|(a, v)| (Value::Object(a.raw.clone()), v.clone())),
                })
                .collect(),
            instances: self.core.instances.values().cloned().collect(),
        }
    }

    async fn flush(&mut self) -> Result<(), ServiceError> {
        if !self.dirty {
            return Ok(());
        }
        let saved = self.saved();
        let store = self.store.clone();
        self.dirty = false;
        let r = tokio::task::spawn_blocking(move || store.save(&saved)).await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.dirty = true;
                Err(e.into())
            }
            Err(_) => {
                self.dirty = true;
                Err(ServiceError::Unavailable)
            }
        }
    }

    fn locked(&self, id: &AppId, force: bool) -> Result<(), ServiceError> {
        match self.core.apps.get(id).and_then(|e| e.deployment.clone()) {
            Some(d) if !force => Err(ServiceError::Locked {
                deployments: vec![d],
            }),
            _ => Ok(()),
        }
    }

    fn change() -> Change {
        Change {
            version: iso_time(now_secs()),
            deployment_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    async fn command(&mut self, c: ServiceCommand) {
        match c {
            ServiceCommand::PutApp {
                app,
                create_only,
                force,
                reply,
            } => {
                let r = self.put(*app, create_only, force).await;
                let _ = reply.send(r);
            }
            ServiceCommand::RemoveApp { id, force, reply } => {
                let r = self.remove(&id, force).await;
                let _ = reply.send(r);
            }
            ServiceCommand::Restart { id, force, reply } => {
                let r = self.restart(&id, force).await;
                let _ = reply.send(r);
            }
            ServiceCommand::KillTasks {
                task_ids,
                scale,
                reply,
            } => {
                let mut killed: Vec<Instance> = Vec::new();
                let mut acts = Vec::new();
                for t in &task_ids {
                    if let Some(i) = self.core.instances.get(t).cloned()
                        && let Some(a) = self.core.kill_task(t, scale)
                    {
                        killed.push(i);
                        acts.extend(a);
                    }
                }
                self.dirty = true;
                let r = self.flush().await.map(|()| killed);
                self.perform(acts).await;
                let _ = reply.send(r);
            }
            ServiceCommand::CancelDeployment { id, force, reply } => {
                let r = self.cancel(&id, force).await;
                let _ = reply.send(r);
            }
            ServiceCommand::Events { reply } => {
                let _ = reply.send(self.events.subscribe());
            }
            ServiceCommand::Snapshot { reply } => {
                let _ = reply.send(Arc::new(self.snapshot()));
            }
        }
    }

    async fn remove(&mut self, id: &AppId, force: bool) -> Result<Change, ServiceError> {
        if !self.core.apps.contains_key(id) {
            return Err(ServiceError::AppNotFound(id.to_string()));
        }
        self.locked(id, force)?;
        let app = self.core.apps.get(id).map(|e| e.app.clone());
        let acts = self.core.remove_app(id);
        self.dirty = true;
        self.flush().await?;
        self.perform(acts).await;
        let ch = Self::change();
        if let Some(app) = app {
            self.events.removed(&app, &ch);
        }
        Ok(ch)
    }

    async fn restart(&mut self, id: &AppId, force: bool) -> Result<Change, ServiceError> {
        if !self.core.apps.contains_key(id) {
            return Err(ServiceError::AppNotFound(id.to_string()));
        }
        self.locked(id, force)?;
        let ch = Self::change();
        let acts = self
            .core
            .restart(id, ch.version.clone(), ch.deployment_id.clone(), now());
        self.dirty = true;
        self.flush().await?;
        self.perform(acts).await;
        Ok(ch)
    }

    async fn put(
        &mut self,
        app: App,
        create_only: bool,
        force: bool,
    ) -> Result<Change, ServiceError> {
        if create_only && self.core.apps.contains_key(&app.id) {
            return Err(ServiceError::Exists(app.id.to_string()));
        }
        self.locked(&app.id, force)?;
        self.events.posted(&app);
        let mut ch = Self::change();
        let acts = self.core.put_app(
            app.clone(),
            ch.version.clone(),
            ch.deployment_id.clone(),
            now(),
        );
        if let Some(e) = self.core.apps.get(&app.id) {
            ch.version = e.version.clone(); // a scale keeps the version
        }
        self.dirty = true;
        self.flush().await?;
        self.perform(acts).await;
        Ok(ch)
    }

    async fn cancel(
        &mut self,
        deployment: &str,
        force: bool,
    ) -> Result<Option<Change>, ServiceError> {
        let Some(id) = self
            .core
            .apps
            .iter()
            .find(|(_, e)| e.deployment.as_deref() == Some(deployment))
            .map(|(id, _)| id.clone())
        else {
            return Err(ServiceError::DeploymentNotFound(deployment.to_string()));
        };
        let e = self.core.apps.get_mut(&id).expect("invariant: found above");
        e.deployment = None;
        if force {
            self.events.cancelled(&id);
            return Ok(None);
        }
        let ch = Self::change();
        let acts = match e.previous.clone() {
            // Back to the definition and version before: its instances count as current again.
            Some((prev, version)) => {
                self.core
                    .put_app(prev, version, ch.deployment_id.clone(), now())
            }
            // A first deployment rolls back to no app at all.
            None => self.core.remove_app(&id),
        };
        self.dirty = true;
        self.flush().await?;
        self.perform(acts).await;
        Ok(Some(ch))
    }

    fn snapshot(&self) -> Snapshot {
        let t = now();
        let waiting: std::collections::BTreeMap<AppId, u32> =
            self.core.waiting().into_iter().collect();
        Snapshot {
            apps: self
                .core
                .apps
                .iter()
                .map(|(id, e)| AppView {
                    entry: e.clone(),
                    waiting: waiting.get(id).copied().unwrap_or(0),
                    delay_secs: e
                        .launch_after
                        .filter(|a| *a > t)
                        .map(|a| (a - t).as_secs_f64()),
                })
                .collect(),
            instances: self.core.instances.values().cloned().collect(),
            framework_id: self.framework_id.clone(),
            connected: self.stream_id.is_some(),
        }
    }
}

// The scheduler calls the driver makes: `perform`, `call`, `check_acks`.
#[path = "driver_calls.rs"]
mod calls;

/// The next event of the subscription, `None` when it ended (or overflowed); pending forever
/// without one.
async fn next_event(stream: &mut Option<Stream>) -> Option<Event> {
    match stream {
        Some(s) => tokio::select! {
            e = s.events.recv() => e,
            _ = s.overflow.cancelled() => None,
        },
        None => std::future::pending().await,
    }
}
