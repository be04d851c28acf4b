//! `scheduler.proto` (v1) in its JSON mapping: the [`Call`]s a framework sends to
//! `POST /api/v1/scheduler` and the [`Event`]s the master streams back in RecordIO framing.

use super::{Id, Offer, TaskInfo, TaskStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `FrameworkInfo`: the fields dccore reads (the raw JSON is kept separately for echoing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// Unix user the framework's tasks should run as: a hint, honoured where the rules allow it
    /// (see `master::access`).
    #[serde(default)]
    pub user: String,
    /// Framework name.
    #[serde(default)]
    pub name: String,
    /// Set when re-subscribing (failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Seconds the master keeps a disconnected framework's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout: Option<f64>,
    /// Legacy single role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// MULTI_ROLE roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Principal the framework claims (must match the authenticated one, if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl FrameworkInfo {
    /// The roles to allocate for: `roles`, else `role`, else `*`.
    pub fn effective_roles(&self) -> Vec<String> {
        if !self.roles.is_empty() {
            self.roles.clone()
        } else {
            vec![self.role.clone().unwrap_or_else(|| "*".into())]
        }
    }
}

/// `Call.Subscribe`.
#[derive(Clone, Debug, Deserialize)]
pub struct Subscribe {
    /// The framework's description, kept verbatim too.
    pub framework_info: Value,
}

/// `Filters`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filters {
    /// Do not offer the declined agent's resources again for this long (default 5 s).
    #[serde(default)]
    pub refuse_seconds: Option<f64>,
}

/// `Offer.Operation.Launch`.
#[derive(Clone, Debug, Deserialize)]
pub struct Launch {
    /// Tasks to launch.
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

/// `TaskGroupInfo`.
#[derive(Clone, Debug, Deserialize)]
pub struct TaskGroup {
    /// The tasks.
    #[serde(default)]
    pub tasks: Vec<TaskInfo>,
}

/// `Offer.Operation.LaunchGroup` (tasks are run as independent tasks).
#[derive(Clone, Debug, Deserialize)]
pub struct LaunchGroup {
    /// The group.
    pub task_group: TaskGroup,
}

/// `Offer.Operation`.
#[derive(Clone, Debug, Deserialize)]
pub struct Operation {
    /// `LAUNCH`, `LAUNCH_GROUP`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// For `LAUNCH`.
    #[serde(default)]
    pub launch: Option<Launch>,
    /// For `LAUNCH_GROUP`.
    #[serde(default)]
    pub launch_group: Option<LaunchGroup>,
}

/// `Call.Accept`.
#[derive(Clone, Debug, Deserialize)]
pub struct Accept {
    /// Offers being used (all on one agent).
    pub offer_ids: Vec<Id>,
    /// What to do with them.
    #[serde(default)]
    pub operations: Vec<Operation>,
    /// Filter for the unused remainder.
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// `Call.Decline`.
#[derive(Clone, Debug, Deserialize)]
pub struct Decline {
    /// Offers declined.
    pub offer_ids: Vec<Id>,
    /// How long not to re-offer.
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// `Call.Kill`.
#[derive(Clone, Debug, Deserialize)]
pub struct Kill {
    /// Task to kill.
    pub task_id: Id,
    /// Its agent, if the framework knows it.
    #[serde(default)]
    pub agent_id: Option<Id>,
}

/// `Call.Acknowledge`.
#[derive(Clone, Debug, Deserialize)]
pub struct Acknowledge {
    /// Agent of the task.
    #[serde(default)]
    pub agent_id: Option<Id>,
    /// Task.
    pub task_id: Id,
    /// The update's uuid (base64).
    pub uuid: String,
}

/// `Call.Reconcile.Task`.
#[derive(Clone, Debug, Deserialize)]
pub struct ReconcileTask {
    /// Task to report.
    pub task_id: Id,
    /// Its agent, if known.
    #[serde(default)]
    pub agent_id: Option<Id>,
}

/// `Call.Reconcile`: empty list = implicit reconciliation (all the framework's tasks).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Reconcile {
    /// Tasks to report.
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

/// `Call` as a framework sends it. `type` is kept as a string so an unknown type gets a 400 that names it.
#[derive(Clone, Debug, Deserialize)]
pub struct Call {
    /// `SUBSCRIBE`, `ACCEPT`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Required on every call but SUBSCRIBE.
    #[serde(default)]
    pub framework_id: Option<Id>,
    /// For SUBSCRIBE.
    #[serde(default)]
    pub subscribe: Option<Subscribe>,
    /// For ACCEPT.
    #[serde(default)]
    pub accept: Option<Accept>,
    /// For DECLINE.
    #[serde(default)]
    pub decline: Option<Decline>,
    /// For KILL.
    #[serde(default)]
    pub kill: Option<Kill>,
    /// For ACKNOWLEDGE.
    #[serde(default)]
    pub acknowledge: Option<Acknowledge>,
    /// For RECONCILE.
    #[serde(default)]
    pub reconcile: Option<Reconcile>,
}

/// An event on a framework's subscription stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// First event: the framework's id and the heartbeat interval.
    Subscribed {
        /// Assigned (or kept, on failover) id.
        framework_id: Id,
        /// Seconds between HEARTBEAT events.
        heartbeat_interval_seconds: f64,
        /// Master id (for `master_info`).
        master_id: String,
    },
    /// New offers.
    Offers(Vec<Offer>),
    /// An offer is no longer valid.
    Rescind(Id),
    /// A task status update.
    Update(TaskStatus),
    /// An agent was lost.
    Failure {
        /// The agent.
        agent_id: Id,
    },
    /// A fatal error; the master closes the stream after it.
    Error(String),
    /// Keep-alive.
    Heartbeat,
}

impl Event {
    /// The JSON mapping of the `Event` message.
    pub fn to_json(&self) -> Value {
        match self {
            Event::Subscribed {
                framework_id,
                heartbeat_interval_seconds,
                master_id,
            } => json!({"type": "SUBSCRIBED", "subscribed": {
                "framework_id": framework_id,
                "heartbeat_interval_seconds": heartbeat_interval_seconds,
                "master_info": {"id": master_id, "ip": 0, "port": 0, "hostname": "dccore",
                                "version": crate::MESOS_COMPAT_VERSION},
            }}),
            Event::Offers(offers) => json!({"type": "OFFERS", "offers": {"offers": offers}}),
            Event::Rescind(id) => json!({"type": "RESCIND", "rescind": {"offer_id": id}}),
            Event::Update(status) => json!({"type": "UPDATE", "update": {"status": status}}),
            Event::Failure { agent_id } => {
                json!({"type": "FAILURE", "failure": {"agent_id": agent_id}})
            }
            Event::Error(message) => json!({"type": "ERROR", "error": {"message": message}}),
            Event::Heartbeat => json!({"type": "HEARTBEAT"}),
        }
    }

