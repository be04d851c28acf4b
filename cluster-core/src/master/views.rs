//! Operator API responses (`POST /api/v1`) in the JSON shapes of Mesos' `master.proto` `Response`.
//! Frameworks and tasks are filtered for the [`Viewer`] (Mesos' `view_frameworks` / `view_tasks`);
//! agents are visible to every authenticated reader (frameworks see them in offers anyway).
//!
//! The owner task only takes a [`View`]: a snapshot of the records a query needs (tasks are
//! shared pointers, so this is a copy of pointers, not of tasks). The caller turns it into the
//! typed answer of `dccore-api` ([`View::to_response`], the types dcform reads it with) on its
//! own task, so a big `GET_STATE` does not stall allocation.

use super::access::{sees_framework, sees_task};
use super::command::{OperatorQuery, Viewer};
use super::state::State;
use super::tables::{AgentRec, FrameworkRec, TaskRec};
use crate::acl::Acls;
use crate::allocator::{Allocation, PUBLIC_ROLE};
use crate::proto::{Id, Resources, TaskState};
use dccore_api::allocation::{GetAllocation, PassedOverFramework, UnofferedAgent};
use dccore_api::operator::{
    Agent, AgentInfo, CompletedFramework, Framework, FrameworkInfoEcho, GetAgents, GetExecutors,
    GetFrameworks, GetHealth, GetState, GetTasks, RecoveredAgent, Response, Task, TimeInfo,
};
use serde_json::Value;
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

fn task_answer(t: &TaskRec) -> Task {
    Task {
        name: t.info.name.clone(),
        task_id: t.info.task_id.clone(),
        framework_id: Id::new(&t.framework_id),
        agent_id: Id::new(&t.agent_id),
        state: t.state,
        resources: t.resources.to_mesos(None, None),
        statuses: t.statuses.clone(),
        command: t.info.command.clone(),
    }
}

/// A framework's `FrameworkInfo` as it subscribed with it. It was read as a `FrameworkInfo`
/// before it was stored, so it reads as the echo; should it not (a registry written by hand),
/// every field is kept as it is rather than lost.
fn framework_info_echo(raw: &Value) -> FrameworkInfoEcho {
    serde_json::from_value(raw.clone()).unwrap_or_else(|_| FrameworkInfoEcho {
        other: raw
            .as_object()
            .map(|o| o.clone().into_iter().collect())
            .unwrap_or_default(),
        ..Default::default()
    })
}

impl View {
    /// The typed answer (`dccore-api`'s [`Response`], the types clients read it with).
    pub fn to_response(&self) -> Response {
        match self.query {
            OperatorQuery::Health => Response::GetHealth {
                get_health: GetHealth { healthy: true },
            },
            OperatorQuery::Agents => Response::GetAgents {
                get_agents: self.get_agents(),
            },
            OperatorQuery::Frameworks => Response::GetFrameworks {
                get_frameworks: self.get_frameworks(),
            },
            OperatorQuery::Tasks => Response::GetTasks {
                get_tasks: self.get_tasks(),
            },
            OperatorQuery::State => Response::GetState {
                get_state: GetState {
                    get_tasks: self.get_tasks(),
                    get_executors: GetExecutors::default(),
                    get_frameworks: self.get_frameworks(),
                    get_agents: self.get_agents(),
                },
            },
            OperatorQuery::Allocation => Response::GetAllocation {
                get_allocation: self.get_allocation(),
            },
        }
    }

