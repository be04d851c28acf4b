//! One function per subcommand. Each checks its raw arguments, runs the pipeline stages and prints.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;

use super::args::{
    ApplyArgs, Cli, Command, DefArgs, ForceUnlockArgs, OutputArgs, PlanArgs, ShowArgs, StateArgs,
    StateCommand, TaskCommand, TaskLogsArgs,
};
use super::{CliError, exit, stdout_is_tty, table};
use crate::apply::{ApplyError, ApplyOptions, Executor, PlainProgress, Progress, TtyProgress};
use crate::cluster_api::{self, ClusterAccess};
use crate::core_binary::CoreBinary;
use crate::plan::{self, CoreTarget, PLAN_FORMAT, Plan};
use crate::providers::{self, BuildOptions};
use crate::spec::{self, ClusterSpec, LoadOptions};
use crate::state::{self, State, StateFile, StateLock};

/// Runs one parsed command line; returns the exit code on success.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Validate(a) => validate(&a),
        Command::Plan(a) => plan_cmd(&a).await,
        Command::Apply(a) => apply_cmd(&a, false).await,
        Command::Destroy(a) if a.cluster.is_some() => super::nodes::destroy_by_label(&a).await,
        Command::Destroy(a) => apply_cmd(&a.apply, true).await,
        Command::List(a) => super::nodes::list(&a).await,
        Command::Ssh(a) => super::nodes::ssh(&a).await,
        Command::Exec(a) => super::nodes::exec(&a).await,
        Command::NodeImage(c) => super::nodes::node_image(&c).await,
        Command::Status(a) => status(&a).await,
        Command::Output(a) => output(&a),
        Command::State(StateCommand::List(a)) => state_list(&a),
        Command::State(StateCommand::Show(a)) => state_show(&a),
        Command::State(StateCommand::Rm(a)) => state_rm(&a),
        Command::ForceUnlock(a) => force_unlock(&a),
        Command::Task(TaskCommand::List(a)) => task_list(&a).await,
        Command::Task(TaskCommand::Logs(a)) => task_logs(&a).await,
        Command::Convert(a) => super::compat::convert(&a),
        Command::ImportTfstate(a) => super::compat::import_tfstate(&a),
    }
}

/// Loads the definition with its variables; warnings go to stderr.
pub(super) fn load_def(def: &DefArgs) -> Result<ClusterSpec, CliError> {
    let mut vars = Vec::new();
    for v in &def.vars {
        let (k, val) = v.split_once('=').ok_or_else(|| {
            CliError::user(anyhow!(
                "-var {v:?}: expected NAME=VALUE, e.g. -var agents=3"
            ))
        })?;
        vars.push((k.trim().to_string(), val.to_string()));
    }
    let opts = LoadOptions {
        vars,
        var_files: def.var_files.clone(),
        env: std::env::vars().collect(),
    };
    if read_plan_file(&def.path).is_some() {
        return Err(CliError::user(anyhow!(
            "{} is a saved plan, not a cluster definition: apply it with `dcform apply {}`, or give the definition's .hcl file",
            def.path.display(),
            def.path.display()
        )));
    }
    // A dcos-terraform main.tf or an installer config.yaml is converted in memory first.
    let loaded = if super::compat::is_foreign_definition(&def.path) {
        let (path, text) = super::compat::convert_in_memory(&def.path)?;
        spec::load_text(&path, text, &opts)?
    } else {
        spec::load(&def.path, &opts)?
    };
    for w in &loaded.warnings {
        eprintln!("Warning: {w}");
    }
    Ok(loaded.spec)
}

fn state_file(spec: &ClusterSpec, flag: &Option<PathBuf>) -> StateFile {
    match flag {
        Some(p) => StateFile::at(p),
        None => StateFile::default_for(&spec.definition_dir, &spec.name),
    }
}

/// The state for commands that only read it: `--state FILE`, or the definition's default location.
pub(super) fn read_state(a: &StateArgs) -> Result<(StateFile, State), CliError> {
    read_state_and_spec(a).map(|(f, s, _)| (f, s))
}

/// [`read_state`], with the definition when one was loaded (not with `--state`).
fn read_state_and_spec(a: &StateArgs) -> Result<(StateFile, State, Option<ClusterSpec>), CliError> {
    let (file, spec) = match &a.state {
        Some(p) => (StateFile::at(p), None),
        None => {
            let spec = load_def(&a.def)?;
            (state_file(&spec, &None), Some(spec))
        }
    };
    let state = file.load()?.ok_or_else(|| {
        CliError::user(anyhow!(
            "no state at {}: the cluster was never applied (run `dcform apply` first)",
            file.path().display()
        ))
    })?;
    Ok((file, state, spec))
}

