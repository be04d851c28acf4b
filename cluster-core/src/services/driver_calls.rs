//! The driver's scheduler calls: [`Action`]s turned into calls on the master's command channel,
//! answered in the order they were sent.

use super::Driver;
use crate::master::MasterCommand;
use crate::proto::scheduler::Call;
use crate::services::PRINCIPAL;
use crate::services::scheduler::Action;
use serde_json::{Value, json};

impl Driver {
    pub(super) async fn perform(&mut self, actions: Vec<Action>) {
        let mut revive = false;
        for a in actions {
            let body = match a {
                Action::Revive => {
                    revive = true;
                    continue;
                }
                Action::Launch { offer_id, tasks } => json!({"type": "ACCEPT", "accept": {
                    "offer_ids": [{"value": offer_id}],
                    "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                    "filters": {"refuse_seconds": 0.5}}}),
                Action::Decline {
                    offer_ids,
                    refuse_seconds,
                } => json!({"type": "DECLINE", "decline": {
                    "offer_ids": offer_ids.iter().map(|o| json!({"value": o})).collect::<Vec<_>>(),
                    "filters": {"refuse_seconds": refuse_seconds}}}),
                Action::Kill { task_id, agent_id } => json!({"type": "KILL", "kill": {
                    "task_id": {"value": task_id}, "agent_id": {"value": agent_id}}}),
                Action::Acknowledge {
                    agent_id,
                    task_id,
                    uuid,
                } => json!({"type": "ACKNOWLEDGE", "acknowledge": {
                    "agent_id": {"value": agent_id}, "task_id": {"value": task_id}, "uuid": uuid}}),
            };
            self.call(body).await;
        }
        if revive {
            self.call(json!({"type": "REVIVE"})).await;
        }
    }

    /// Asks the master for the state of every instance we know. Also done every
    /// `RECONCILE_EVERY` (driver.rs): a master does not answer for a task on an agent it
    /// expects back (after its restart), and if that agent never comes, a later answer says so.
    pub(super) async fn reconcile_known(&mut self) {
        self.reconciled_at = tokio::time::Instant::now();
        let known: Vec<Value> = self
            .core
            .instances
            .values()
            .map(|i| json!({"task_id": {"value": i.task_id}, "agent_id": {"value": i.agent_id}}))
            .collect();
        if !known.is_empty() {
            self.call(json!({"type": "RECONCILE", "reconcile": {"tasks": known}}))
                .await;
        }
    }

    /// One scheduler call; failures are logged (the next offer, update or tick repairs them).
    pub(super) async fn call(&mut self, mut body: Value) {
        let (Some(fid), Some(sid)) = (&self.framework_id, &self.stream_id) else {
            return; // not subscribed: reconciliation after subscribing catches up
        };
        body["framework_id"] = json!({"value": fid});
        let kind = body["type"].clone();
        let call: Call = match serde_json::from_value(body) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, ?kind, "services: built a malformed call");
                return;
            }
        };
        let stream_id = Some(sid.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let cmd = MasterCommand::Call {
            call,
            principal: Some(PRINCIPAL.into()),
            stream_id,
            reply,
        };
        if self.master.tell(cmd).await.is_err() {
            tracing::warn!(?kind, "services: call not sent: the master stopped");
            return;
        }
        // The master answers calls in the order they were sent. An acknowledgement's answer
        // is not waited for (a deploy sends one per instance; a lost one only means the
        // master sends the update again): it is looked at later (`check_acks`).
        if kind == "ACKNOWLEDGE" {
            self.acks.push(answer);
            return;
        }
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, ?kind, "services: call refused"),
            Err(_) => tracing::warn!(?kind, "services: call refused: the master stopped"),
        }
    }

    /// Logs the refused acknowledgements among those answered so far.
    pub(super) fn check_acks(&mut self) {
        self.acks.retain_mut(|a| match a.try_recv() {
            Ok(Ok(())) => false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "services: acknowledgement refused");
                false
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => true,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => false,
        });
    }
}
