//! Operator API responses (`POST /api/v1`) in the JSON shapes of Mesos' `master.proto` `Response`.
//! Frameworks and tasks are filtered for the [`Viewer`] (Mesos' `view_frameworks` / `view_tasks`);
//! agents are visible to every authenticated reader (frameworks see them in offers anyway).
//!
//! The owner task only takes a [`View`]: a snapshot of the records a query needs (tasks are
//! shared pointers, so this is a copy of pointers, not of tasks). The caller turns it into JSON
//! with [`View::to_json`] on its own task, so a big `GET_STATE` does not stall allocation.

use super::access::{sees_framework, sees_task};
use super::command::{OperatorQuery, Viewer};
use super::state::State;
use super::tables::{AgentRec, FrameworkRec, TaskRec};
use crate::acl::Acls;
use crate::allocator::{Allocation, PUBLIC_ROLE};
use crate::proto::{Resources, TaskState};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// A snapshot of what one operator query shows, taken on the owner task.
pub struct View {
    query: OperatorQuery,
    viewer: Viewer,
    acls: Arc<Acls>,
    agents: Vec<AgentRec>,
    /// Frameworks with whether each is connected.
    frameworks: Vec<(FrameworkRec, bool)>,
    removed: Vec<String>,
    tasks: Vec<Arc<TaskRec>>,
    completed: Vec<Arc<TaskRec>>,
    offered_by_agent: HashMap<String, Resources>,
    offered_by_framework: HashMap<String, Resources>,
    /// `GET_ALLOCATION`: the last cycle and how many there were.
    allocation: Option<(u64, Allocation)>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("query", &self.query)
            .field("agents", &self.agents.len())
            .field("frameworks", &self.frameworks.len())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Takes the snapshot a query needs.
    pub(super) fn snapshot(&self, query: OperatorQuery, viewer: Viewer) -> View {
        let t = &self.tables;
        let all = matches!(query, OperatorQuery::State);
        let needs_agents = all || query == OperatorQuery::Agents;
        let needs_frameworks = all
            || matches!(
                query,
                OperatorQuery::Frameworks | OperatorQuery::Tasks | OperatorQuery::Allocation
            );
        let needs_tasks =
            all || query != OperatorQuery::Health && query != OperatorQuery::Allocation;
        let (offered_by_agent, offered_by_framework) =
            if all || matches!(query, OperatorQuery::Agents | OperatorQuery::Frameworks) {
                self.offers.totals()
            } else {
                Default::default()
            };
        View {
            query,
            viewer,
            acls: self.acls.clone(),
            agents: if needs_agents {
                t.agents.iter().cloned().collect()
            } else {
                Vec::new()
            },
            frameworks: if needs_frameworks {
                t.frameworks
                    .iter()
                    .map(|f| (f.clone(), self.conns.is_connected(&f.id)))
                    .collect()
            } else {
                Vec::new()
            },
            removed: if needs_frameworks {
                t.frameworks.removed().cloned().collect()
            } else {
                Vec::new()
            },
            tasks: if needs_tasks {
                t.tasks.shared().cloned().collect()
            } else {
                Vec::new()
            },
            completed: if all || query == OperatorQuery::Tasks {
                t.tasks.completed_shared().cloned().collect()
            } else {
                Vec::new()
            },
            offered_by_agent,
            offered_by_framework,
            allocation: (query == OperatorQuery::Allocation)
                .then(|| (self.stats.cycles, self.stats.last.clone())),
        }
    }
}

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

impl View {
    /// The Mesos JSON response.
    pub fn to_json(&self) -> Value {
        match self.query {
            OperatorQuery::Health => json!({"type": "GET_HEALTH", "get_health": {"healthy": true}}),
            OperatorQuery::Agents => json!({"type": "GET_AGENTS", "get_agents": self.get_agents()}),
            OperatorQuery::Frameworks => {
                json!({"type": "GET_FRAMEWORKS", "get_frameworks": self.get_frameworks()})
            }
            OperatorQuery::Tasks => json!({"type": "GET_TASKS", "get_tasks": self.get_tasks()}),
            OperatorQuery::State => json!({"type": "GET_STATE", "get_state": {
                "get_tasks": self.get_tasks(),
                "get_executors": {"executors": []},
                "get_frameworks": self.get_frameworks(),
                "get_agents": self.get_agents(),
            }}),
            OperatorQuery::Allocation => {
                json!({"type": "GET_ALLOCATION", "get_allocation": self.get_allocation()})
            }
        }
    }

