//! `dcform apply --infra-only`: the part of a plan that makes, starts or removes machines, and nothing
//! that connects to them. Pure, like the rest of the planner.
//!
//! Each change keeps only its provider steps (`create`, `start-machine`, `destroy`); one whose
//! provider work has to wait for a connection first (a running agent's removal drains it over SSH)
//! is left out whole and named, for the next plain apply. With no bootstrap there is no health to
//! wait for between masters, so all creations run as one wave (then removals), which lets the
//! provider launch a pool with few calls. The next plain `apply` sees the nodes `created` and
//! bootstraps them. Service changes need the running cluster: they are all left out.

use super::{Action, Plan, ServiceAction, Step};

/// Steps a provider does without connecting to the machine.
fn is_provider_step(s: Step) -> bool {
    matches!(s, Step::CreateNode | Step::StartNode | Step::DestroyNode)
}

/// The machine-only part of `plan`, and a line for each change left out (why, what runs it).
pub fn infra_only(mut plan: Plan) -> (Plan, Vec<String>) {
    let mut left_out = Vec::new();
    let mut any_create = false;
    for c in plan.changes.iter_mut() {
        if c.action == Action::NoOp {
            continue;
        }
        let last_provider = c.steps.iter().rposition(|s| is_provider_step(*s));
        let connects_first =
            last_provider.is_some_and(|k| c.steps[..k].iter().any(|s| !is_provider_step(*s)));
        if connects_first {
            left_out.push(format!(
                "{}: {} needs a connection to the node first ({}); run `dcform apply` without --infra-only for it",
                c.node,
                c.action.verb(),
                c.steps
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            c.action = Action::NoOp;
            c.steps.clear();
            continue;
        }
        c.steps.retain(|s| is_provider_step(*s));
        if c.steps.is_empty() {
            // Bootstrap-only work (install, configure, restart...): for the next plain apply.
            c.action = Action::NoOp;
            continue;
        }
        any_create |= c.steps.iter().any(|s| *s != Step::DestroyNode);
    }
    for c in plan.changes.iter_mut() {
        let creates = c.steps.iter().any(|s| *s != Step::DestroyNode);
        c.wave = if creates || !any_create { 0 } else { 1 };
    }
    // Services are deployed through the masters' API: that needs a running cluster.
    for c in plan.services.iter_mut() {
        if c.action != ServiceAction::NoOp {
            left_out.push(format!(
                "service {}: {} needs the running cluster; run `dcform apply` without --infra-only for it",
                c.id,
                c.action.verb()
            ));
            c.action = ServiceAction::NoOp;
        }
    }
    (plan, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{CoreTarget, NodeChange, PlanBase};
    use crate::spec::{PoolName, Role};

    fn change(node: &str, role: Role, action: Action, steps: Vec<Step>, wave: u32) -> NodeChange {
        NodeChange {
            node: node.into(),
            pool: PoolName::new(node.split('-').next().unwrap_or_default())
                .expect("valid pool name"),
            index: 1,
            role,
            host: None,
            action,
            reason: "test".into(),
            steps,
            wave,
            config_hash: None,
            replica_id: None,
            leaves_replica_id: None,
            founds_group: false,
        }
    }

    fn plan(changes: Vec<NodeChange>) -> Plan {
        use crate::spec::{ClusterSpec, CoreSpec, LocalProvider, ProviderSpec, SshSpec};
        let spec = ClusterSpec {
            name: "c".into(),
            provider: ProviderSpec::Local(LocalProvider::default()),
            ssh: SshSpec::default(),
            core: CoreSpec::default(),
            pools: vec![],
            services: vec![],
            definition_dir: ".".into(),
        };
        Plan {
            destroy: false,
            spec,
            core: CoreTarget {
                version: "1".into(),
            },
            base: PlanBase {
                lineage: None,
                serial: 0,
            },
            changes,
            services: vec![],
        }
    }

    #[test]
    fn infra_only_keeps_machine_steps_in_one_wave_and_leaves_out_what_needs_a_connection() {
        let full = vec![
            Step::CreateNode,
            Step::Install,
            Step::Start,
            Step::WaitHealthy,
        ];
        let p = plan(vec![
            change("masters-1", Role::Master, Action::Create, full.clone(), 0),
            change("masters-2", Role::Master, Action::Create, full.clone(), 1),
            change("agents-1", Role::Agent, Action::Create, full, 2),
            change(
                "agents-2",
                Role::Agent,
                Action::Install,
                vec![Step::Install, Step::Start],
                2,
            ),
            change(
                "agents-3",
                Role::Agent,
                Action::Remove,
                vec![Step::Drain, Step::DestroyNode],
                3,
            ),
            change(
                "agents-4",
                Role::Agent,
                Action::Remove,
                vec![Step::DestroyNode],
                3,
            ),
        ]);
        let (p, left_out) = infra_only(p);
        let got: Vec<(&str, Vec<Step>, u32)> = p
            .actions()
            .map(|c| (c.node.as_str(), c.steps.clone(), c.wave))
            .collect();
        assert_eq!(
            got,
            vec![
                ("masters-1", vec![Step::CreateNode], 0),
                ("masters-2", vec![Step::CreateNode], 0),
                ("agents-1", vec![Step::CreateNode], 0),
                ("agents-4", vec![Step::DestroyNode], 1),
            ]
        );
        assert_eq!(left_out.len(), 1, "{left_out:?}");
        assert!(
            left_out[0].starts_with("agents-3: drain + remove needs a connection"),
            "{left_out:?}"
        );
    }

    #[test]
    fn infra_only_removals_alone_run_in_the_first_wave() {
        let p = plan(vec![change(
            "agents-4",
            Role::Agent,
            Action::Remove,
            vec![Step::DestroyNode],
            3,
        )]);
        let (p, _) = infra_only(p);
        assert_eq!(p.waves(), 1);
    }
}