    /// The Mesos JSON of [`View::to_response`].
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_response())
            .expect("invariant: operator answers are plain data (string keys, finite numbers)")
    }

    fn agent_answer(&self, a: &AgentRec, used: &HashMap<&str, Resources>) -> Agent {
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
        let mesos =
            |r: Option<&Resources>| r.map(|r| r.to_mesos(reserved, None)).unwrap_or_default();
        Agent {
            agent_info: AgentInfo {
                id: Id::new(&i.id),
                hostname: i.hostname.clone(),
                port,
                resources: i.total.to_mesos(reserved, None),
                attributes: i.attributes.clone(),
            },
            // Mesos: a deactivated (or draining) agent is not active.
            active: a.reachable && !a.deactivated,
            deactivated: a.deactivated,
            drain_info: a.drain.clone(),
            version: i.version.clone(),
            pid: format!("slave(1)@{}", i.url.trim_start_matches("http://")),
            url: i.url.clone(),
            public: i.public,
            // dccore extension: null when the agent runs each task as the user the rules decide.
            task_user: i.task_user.clone(),
            task_user_note: note,
            registered_time: TimeInfo::from_secs(a.registered_time),
            total_resources: i.total.to_mesos(reserved, None),
            allocated_resources: mesos(used.get(i.id.as_str())),
            offered_resources: mesos(self.offered_by_agent.get(&i.id)),
        }
    }

    fn get_agents(&self) -> GetAgents {
        let mut used: HashMap<&str, Resources> = HashMap::new();
        for t in self.tasks.iter().filter(|t| t.holds_resources) {
            used.entry(t.agent_id.as_str())
                .or_default()
                .add(&t.resources);
        }
        GetAgents {
            agents: self
                .agents
                .iter()
                .filter(|a| a.reachable)
                .map(|a| self.agent_answer(a, &used))
                .collect(),
            recovered_agents: self
                .agents
                .iter()
                .filter(|a| !a.reachable && a.recovered)
                .map(|a| RecoveredAgent {
                    id: Id::new(&a.info.id),
                    hostname: a.info.hostname.clone(),
                })
                .collect(),
            unreachable_agents: self
                .agents
                .iter()
                .filter(|a| !a.reachable && !a.recovered)
                .map(|a| self.agent_answer(a, &used))
                .collect(),
        }
    }

    fn get_frameworks(&self) -> GetFrameworks {
        let mut alloc: HashMap<&str, Resources> = HashMap::new();
        for t in self.tasks.iter().filter(|t| t.holds_resources) {
            alloc
                .entry(t.framework_id.as_str())
                .or_default()
                .add(&t.resources);
        }
        let none = Resources::default();
        let frameworks = self
            .frameworks
            .iter()
            .filter(|(f, _)| sees_framework(&self.acls, &self.viewer, f))
            .map(|(f, connected)| Framework {
                name: f.info.name.clone(),
                framework_info: framework_info_echo(&f.info_raw),
                active: *connected,
                connected: *connected,
                recovered: f.registered_time == 0.0,
                registered_time: TimeInfo::from_secs(f.registered_time),
                allocated_resources: alloc
                    .get(f.id.as_str())
                    .unwrap_or(&none)
                    .to_mesos(None, None),
                offered_resources: self
                    .offered_by_framework
                    .get(&f.id)
                    .unwrap_or(&none)
                    .to_mesos(None, None),
            })
            .collect();
        // Only ids are kept of removed frameworks, not whose they were: operator only.
        let completed_frameworks = match self.viewer {
            Viewer::Operator => self
                .removed
                .iter()
                .map(|id| CompletedFramework {
                    framework_info: FrameworkInfoEcho {
                        id: Some(Id::new(id)),
                        ..Default::default()
                    },
                })
                .collect(),
            Viewer::Principal(_) => Vec::new(),
        };
        GetFrameworks {
            frameworks,
            completed_frameworks,
        }
    }

    fn get_tasks(&self) -> GetTasks {
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
        GetTasks {
            tasks: tasks.into_iter().map(task_answer).collect(),
            unreachable_tasks: live()
                .filter(|t| t.state == TaskState::Unreachable)
                .filter(visible)
                .map(task_answer)
                .collect(),
            // Terminal tasks still waiting for acknowledgement count as completed already.
            completed_tasks: self
                .completed
                .iter()
                .map(|t| &**t)
                .chain(live().filter(|t| t.state.is_terminal()))
                .filter(visible)
                .map(task_answer)
                .collect(),
        }
    }

    /// dccore's `GET_ALLOCATION`: why agents and frameworks got no offer in the last cycle
    /// (before the first cycle: none, and nothing listed).
    fn get_allocation(&self) -> GetAllocation {
        let (cycles, last) = match &self.allocation {
            Some((cycles, last)) => (*cycles, last),
            None => (0, &Allocation::default()),
        };
        let visible: HashMap<&str, &FrameworkRec> = self
            .frameworks
            .iter()
            .filter(|(f, _)| sees_framework(&self.acls, &self.viewer, f))
            .map(|(f, _)| (f.id.as_str(), f))
            .collect();
        GetAllocation {
            allocation_cycles: cycles,
            agents_not_offered: last.agents_by_reason(),
            unoffered_agents: last
                .unoffered
                .iter()
                .map(|u| UnofferedAgent {
                    agent_id: Id::new(&u.agent),
                    reason: u.reason,
                    message: u.message(),
                    frameworks_refusing: u.skips,
                })
                .collect(),
            passed_over_frameworks: last
                .passed_over
                .iter()
                .filter(|p| visible.contains_key(p.framework.as_str()))
                .map(|p| PassedOverFramework {
                    framework_id: Id::new(&p.framework),
                    reason: p.reason,
                    agents: p.agents,
                })
                .collect(),
        }
    }
}
