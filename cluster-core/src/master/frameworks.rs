//! Frameworks: SUBSCRIBE (and failover), disconnection and the failover timeout, TEARDOWN.
//! The other scheduler calls are in `calls.rs`.

use super::command::{CallError, Subscription};
use super::state::State;
use super::streams::Stream;
use super::tables::{Change, FrameworkRec};
use crate::proto::Id;
use crate::proto::scheduler::{Event, FrameworkInfo};
use serde_json::Value;
use tokio::time::Instant;

impl State {
    pub(super) fn subscribe(
        &mut self,
        info_raw: Value,
        info: FrameworkInfo,
        framework_id: Option<String>,
        principal: Option<String>,
        now: Instant,
    ) -> Result<Subscription, CallError> {
        if let (Some(p), Some(claimed)) = (&principal, &info.principal)
            && p != claimed
        {
            return Err(CallError::Forbidden(format!(
                "framework_info.principal {claimed:?} does not match the authenticated principal {p:?}"
            )));
        }
        let id = framework_id
            .or_else(|| info.id.as_ref().map(|i| i.value.clone()))
            .filter(|v| !v.is_empty());
        if let Some(id) = &id {
            if self.tables.frameworks.is_removed(id) {
                return Err(CallError::Forbidden(format!(
                    "framework {id} has been torn down"
                )));
            }
            match self.tables.frameworks.get(id) {
                Some(f) if f.principal.is_some() && f.principal != principal => {
                    return Err(CallError::Forbidden(format!(
                        "framework {id} belongs to another principal"
                    )));
                }
                Some(_) => {}
                // Ids are issued by this master (and kept in the registry); accepting a
                // client-chosen one would let it claim a torn-down framework's id (once it has
                // left the bounded removed list) and adopt its orphaned tasks.
                None => {
                    return Err(CallError::Forbidden(format!(
                        "framework {id} is not known to this master: framework ids are assigned by the master; subscribe without framework_id to get a new one"
                    )));
                }
            }
        }
        let id = match id {
            Some(id) => id,
            None => {
                self.check_framework_limit(principal.as_deref())?;
                new_framework_id()
            }
        };
        let (stream, events, overflow) = Stream::new(uuid::Uuid::new_v4().to_string());
        let stream_id = stream.id.clone();
        stream.send(
            &id,
            Event::Subscribed {
                framework_id: Id::new(&id),
                heartbeat_interval_seconds: self.cfg.framework_heartbeat.as_secs_f64(),
                master_id: self.master_id.clone(),
            },
        );
        let failover_timeout = self.failover_timeout(&info);
        let mut info_raw = info_raw;
        if let Some(obj) = info_raw.as_object_mut() {
            obj.insert("id".into(), serde_json::json!({"value": id}));
        }
        let failover = self.tables.frameworks.contains(&id);
        tracing::info!(framework = %id, name = %info.name, failover, "framework subscribed");
        let framework = FrameworkRec {
            id: id.clone(),
            info_raw,
            info,
            principal,
            failover_timeout,
            registered_time: crate::proto::now_secs(),
        };
        self.apply(
            if failover {
                Change::FrameworkFailedOver { framework }
            } else {
                Change::FrameworkAdded { framework }
            },
            now,
        );
        // Replacing the connection drops the old stream's sender, which ends the old stream.
        self.conns.connect(&id, stream);
        self.alloc.set_framework_active(&id, true);
        // Offers made to the previous connection are void.
        self.withdraw_framework_offers(&id);
        // Resend every unacknowledged update on the new stream right away.
        let unacked: Vec<_> = self
            .tables
            .tasks
            .unacked()
            .filter(|k| k.0 == id)
            .cloned()
            .collect();
        for k in unacked {
            self.local.last_sent.remove(&k);
        }
        self.alloc_pending = true;
        // SUBSCRIBED is already queued, so the resent updates follow it on the stream.
        self.retry_updates(now);
        Ok(Subscription {
            framework_id: id,
            stream_id,
            events,
            overflow,
        })
    }

    /// A principal may hold only `max_frameworks_per_principal` frameworks (connected or
    /// within their failover timeout), so one client cannot exhaust the master.
    fn check_framework_limit(&self, principal: Option<&str>) -> Result<(), CallError> {
        let max = self.cfg.max_frameworks_per_principal;
        let have = self
            .tables
            .frameworks
            .iter()
            .filter(|f| f.principal.as_deref() == principal)
            .count();
        if have < max {
            return Ok(());
        }
        let who = principal.map_or("frameworks without a principal".to_string(), |p| {
            format!("principal {p:?}")
        });
        Err(CallError::Forbidden(format!(
            "{who} already registered {have} frameworks (max_frameworks_per_principal is {max}): tear one down, or re-subscribe with an existing framework id"
        )))
    }

    pub(super) fn stream_closed(&mut self, framework_id: &str, stream_id: &str, now: Instant) {
        if !self.conns.disconnect(framework_id, stream_id, now) {
            return; // an older stream, already replaced
        }
        let timeout = self
            .tables
            .frameworks
            .get(framework_id)
            .map(|f| f.failover_timeout)
            .unwrap_or_default();
        tracing::info!(framework = %framework_id, "framework disconnected; failover timeout {timeout:?}");
        self.alloc.set_framework_active(framework_id, false);
        self.rescind_framework_offers(framework_id);
    }

    pub(super) fn check_frameworks(&mut self, now: Instant) {
        for id in self.conns.expired(&self.tables.frameworks, now) {
            tracing::warn!(framework = %id, "failover timeout expired: tearing down");
            self.teardown(&id, now);
        }
    }

    /// Removes a framework: its offers withdrawn, its tasks killed, its id retired.
    pub(super) fn teardown(&mut self, framework_id: &str, now: Instant) {
        self.rescind_framework_offers(framework_id);
        for k in self.tables.tasks.of_framework(framework_id) {
            if self
                .tables
                .tasks
                .get(&k)
                .is_some_and(|t| !t.state.is_terminal())
            {
                // An unreachable agent's tasks are killed when it re-registers: their framework
                // is unknown then.
                self.kill_on_agent(&k, None);
            }
        }
        self.apply(
            Change::FrameworkRemoved {
                framework_id: framework_id.to_string(),
            },
            now,
        );
    }
}

/// A framework id that is unique for the life of the cluster: a fresh uuid v4 (never derived
/// from a count, which repeats once a framework is removed), in Mesos' `<uuid>-0000` shape.
pub(super) fn new_framework_id() -> String {
    format!("{}-0000", uuid::Uuid::new_v4())
}
