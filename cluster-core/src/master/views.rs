//! Operator API responses (`POST /api/v1`) in the JSON shapes of Mesos' `master.proto` `Response`.
//! Frameworks and tasks are filtered for the [`Viewer`] (Mesos' `view_frameworks` / `view_tasks`);
//! agents are visible to every authenticated reader (frameworks see them in offers anyway).

use super::command::{OperatorQuery, Viewer};
use super::state::{AgentRec, State, TaskRec};
use crate::allocator::PUBLIC_ROLE;
use crate::proto::{Resources, TaskState};
use serde_json::{Value, json};
use std::collections::HashMap;

fn nanos(secs: f64) -> Value {
    json!({"nanoseconds": (secs * 1e9) as i64})
}

fn task_json(t: &TaskRec) -> Value {
    json!({
        "name": t.info.name,
        "task_id": t.info.task_id,
        "framework_id": {"value": t.framework_id},
        "agent_id": {"value": t.agent_id},
        "state": t.state,
        "resources": t.resources.to_mesos(None, None),
        "statuses": t.statuses,
        "command": t.info.command,
    })
}

impl State {
    pub(super) fn operator(&self, q: OperatorQuery, viewer: &Viewer) -> Value {
        match q {
            OperatorQuery::Health => json!({"type": "GET_HEALTH", "get_health": {"healthy": true}}),
            OperatorQuery::Agents => json!({"type": "GET_AGENTS", "get_agents": self.get_agents()}),
            OperatorQuery::Frameworks => {
                json!({"type": "GET_FRAMEWORKS", "get_frameworks": self.get_frameworks(viewer)})
            }
            OperatorQuery::Tasks => {
                json!({"type": "GET_TASKS", "get_tasks": self.get_tasks(viewer)})
            }
            OperatorQuery::State => json!({"type": "GET_STATE", "get_state": {
                "get_tasks": self.get_tasks(viewer),
                "get_executors": {"executors": []},
                "get_frameworks": self.get_frameworks(viewer),
                "get_agents": self.get_agents(),
            }}),
        }
    }

    fn agent_json(
        &self,
        a: &AgentRec,
        used: &HashMap<&str, Resources>,
        offered: &HashMap<&str, Resources>,
    ) -> Value {
        let reserved = a.public.then_some(PUBLIC_ROLE);
        let port = a
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u64>().ok())
            .unwrap_or(0);
        let note = a.task_user.as_ref().map(|u| {
            format!(
                "the agent is not root: every task on it runs as {u}, whatever user it asks for"
            )
        });
        json!({
            "agent_info": {
                "id": {"value": a.id},
                "hostname": a.hostname,
                "port": port,
                "resources": a.total.to_mesos(reserved, None),
                "attributes": a.attributes,
            },
            // Mesos: a deactivated (or draining) agent is not active.
            "active": a.reachable && !a.deactivated,
            "deactivated": a.deactivated,
            "drain_info": a.drain,
            "version": a.version,
            "pid": format!("slave(1)@{}", a.url.trim_start_matches("http://")),
            "url": a.url,
            "public": a.public,
            // dccore extension: null when the agent runs each task as the user the rules decide.
            "task_user": a.task_user,
            "task_user_note": note,
            "registered_time": nanos(a.registered_time),
            "total_resources": a.total.to_mesos(reserved, None),
            "allocated_resources": used.get(a.id.as_str()).map(|r| r.to_mesos(reserved, None)).unwrap_or_default(),
            "offered_resources": offered.get(a.id.as_str()).map(|r| r.to_mesos(reserved, None)).unwrap_or_default(),
        })
    }

    fn get_agents(&self) -> Value {
        let mut used: HashMap<&str, Resources> = HashMap::new();
        for t in self.tasks.values().filter(|t| t.holds_resources) {
            used.entry(t.agent_id.as_str())
                .or_default()
                .add(&t.resources);
        }
        let mut offered: HashMap<&str, Resources> = HashMap::new();
        for o in self.offers.values() {
            offered
                .entry(o.agent_id.as_str())
                .or_default()
                .add(&o.resources);
        }
        let agents: Vec<Value> = self
            .agents
            .values()
            .filter(|a| a.reachable)
            .map(|a| self.agent_json(a, &used, &offered))
            .collect();
        let recovered: Vec<Value> = self
            .agents
            .values()
            .filter(|a| !a.reachable && a.recovered)
            .map(|a| json!({"id": {"value": a.id}, "hostname": a.hostname}))
            .collect();
        let unreachable: Vec<Value> = self
            .agents
            .values()
            .filter(|a| !a.reachable && !a.recovered)
            .map(|a| self.agent_json(a, &used, &offered))
            .collect();
        json!({"agents": agents, "recovered_agents": recovered, "unreachable_agents": unreachable})
    }

    fn get_frameworks(&self, viewer: &Viewer) -> Value {
        let frameworks: Vec<Value> = self
            .frameworks
            .values()
            .filter(|f| self.sees_framework(viewer, f))
            .map(|f| {
                let mut alloc = Resources::default();
                for t in self
                    .tasks
                    .values()
                    .filter(|t| t.framework_id == f.id && t.holds_resources)
                {
                    alloc.add(&t.resources);
                }
                let mut offered = Resources::default();
                for o in self.offers.values().filter(|o| o.framework_id == f.id) {
                    offered.add(&o.resources);
                }
                json!({
                    "name": f.info.name,
                    "framework_info": f.info_raw,
                    "active": f.stream.is_some(),
                    "connected": f.stream.is_some(),
                    "recovered": f.registered_time == 0.0,
                    "registered_time": nanos(f.registered_time),
                    "allocated_resources": alloc.to_mesos(None, None),
                    "offered_resources": offered.to_mesos(None, None),
                })
            })
            .collect();
        // Only ids are kept of removed frameworks, not whose they were: operator only.
        let removed: Vec<Value> = match viewer {
            Viewer::Operator => self
                .removed_frameworks
                .iter()
                .map(|id| json!({"framework_info": {"id": {"value": id}}}))
                .collect(),
            Viewer::Principal(_) => Vec::new(),
        };
        json!({"frameworks": frameworks, "completed_frameworks": removed})
    }

    fn get_tasks(&self, viewer: &Viewer) -> Value {
        let visible = |t: &&TaskRec| self.sees_task(viewer, t);
        let mut tasks: Vec<&TaskRec> = self
            .tasks
            .values()
            .filter(|t| t.state != TaskState::Unreachable && !t.state.is_terminal())
            .filter(visible)
            .collect();
        tasks.sort_by(|a, b| {
            (&a.framework_id, &a.info.task_id).cmp(&(&b.framework_id, &b.info.task_id))
        });
        let unreachable: Vec<Value> = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Unreachable)
            .filter(visible)
            .map(task_json)
            .collect();
        // Terminal tasks still waiting for acknowledgement count as completed already.
        let completed: Vec<Value> = self
            .completed_tasks
            .iter()
            .chain(self.tasks.values().filter(|t| t.state.is_terminal()))
            .filter(visible)
            .map(task_json)
            .collect();
        json!({
            "tasks": tasks.into_iter().map(task_json).collect::<Vec<_>>(),
            "unreachable_tasks": unreachable,
            "completed_tasks": completed,
        })
    }
}