/// The core the definition asks for. `bundled` is the dccore built with this dcform (same workspace version).
fn core_target(spec: &ClusterSpec) -> CoreTarget {
    let version = if spec.core.version == "bundled" {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        spec.core.version.clone()
    };
    CoreTarget { version }
}

fn validate(def: &DefArgs) -> Result<u8, CliError> {
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

fn make_plan(spec: &ClusterSpec, state: &State, destroy: bool) -> Plan {
    let core = core_target(spec);
    if destroy {
        plan::destroy(spec, state, &core)
    } else {
        plan::diff(spec, state, &core)
    }
}

fn print_plan(plan: &Plan, json: bool) {
    if json {
        print!("{}", plan::render_json_lines(plan));
    } else {
        print!("{}", plan::render_human(plan, stdout_is_tty()));
    }
}

/// Loads the state (or a new one) and refreshes it: machines removed outside dcform are marked gone.
async fn refreshed_state(spec: &ClusterSpec, file: &StateFile) -> Result<State, CliError> {
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
async fn check_cores(spec: &ClusterSpec, file: &StateFile, state: &mut State) {
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

async fn plan_cmd(a: &PlanArgs) -> Result<u8, CliError> {
    let result = async {
        let spec = load_def(&a.def)?;
        let file = state_file(&spec, &a.state);
        let state = refreshed_state(&spec, &file).await?;
        let plan = make_plan(&spec, &state, a.destroy);
        print_plan(&plan, a.def.json);
        if let Some(out) = &a.out {
            let body = serde_json::to_vec_pretty(&plan)
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

/// A saved plan file, recognised by its content (not its name).
fn read_plan_file(path: &Path) -> Option<Result<Plan, CliError>> {
    if !path.is_file() || path.extension().is_some_and(|e| e == "hcl") {
        return None;
    }
    let bytes = spec::input::read_regular_file(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let format = value.get("format")?.as_u64()?;
    if format != u64::from(PLAN_FORMAT) {
        return Some(Err(CliError::user(anyhow!(
            "{}: plan format {format} is not supported by this dcform (it reads {PLAN_FORMAT}); make a new plan",
            path.display()
        ))));
    }
    Some(
        serde_json::from_value(value)
            .map_err(|e| CliError::user(anyhow!("{}: not a valid plan file: {e}", path.display()))),
    )
}

async fn apply_cmd(a: &ApplyArgs, destroy: bool) -> Result<u8, CliError> {
    let saved = if destroy {
        None
    } else {
        read_plan_file(&a.def.path).transpose()?
    };
    let from_file = saved.is_some();
    let (plan, file) = match saved {
        Some(plan) => {
            let file = state_file(&plan.spec, &a.state);
            (plan, file)
        }
        None => {
            let spec = load_def(&a.def)?;
            let file = state_file(&spec, &a.state);
            let state = refreshed_state(&spec, &file).await?;
            (make_plan(&spec, &state, destroy), file)
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
    let executor = Executor::new(
        Arc::new(provider),
        Arc::new(installer),
        progress,
        ApplyOptions {
            parallelism: a.parallelism.into(),
            ..ApplyOptions::default()
        },
    );
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
        record_outputs(&mut state, &plan.spec, &core, &file);
        file.save(&mut state)?;
    }
    let s = plan.summary();
    match result {
        Ok(_) => {
            if destroy {
                println!("\nDestroy complete! Nodes: {} destroyed.", s.destroy);
            } else {
                println!("\nApply complete! Nodes: {} added, {} changed, {} destroyed.", s.add, s.change, s.destroy);
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

/// After a successful apply: what the cluster is made of and how to reach it.
fn record_outputs(state: &mut State, spec: &ClusterSpec, core: &CoreBinary, file: &StateFile) {
    if state.nodes.is_empty() {
        state.outputs.clear();
        state.resources.remove("core_version");
        state.resources.remove("core_sha256");
        return;
    }
    state
        .resources
        .insert("core_version".into(), core.version.clone());
    state
        .resources
        .insert("core_sha256".into(), core.sha256.clone());
    if state.provider == "aws" {
        state.outputs.extend(providers::aws::outputs(state));
    }
    if let Some(url) = cluster_api::master_url(state) {
        state
            .outputs
            .insert("master_url".into(), serde_json::Value::String(url));
    }
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

pub(super) fn confirm(destroy: bool) -> Result<bool, CliError> {
    let what = if destroy {
        "destroy every node of this cluster"
    } else {
        "perform these actions"
    };
    print!(
        "\nDo you want to {what}?\n  Only 'yes' will be accepted to approve (or run with --auto-approve).\n\n  Enter a value: "
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::user(anyhow!("cannot read the answer: {e}")))?;
    if n == 0 {
        return Err(CliError::user(anyhow!(
            "no answer on standard input; pass --auto-approve to run without asking"
        )));
    }
    Ok(line.trim() == "yes")
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

fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn status(a: &StateArgs) -> Result<u8, CliError> {
    let (file, mut state, spec) = read_state_and_spec(a)?;
    // Machines removed outside dcform show as gone (the master may not have noticed yet).
    if let Err(e) = providers::refresh(&mut state).await {
        eprintln!("Warning: cannot check the machines: {e}");
    }
    // And each running node's core, where the definition says how to reach the machines.
    if let Some(spec) = &spec {
        check_cores(spec, &file, &mut state).await;
    }
    // Ask each master for itself and the first for its agents; a node that does not answer is
    // "unreachable"/"unknown", not an error.
    let seen = match ClusterAccess::of(&state, file.dir()) {
        Ok(access) => access.look(&state).await,
        Err(cluster_api::AccessError::NoMaster) => cluster_api::Seen::default(),
        Err(e) => {
            eprintln!("Warning: {e}");
            cluster_api::Seen::default()
        }
    };
    for (m, r) in &seen.masters {
        if let Err(e) = r {
            eprintln!("Warning: {m}: {e}");
        }
    }
    let views: Vec<(String, Option<Vec<dccore_api::proto::Resource>>)> = state
        .nodes
        .iter()
        .map(|n| cluster_api::node_health(&state, n, &seen))
        .collect();
    if a.def.json {
        let nodes: Vec<serde_json::Value> = state
            .nodes
            .iter()
            .zip(&views)
            .map(|(n, (health, resources))| {
                serde_json::json!({
                    "name": n.name,
                    "pool": n.pool,
                    "role": n.role,
                    "status": n.status,
                    "health": health,
                    "address": n.addresses.first(),
                    "core_version": n.core_version,
                    "resources": resources,
                })
            })
            .collect();
        let out = serde_json::json!({"cluster": state.cluster, "provider": state.provider, "serial": state.serial, "nodes": nodes, "outputs": state.outputs});
        println!("{out}");
        return Ok(exit::OK);
    }
    println!(
        "cluster \"{}\" ({} provider), {} node(s)\n",
        state.cluster,
        state.provider,
        state.nodes.len()
    );
    let rows: Vec<Vec<String>> = state
        .nodes
        .iter()
        .zip(&views)
        .map(|(n, (health, resources))| {
            vec![
                n.name.clone(),
                n.role.to_string(),
                health.clone(),
                n.addresses.first().cloned().unwrap_or_else(|| "-".into()),
                n.core_version.clone().unwrap_or_else(|| "-".into()),
                resources
                    .as_deref()
                    .map(resources_summary)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["NODE", "ROLE", "HEALTH", "ADDRESS", "CORE", "RESOURCES"],
            &rows
        )
    );
    Ok(exit::OK)
}

/// `cpus:2 mem:1024 disk:1000` from Mesos' resource list (scalars only).
fn resources_summary(list: &[dccore_api::proto::Resource]) -> String {
    let parts: Vec<String> = list
        .iter()
        .filter_map(|r| Some(format!("{}:{}", r.name, r.scalar.as_ref()?.value)))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn output(a: &OutputArgs) -> Result<u8, CliError> {
    // `output NAME [PATH]` as in Terraform; a lone argument naming an existing path is the definition.
    let mut target = a.target.clone();
    let mut name = a.name.clone();
    match &a.name_arg {
        Some(n) if target.def.path == Path::new(".") && Path::new(n).exists() => {
            target.def.path = PathBuf::from(n);
        }
        Some(n) => name = Some(n.clone()),
        None => {}
    }
    let (_file, state) = read_state(&target)?;
    let shaped = super::compat::terraform_outputs(&state);
    if let Some(name) = &name {
        // dcform's own outputs, then the dcos-terraform names (masters-ips, ...).
        let v = state
            .outputs
            .get(name)
            .cloned()
            .or_else(|| shaped.get(name).map(|o| o["value"].clone()))
            .ok_or_else(|| {
                let known: Vec<&str> = shaped
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                CliError::user(anyhow!(
                    "no output named {name:?}; the cluster has: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
        println!(
            "{}",
            if target.def.json && !a.raw {
                v.to_string()
            } else {
                display_value(&v)
            }
        );
    } else if a.raw {
        return Err(CliError::user(anyhow!(
            "-raw prints one value: name it, e.g. dcform output -raw master_url"
        )));
    } else if target.def.json && a.flat {
        println!(
            "{}",
            serde_json::to_string(&state.outputs).map_err(CliError::internal)?
        );
    } else if target.def.json {
        println!("{shaped}");
    } else {
        for (k, v) in &state.outputs {
            println!("{k} = {}", display_value(v));
        }
    }
    Ok(exit::OK)
}

fn state_list(a: &StateArgs) -> Result<u8, CliError> {
    let (_file, state) = read_state(a)?;
    for n in &state.nodes {
        if a.def.json {
            println!(
                "{}",
                serde_json::json!({"name": n.name, "pool": n.pool, "role": n.role, "status": n.status})
            );
        } else {
            println!("{}", n.name);
        }
    }
    Ok(exit::OK)
}

fn state_show(a: &ShowArgs) -> Result<u8, CliError> {
    let (_file, state) = read_state(&a.target)?;
    let node = find_node(&state, &a.node)?;
    if a.target.def.json {
        println!(
            "{}",
            serde_json::to_string(&node).map_err(CliError::internal)?
        );
    } else {
        let v = serde_json::to_value(node).map_err(CliError::internal)?;
        if let serde_json::Value::Object(m) = v {
            let width = m.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in m {
                println!("{k:<width$} = {}", display_value(&v));
            }
        }
    }
    Ok(exit::OK)
}

/// The node called `name`, or a user error listing the nodes the state has.
pub(super) fn find_node(state: &State, name: &str) -> Result<crate::state::NodeState, CliError> {
    state.node(name).cloned().ok_or_else(|| {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        let list = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        CliError::user(anyhow!("no node {name:?} in the state; nodes: {list}"))
    })
}

fn state_rm(a: &ShowArgs) -> Result<u8, CliError> {
    let (file, _) = read_state(&a.target)?;
    let _lock = StateLock::acquire(&file, "state rm")?;
    // Read again under the lock: another command may have written since.
    let mut state = file
        .load()?
        .ok_or_else(|| CliError::user(anyhow!("no state at {}", file.path().display())))?;
    let node = find_node(&state, &a.node)?;
    state.remove_node(&node.name);
    file.save(&mut state)?;
    println!(
        "Removed {} from the state. Its machine ({}) was not touched; remove it by hand if it still exists.",
        node.name,
        node.provider_id
            .as_deref()
            .or(node.addresses.first().map(String::as_str))
            .unwrap_or("unknown")
    );
    Ok(exit::OK)
}

fn force_unlock(a: &ForceUnlockArgs) -> Result<u8, CliError> {
    let file = match &a.target.state {
        Some(p) => StateFile::at(p),
        None => state_file(&load_def(&a.target.def)?, &None),
    };
    let info = state::force_unlock(&file, &a.id)?;
    println!("Unlocked {} (was held by {info}).", file.path().display());
    Ok(exit::OK)
}

/// How to call an applied cluster, for commands that talk to it.
fn cluster_access(a: &StateArgs) -> Result<ClusterAccess, CliError> {
    let (file, state) = read_state(a)?;
    ClusterAccess::of(&state, file.dir()).map_err(|e| {
        CliError::user(anyhow::Error::new(e).context(format!(
            "cannot talk to the cluster of {}",
            file.path().display()
        )))
    })
}

async fn task_list(a: &StateArgs) -> Result<u8, CliError> {
    let access = cluster_access(a)?;
    let tasks = access.tasks().await.map_err(CliError::internal)?;
    if a.def.json {
        for t in &tasks {
            println!(
                "{}",
                serde_json::json!({"id": t.id, "name": t.name, "state": t.state, "framework_id": t.framework_id, "agent_id": t.agent_id})
            );
        }
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.state.clone(),
                t.agent_id.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["TASK", "NAME", "STATE", "AGENT"], &rows)
    );
    Ok(exit::OK)
}

async fn task_logs(a: &TaskLogsArgs) -> Result<u8, CliError> {
    let access = cluster_access(&a.target)?;
    let tasks = access.tasks().await.map_err(CliError::internal)?;
    let task = tasks.iter().find(|t| t.id == a.task).ok_or_else(|| {
        let known: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).take(20).collect();
        CliError::user(anyhow!(
            "no task {:?} on this cluster; tasks: {}",
            a.task,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
    })?;
    let agents = access.agents().await.map_err(CliError::internal)?;
    let agent = agents
        .iter()
        .find(|g| g.id == task.agent_id)
        .ok_or_else(|| {
            CliError::internal(anyhow!(
                "the master does not list agent {} of task {} (is it down?)",
                task.agent_id,
                task.id
            ))
        })?;
    let text = access
        .sandbox_file(&agent.url, task, if a.stderr { "stderr" } else { "stdout" })
        .await
        .map_err(CliError::internal)?;
    print!("{text}");
    Ok(exit::OK)
}
