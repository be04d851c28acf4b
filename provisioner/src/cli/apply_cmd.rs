//! `dcform apply` and `dcform destroy`: a fresh or saved plan, checked against the state, confirmed,
//! run by the executor (Ctrl-C finishes the steps in flight), and the cluster's outputs recorded.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::anyhow;
use tokio_util::sync::CancellationToken;

use super::args::ApplyArgs;
use super::inputs::{confirm, load_def, read_plan_file, reload_saved_definition, state_file};
use super::plan_cmd::{make_plan, print_plan, refreshed_state};
use super::table::display_value;
use super::{CliError, exit};
use crate::apply::{ApplyError, ApplyOptions, Executor, PlainProgress, Progress, TtyProgress};
use crate::cluster_api;
use crate::core_binary::CoreBinary;
use crate::plan::{self, Plan};
use crate::providers::{self, BuildOptions};
use crate::spec::{ClusterSpec, ProviderKind};
use crate::state::{State, StateFile, StateLock};

pub(super) async fn apply_cmd(a: &ApplyArgs, destroy: bool) -> Result<u8, CliError> {
    let saved = if destroy {
        None
    } else {
        read_plan_file(&a.def.path).transpose()?
    };
    let from_file = saved.is_some();
    let (plan, file) = match saved {
        Some(saved) => {
            let spec = reload_saved_definition(&a.def.path, &saved, &a.def)?;
            let file = state_file(&spec, &a.state);
            (saved.into_plan(spec), file)
        }
        None => {
            let spec = load_def(&a.def)?;
            let file = state_file(&spec, &a.state);
            let state = refreshed_state(&spec, &file).await?;
            (make_plan(&spec, &state, &file, destroy).await, file)
        }
    };
    let plan = infra_only(plan, a, destroy)?;
    let _lock = StateLock::acquire(&file, if destroy { "destroy" } else { "apply" })?;
    let mut state = file
        .load()?
        .unwrap_or_else(|| State::new(&plan.spec.name, plan.spec.provider.kind()));
    // The state may have moved since the plan was made (a saved plan, or another apply while we asked).
    let current = (state.serial > 0).then(|| state.lineage.clone());
    if current != plan.base.lineage || state.serial != plan.base.serial {
        return Err(CliError::user(anyhow!(
            "the plan is stale: it was made against state serial {} but the state at {} is now at serial {}{}; run `dcform plan` again",
            plan.base.serial,
            file.path().display(),
            state.serial,
            if current != plan.base.lineage {
                " of another lineage"
            } else {
                ""
            }
        )));
    }
    if !from_file {
        print_plan(&plan, a.def.json);
    }
    if !plan.has_changes() {
        if from_file {
            println!("{}", plan::NO_CHANGES);
        }
        return Ok(exit::OK);
    }
    if a.insecure_skip_host_key {
        eprintln!(
            "Warning: --insecure-skip-host-key: SSH host keys are not checked; use this for throwaway test clusters only."
        );
    }
    if !a.auto_approve && !confirm(destroy)? {
        println!("{} cancelled.", if destroy { "Destroy" } else { "Apply" });
        return Ok(exit::USER);
    }
    let build = providers::build(
        &plan.spec,
        &file,
        &plan.core,
        &BuildOptions {
            core_binary: a.core_binary.clone(),
            insecure_skip_host_key: a.insecure_skip_host_key,
            resources: state.resources.clone(),
            lineage: Some(state.lineage.clone()),
            // Stops before any upload: the core binary is not needed (nor looked for).
            infra_only: a.infra_only,
        },
    );
    let (provider, installer, core) = build.map_err(|e| {
        if e.is_user_error() {
            CliError::user(e)
        } else {
            CliError::internal(e)
        }
    })?;
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() {
        Arc::new(TtyProgress::default())
    } else {
        Arc::new(PlainProgress::default())
    };
    let mut executor = Executor::new(
        Arc::new(provider),
        Arc::new(installer),
        progress,
        ApplyOptions {
            parallelism: a.parallelism.into(),
            ..ApplyOptions::default()
        },
    );
    // The masters' group is changed and checked from here, with the operator token and (TLS)
    // the cluster CA, both made by `providers::build` above.
    if !destroy && !a.infra_only {
        let group = crate::replica_api::GroupClient::of(file.dir(), plan.spec.core.tls)
            .map_err(|e| CliError::internal(anyhow::Error::new(e)))?;
        executor = executor.with_membership(Arc::new(group));
    }
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nInterrupt received: finishing the steps in flight and saving the state (Ctrl-C again to quit at once)."
            );
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
    // How dcform's own calls reach this cluster (`status`, `task`): recorded before any node is
    // installed, so a failed apply leaves it true for the nodes it did install.
    if !destroy {
        state
            .resources
            .insert("tls".into(), plan.spec.core.tls.to_string());
    }
    let result = executor.apply(&plan, &mut state, &file, shutdown).await;
    watcher.abort();
    if result.is_ok() {
        record_outputs(&mut state, &plan.spec, core.as_ref(), &file);
        file.save(&mut state)?;
    }
    // The services run on the nodes: converged once every node step is done.
    let services = match (&result, destroy || a.infra_only) {
        (Ok(_), false) => converge_services(&plan, &mut state, &file, a).await,
        _ => Ok(Default::default()),
    };
    let s = plan.summary();
    match result {
        Ok(_) => {
            let sv = match services {
                Ok(sv) => sv,
                Err(e) => {
                    return Err(CliError::internal(e.context(format!(
                        "apply did not finish: the nodes are done, the services are not; what was deployed is recorded in {} and `dcform apply` continues from there",
                        file.path().display()
                    ))));
                }
            };
            if destroy {
                println!("\nDestroy complete! Nodes: {} destroyed.", s.destroy);
            } else {
                let svc = if sv.deployed + sv.removed > 0 {
                    format!(" Services: {} deployed, {} removed.", sv.deployed, sv.removed)
                } else {
                    String::new()
                };
                println!("\nApply complete! Nodes: {} added, {} changed, {} destroyed.{svc}", s.add, s.change, s.destroy);
                print_outputs(&state.outputs);
            }
            Ok(exit::OK)
        }
        Err(e @ ApplyError::Interrupted { .. }) => Err(CliError { code: exit::INTERRUPTED, error: e.into() }),
        Err(e) => Err(CliError::internal(anyhow::Error::new(e).context(format!(
            "{} did not finish; what finished is recorded in {} and `dcform {}` continues from there",
            if destroy { "destroy" } else { "apply" },
            file.path().display(),
            if destroy { "destroy" } else { "apply" }
        )))),
    }
}