    fn agent_json(&self, a: &AgentRec, used: &HashMap<&str, Resources>) -> Value {
        let i = &a.info;
        let reserved = i.public.then_some(PUBLIC_ROLE);
        let port = i
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u64>().ok())
            .unwrap_or(0);
        let note = i.task_user.as_ref().map(|u| {
            format!(
                "the agent is not root: every task on it runs as {u}, whatever user it asks for"
            )
        });
        json!({
            "agent_info": {
                "id": {"value": i.id},
                "hostname": i.hostname,
                "port": port,
                "resources": i.total.to_mesos(reserved, None),
                "attributes": i.attributes,
            },
            // Mesos: a deactivated (or draining) agent is not active.
            "active": a.reachable && !a.deactivated,
            "deactivated": a.deactivated,
            "drain_info": a.drain,
            "version": i.version,
            "pid": format!("slave(1)@{}", i.url.trim_start_matches("http://")),
            "url": i.url,
            "public": i.public,
            // dccore extension: null when the agent runs each task as the user the rules decide.
            "task_user": i.task_user,
            "task_user_note": note,
            "registered_time": nanos(a.registered_time),
            "total_resources": i.total.to_mesos(reserved, None),
            "allocated_resources": used.get(i.id.as_str()).map(|r| r.to_mesos(reserved, None)).unwrap_or_default(),
            "offered_resources": self.offered_by_agent.get(&i.id).map(|r| r.to_mesos(reserved, None)).unwrap_or_default(),
        })
    }

    fn get_agents(&self) -> Value {
        let mut used: HashMap<&str, Resources> = HashMap::new();
        for t in self.tasks.iter().filter(|t| t.holds_resources) {
            used.entry(t.agent_id.as_str())
                .or_default()
                .add(&t.resources);
        }
        let agents: Vec<Value> = self
            .agents
            .iter()
            .filter(|a| a.reachable)
            .map(|a| self.agent_json(a, &used))
            .collect();
        let recovered: Vec<Value> = self
            .agents
            .iter()
            .filter(|a| !a.reachable && a.recovered)
            .map(|a| json!({"id": {"value": a.info.id}, "hostname": a.info.hostname}))
            .collect();
        let unreachable: Vec<Value> = self
            .agents
            .iter()
            .filter(|a| !a.reachable && !a.recovered)
            .map(|a| self.agent_json(a, &used))
            .collect();
        json!({"agents": agents, "recovered_agents": recovered, "unreachable_agents": unreachable})
    }

    fn get_frameworks(&self) -> Value {
        let mut alloc: HashMap<&str, Resources> = HashMap::new();
        for t in self.tasks.iter().filter(|t| t.holds_resources) {
            alloc
                .entry(t.framework_id.as_str())
                .or_default()
                .add(&t.resources);
        }
        let frameworks: Vec<Value> = self
            .frameworks
            .iter()
            .filter(|(f, _)| sees_framework(&self.acls, &self.viewer, f))
            .map(|(f, connected)| {
                let none = Resources::default();
                json!({
                    "name": f.info.name,
                    "framework_info": f.info_raw,
                    "active": connected,
                    "connected": connected,
                    "recovered": f.registered_time == 0.0,
                    "registered_time": nanos(f.registered_time),
                    "allocated_resources": alloc.get(f.id.as_str()).unwrap_or(&none).to_mesos(None, None),
                    "offered_resources": self.offered_by_framework.get(&f.id).unwrap_or(&none).to_mesos(None, None),
                })
            })
            .collect();
        // Only ids are kept of removed frameworks, not whose they were: operator only.
        let removed: Vec<Value> = match self.viewer {
            Viewer::Operator => self
                .removed
                .iter()
                .map(|id| json!({"framework_info": {"id": {"value": id}}}))
                .collect(),
            Viewer::Principal(_) => Vec::new(),
        };
        json!({"frameworks": frameworks, "completed_frameworks": removed})
    }

    fn get_tasks(&self) -> Value {
        let principals: HashMap<&str, Option<&str>> = self
            .frameworks
            .iter()
            .map(|(f, _)| (f.id.as_str(), f.principal.as_deref()))
            .collect();
        let visible = |t: &&TaskRec| {
            let owner = principals.get(t.framework_id.as_str()).copied().flatten();
            sees_task(&self.acls, &self.viewer, t, owner)
        };
        let live = || self.tasks.iter().map(|t| &**t);
        let mut tasks: Vec<&TaskRec> = live()
            .filter(|t| t.state != TaskState::Unreachable && !t.state.is_terminal())
            .filter(visible)
            .collect();
        tasks.sort_by(|a, b| {
            (&a.framework_id, &a.info.task_id).cmp(&(&b.framework_id, &b.info.task_id))
        });
        let unreachable: Vec<Value> = live()
            .filter(|t| t.state == TaskState::Unreachable)
            .filter(visible)
            .map(task_json)
            .collect();
        // Terminal tasks still waiting for acknowledgement count as completed already.
        let completed: Vec<Value> = self
            .completed
            .iter()
            .map(|t| &**t)
            .chain(live().filter(|t| t.state.is_terminal()))
            .filter(visible)
            .map(task_json)
            .collect();
        json!({
            "tasks": tasks.into_iter().map(task_json).collect::<Vec<_>>(),
            "unreachable_tasks": unreachable,
            "completed_tasks": completed,
        })
    }

    /// dccore's `GET_ALLOCATION`: why agents and frameworks got no offer in the last cycle.
    fn get_allocation(&self) -> Value {
        let Some((cycles, last)) = &self.allocation else {
            return Value::Null;
        };
        let agents: Vec<Value> = last
            .unoffered
            .iter()
            .map(|u| {
                json!({
                    "agent_id": {"value": u.agent},
                    "reason": u.reason,
                    "message": u.message(),
                    "frameworks_refusing": u.skips,
                })
            })
            .collect();
        let visible: HashMap<&str, &FrameworkRec> = self
            .frameworks
            .iter()
            .filter(|(f, _)| sees_framework(&self.acls, &self.viewer, f))
            .map(|(f, _)| (f.id.as_str(), f))
            .collect();
        let frameworks: Vec<Value> = last
            .passed_over
            .iter()
            .filter(|p| visible.contains_key(p.framework.as_str()))
            .map(|p| {
                json!({
                    "framework_id": {"value": p.framework},
                    "reason": p.reason,
                    "agents": p.agents,
                })
            })
            .collect();
        let by_reason: serde_json::Map<String, Value> = last
            .agents_by_reason()
            .into_iter()
            .map(|(r, n)| {
                let name = serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (name, json!(n))
            })
            .collect();
        json!({
            "allocation_cycles": cycles,
            "agents_not_offered": by_reason,
            "unoffered_agents": agents,
            "passed_over_frameworks": frameworks,
        })
    }
}
