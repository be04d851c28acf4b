//! The masters' group in a plan: which master changes found, join or leave the replicated group,
//! and with which ids. Pure, like the rest of the planner.
//!
//! The masters are one Raft group. Ids are given once per machine, in creation order, and never
//! again ([`State::next_replica_id`]): a master on a new machine (a dead one replaced, a role
//! change) is a new member. Rules, in the masters' wave order (one master at a time):
//! - no live member yet: the first master that starts founds the group alone (`replica_init`);
//! - every other master that is not a member joins through the leader (`join-group`: ADD_MASTER,
//!   then it waits until it is a voter) before it is called healthy;
//! - a master whose machine is made again first has its old id removed (`leave-group`), while
//!   the others still hold a majority, and joins under a new id;
//! - a master removed by a scale-down leaves the group before its machine is destroyed.

use super::{Action, NodeChange, Step};
use crate::spec::Role;
use crate::state::{NodeState, NodeStatus, State};

/// Whether `n` counts as a member the others can reach: a voter (as dcform recorded) whose
/// machine still exists with the core installed. A gone or half-made machine is not.
fn live_member(n: &NodeState) -> bool {
    n.role == Role::Master
        && n.replica_member
        && n.replica_id.is_some()
        && (NodeStatus::Installed..=NodeStatus::Running).contains(&n.status)
}

/// Sets the membership steps and ids of the master changes (`masters`, in wave order) and of
/// the master removals.
pub(super) fn plan_group(state: &State, masters: &mut [NodeChange], removals: &mut [NodeChange]) {
    let mut next = state.next_replica_id();
    let mut members: Vec<String> = state
        .nodes
        .iter()
        .filter(|n| live_member(n))
        .map(|n| n.name.clone())
        .collect();
    for c in masters.iter_mut() {
        let node = state.node(&c.node);
        let new_machine = c.steps.contains(&Step::CreateNode);
        let others = members.iter().any(|m| *m != c.node);
        let old_id = node.and_then(|n| n.replica_id);
        let id = match old_id {
            Some(id) if !new_machine => id,
            _ => {
                next += 1;
                next - 1
            }
        };
        c.replica_id = Some(id);
        let is_member = !new_machine && node.is_some_and(|n| n.replica_member);
        if new_machine {
            members.retain(|m| *m != c.node);
            if let Some(old) = old_id
                && others
            {
                c.leaves_replica_id = Some(old);
                c.steps.insert(0, Step::LeaveGroup);
            }
        }
        if is_member {
            continue;
        }
        if c.action == Action::NoOp {
            // Installed and running as it should, but never joined (an apply stopped between
            // its start and its join): only the join is left.
            c.action = Action::Install;
            c.reason = "not yet a member of the masters' group".into();
            c.steps = vec![Step::WaitHealthy];
        }
        if others {
            let at = c
                .steps
                .iter()
                .position(|s| *s == Step::WaitHealthy)
                .unwrap_or(c.steps.len());
            c.steps.insert(at, Step::JoinGroup);
        } else if c.steps.contains(&Step::Start) || c.steps.contains(&Step::Restart) {
            c.founds_group = true;
        } else {
            // A founder must start with `replica_init` in its config: write it and restart.
            c.steps = vec![Step::Configure, Step::Restart, Step::WaitHealthy];
            c.founds_group = true;
        }
        members.push(c.node.clone());
    }
    for c in removals.iter_mut().filter(|c| c.role == Role::Master) {
        let Some(node) = state.node(&c.node) else {
            continue;
        };
        members.retain(|m| *m != c.node);
        if let Some(id) = node.replica_id
            && !members.is_empty()
        {
            c.replica_id = Some(id);
            c.leaves_replica_id = Some(id);
            c.steps.insert(0, Step::LeaveGroup);
        }
    }
}