/// Apply's last phase: the plan's service changes carried out on the cluster (see
/// `services::converge`), with progress on stderr.
async fn converge_services(
    plan: &Plan,
    state: &mut State,
    file: &StateFile,
    a: &ApplyArgs,
) -> anyhow::Result<crate::services::converge::Converged> {
    let changes: Vec<_> = plan
        .services
        .iter()
        .filter(|c| c.action != plan::ServiceAction::NoOp)
        .cloned()
        .collect();
    if changes.is_empty() {
        return Ok(Default::default());
    }
    let client = crate::services::MarathonClient::of(state, file.dir())
        .map_err(|e| anyhow::Error::new(e).context("cannot call the cluster's services API"))?;
    eprintln!(
        "Services: {} change(s); waiting for the deployments (up to {} s).",
        changes.len(),
        a.service_timeout_secs
    );
    let mut last = String::new();
    crate::services::converge::converge(
        &changes,
        &client,
        state,
        |s| file.save(s).map_err(anyhow::Error::new),
        std::time::Duration::from_secs(a.service_timeout_secs),
        |p| {
            let line = p.summary();
            if line != last {
                eprintln!("  {line}");
                last = line;
            }
        },
    )
    .await
}

/// After a successful apply: what the cluster is made of and how to reach it. `core`: the binary
/// installed (`None` for `--infra-only`, which installed nothing: the record stays as it was).
fn record_outputs(
    state: &mut State,
    spec: &ClusterSpec,
    core: Option<&CoreBinary>,
    file: &StateFile,
) {
    if state.nodes.is_empty() {
        state.outputs.clear();
        state.resources.remove("core_version");
        state.resources.remove("core_sha256");
        return;
    }
    if let Some(core) = core {
        state
            .resources
            .insert("core_version".into(), core.version.clone());
        state
            .resources
            .insert("core_sha256".into(), core.sha256.clone());
    }
    if state.provider == ProviderKind::Aws {
        state.outputs.extend(providers::aws::outputs(state, spec));
    }
    if let Some(url) = cluster_api::master_url(state) {
        state
            .outputs
            .insert("master_url".into(), serde_json::Value::String(url));
    }
    // Every master: a client that knows them all finds the leader (a follower redirects).
    state.outputs.insert(
        "master_urls".into(),
        serde_json::json!(cluster_api::master_urls(state)),
    );
    // Absolute, so the outputs are usable from any folder.
    let abs = |p: std::path::PathBuf| {
        serde_json::Value::String(std::path::absolute(&p).unwrap_or(p).display().to_string())
    };
    state.outputs.insert(
        "token_file".into(),
        abs(file.dir().join(crate::pki::OPERATOR_TOKEN_FILE)),
    );
    if spec.core.tls {
        // For other clients: `curl --cacert`, framework libraries that take a CA bundle.
        state.outputs.insert(
            "ca_file".into(),
            abs(file.dir().join(crate::pki::CA_CERT_FILE)),
        );
    } else {
        state.outputs.remove("ca_file");
    }
    if spec.core.principals.is_empty() {
        state.outputs.remove("principal_secret_files");
    } else {
        // Where each framework principal's secret is (HTTP Basic: principal + this secret).
        let files: serde_json::Map<String, serde_json::Value> = spec
            .core
            .principals
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    abs(providers::principal_secret_path(file.dir(), &p.name)),
                )
            })
            .collect();
        state.outputs.insert(
            "principal_secret_files".into(),
            serde_json::Value::Object(files),
        );
    }
    let count = |agent: bool| {
        state
            .nodes
            .iter()
            .filter(|n| n.role.is_agent() == agent)
            .count()
    };
    state
        .outputs
        .insert("masters".into(), serde_json::json!(count(false)));
    state
        .outputs
        .insert("agents".into(), serde_json::json!(count(true)));
}

/// `apply --infra-only`: only the machine steps of `plan` (see `plan::infra_only`), saying what is
/// left for the next plain apply.
fn infra_only(plan: Plan, a: &ApplyArgs, destroy: bool) -> Result<Plan, CliError> {
    if !a.infra_only {
        return Ok(plan);
    }
    if destroy {
        return Err(CliError::user(anyhow!(
            "--infra-only belongs to apply only: destroy runs its plan as shown (`dcform destroy --help`)"
        )));
    }
    let (plan, left_out) = plan::infra_only(plan);
    eprintln!(
        "--infra-only: machines and network only; no node is connected to. The next `dcform apply` bootstraps them."
    );
    for l in left_out {
        eprintln!("  left out: {l}");
    }
    Ok(plan)
}

fn print_outputs(outputs: &BTreeMap<String, serde_json::Value>) {
    if outputs.is_empty() {
        return;
    }
    println!("\nOutputs:\n");
    for (k, v) in outputs {
        println!("{k} = {}", display_value(v));
    }
}