    /// One RecordIO record: the decimal length of the JSON, a newline, the JSON.
    pub fn to_record(&self) -> Vec<u8> {
        let body = self.to_json().to_string();
        let mut out = format!("{}\n", body.len()).into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Splits complete RecordIO records off the front of `buf` (client side, used by tests and benches).
pub fn take_records(buf: &mut Vec<u8>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
        let Some(len) = std::str::from_utf8(&buf[..nl])
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
        else {
            break;
        };
        if buf.len() < nl + 1 + len {
            break;
        }
        let rec: Vec<u8> = buf.drain(..nl + 1 + len).skip(nl + 1).collect();
        if let Ok(v) = serde_json::from_slice(&rec) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_length_prefixed_and_split_back() {
        let mut buf = Event::Heartbeat.to_record();
        assert!(buf.starts_with(b"20\n{\"type\":\"HEARTBEAT\"}"));
        buf.extend(Event::Error("x".into()).to_record());
        buf.extend_from_slice(b"99\n{");
        let recs = take_records(&mut buf);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1]["error"]["message"], "x");
        assert_eq!(buf, b"99\n{");
    }

    #[test]
    fn parses_a_pymesos_launch_call() {
        let call: Call = serde_json::from_str(r#"{"type":"ACCEPT","framework_id":{"value":"f"},
          "accept":{"offer_ids":[{"value":"o"}],"operations":[{"type":"LAUNCH","launch":{"task_infos":[
          {"task_id":{"value":"t"},"agent_id":{"value":"a"},"name":"bar","command":{"value":"echo hi","shell":true},
           "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}}]}]}}]}}"#)
        .unwrap();
        let ops = &call.accept.unwrap().operations;
        assert_eq!(
            ops[0].launch.as_ref().unwrap().task_infos[0].task_id.value,
            "t"
        );
    }
}
