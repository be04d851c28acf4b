//! `dcform validate` and `dcform plan`: load the definition, refresh the state, diff, print (and save).

use std::sync::Arc;

use anyhow::Context;

use super::args::{DefArgs, PlanArgs};
use super::inputs::{core_target, load_def, load_def_recorded, state_file};
use super::{CliError, exit, stdout_is_tty};
use crate::plan::{self, Plan, SavedPlan};
use crate::providers;
use crate::spec::saved::SavedDefinition;
use crate::spec::{self, ClusterSpec};
use crate::state::{self, State, StateFile};

pub(super) fn validate(def: &DefArgs) -> Result<u8, CliError> {
    match load_def(def) {
        Ok(spec) => {
            let nodes: usize = spec.pools.iter().map(|p| p.size.len()).sum();
            if def.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "cluster": spec.name, "provider": spec.provider.kind(), "pools": spec.pools.len(), "nodes": nodes})
                );
            } else {
                println!(
                    "Success! The definition is valid: cluster \"{}\", {} node(s) in {} pool(s), provider \"{}\".",
                    spec.name,
                    nodes,
                    spec.pools.len(),
                    spec.provider.kind()
                );
            }
            Ok(exit::OK)
        }
        Err(e) if def.json => {
            if let Some(se) = e.error.downcast_ref::<spec::SpecError>() {
                let diags: Vec<serde_json::Value> = se
                    .diagnostics()
                    .iter()
                    .map(|d| serde_json::json!({"file": d.file, "line": d.line, "col": d.col, "message": d.message, "hint": d.hint}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "diagnostics": diags})
                );
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// The plan of `spec` against the refreshed `state`; the definition's services are compared with
/// what the cluster runs now when it answers (drift), else with the state.
pub(super) async fn make_plan(
    spec: &ClusterSpec,
    state: &State,
    file: &StateFile,
    destroy: bool,
) -> Plan {
    let core = core_target(spec);
    if destroy {
        plan::destroy(spec, state, &core)
    } else {
        let live =
            crate::services::converge::live_apps(state, file.dir(), spec.services.len()).await;
        plan::diff(spec, state, &core, live.as_ref())
    }
}

pub(super) fn print_plan(plan: &Plan, json: bool) {
    if json {
        print!("{}", plan::render_json_lines(plan));
    } else {
        print!("{}", plan::render_human(plan, stdout_is_tty()));
    }
}

/// Loads the state (or a new one) and refreshes it: machines removed outside dcform are marked gone.
pub(super) async fn refreshed_state(
    spec: &ClusterSpec,
    file: &StateFile,
) -> Result<State, CliError> {
    let mut state = file
        .load()?
        .unwrap_or_else(|| State::new(&spec.name, spec.provider.kind()));
    let gone = providers::refresh(&mut state)
        .await
        .map_err(|e| CliError::internal(anyhow::Error::new(e).context("refreshing the state")))?;
    for (n, status) in gone {
        match status {
            crate::state::NodeStatus::Gone => {
                eprintln!("Refresh: the machine of {n} is gone (removed outside dcform).")
            }
            crate::state::NodeStatus::MachineStopped => {
                eprintln!(
                    "Refresh: the machine of {n} is stopped (stopped or killed outside dcform)."
                )
            }
            _ => eprintln!("Refresh: dccore is not running on {n}."),
        }
    }
    check_cores(spec, file, &mut state).await;
    Ok(state)
}

/// Asks each running docker/ssh node whether its core runs now (see `providers::liveness`).
pub(super) async fn check_cores(spec: &ClusterSpec, file: &StateFile, state: &mut State) {
    // Through a bastion whose key no apply has pinned yet (a state from an older dcform), a check
    // would trust whatever answers: not checked, and said so.
    if spec.ssh.bastion.is_some()
        && !state
            .resources
            .contains_key(providers::ssh_remote::BASTION_HOST_KEY)
    {
        eprintln!(
            "Refresh: cores not checked over SSH: the bastion's host key is not pinned yet (the next apply pins it)."
        );
        return;
    }
    let Ok((provider, layout)) = providers::machines(spec, file, false, &state.resources) else {
        return;
    };
    let seen = providers::liveness::check(Arc::new(provider), &layout, state).await;
    for (n, s) in seen {
        match s {
            providers::liveness::Seen::Running => {}
            providers::liveness::Seen::NotRunning(why) => {
                eprintln!("Refresh: dccore is not running on {n} ({why}).")
            }
            providers::liveness::Seen::Unknown(why) => {
                eprintln!("Refresh: cannot check dccore on {n}: {why}")
            }
        }
    }
}

pub(super) async fn plan_cmd(a: &PlanArgs) -> Result<u8, CliError> {
    let result = async {
        let def = load_def_recorded(&a.def)?;
        let spec = &def.spec;
        let file = state_file(spec, &a.state);
        let state = refreshed_state(spec, &file).await?;
        let plan = make_plan(spec, &state, &file, a.destroy).await;
        print_plan(&plan, a.def.json);
        if let Some(out) = &a.out {
            let here = std::env::current_dir().map_err(|e| {
                CliError::internal(anyhow::anyhow!("cannot read the current folder: {e}"))
            })?;
            let definition = SavedDefinition::new(
                &a.def.path,
                here,
                def.vars.clone(),
                a.def.var_files.clone(),
                &def.reads,
                spec,
            );
            // 0600: the plan keeps a copy of every file the definition read (`file()` included).
            let body = serde_json::to_vec_pretty(&SavedPlan::new(&plan, definition))
                .context("cannot encode the plan")
                .map_err(CliError::internal)?;
            state::write_private(out, &body).map_err(CliError::user)?;
            if !a.def.json {
                println!(
                    "\nSaved the plan to {}. Apply exactly it with: dcform apply {}",
                    out.display(),
                    out.display()
                );
            }
        }
        Ok::<_, CliError>(plan.has_changes())
    }
    .await;
    match result {
        Ok(changes) if a.detailed_exitcode && changes => Ok(exit::CHANGES),
        Ok(_) => Ok(exit::OK),
        // With --detailed-exitcode every error is 1, as Terraform does: 2 means "changes".
        Err(e) if a.detailed_exitcode => Err(CliError {
            code: exit::USER,
            error: e.error,
        }),
        Err(e) => Err(e),
    }
}
