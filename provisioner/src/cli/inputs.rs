//! What the commands read: the definition (with its variables, or converted from a dcos-terraform
//! `main.tf` / installer `config.yaml`), the state file, a saved plan, and the user's confirmation.
//! Shared by every command module; imports nothing from them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::CliError;
use super::args::{DefArgs, StateArgs};
use crate::plan::{CoreTarget, PLAN_FORMAT, SavedPlan};
use crate::spec::{self, ClusterSpec, LoadOptions};
use crate::state::{State, StateFile};

/// A definition loaded for a command, with what a saved plan keeps of the load.
pub(super) struct LoadedDef {
    /// The validated definition.
    pub spec: ClusterSpec,
    /// The `-var` values, parsed.
    pub vars: Vec<(String, String)>,
    /// Every file the load read, with its bytes (see `spec::input::recorded`).
    pub reads: Vec<(PathBuf, Vec<u8>)>,
}

/// Loads the definition with its variables; warnings go to stderr.
pub(super) fn load_def(def: &DefArgs) -> Result<ClusterSpec, CliError> {
    load_def_recorded(def).map(|d| d.spec)
}

/// [`load_def`], keeping the variables and the files read (for `plan -out`).
pub(super) fn load_def_recorded(def: &DefArgs) -> Result<LoadedDef, CliError> {
    let mut vars = Vec::new();
    for v in &def.vars {
        let (k, val) = v.split_once('=').ok_or_else(|| {
            CliError::user(anyhow!(
                "-var {v:?}: expected NAME=VALUE, e.g. -var agents=3"
            ))
        })?;
        vars.push((k.trim().to_string(), val.to_string()));
    }
    if read_plan_file(&def.path).is_some() {
        return Err(CliError::user(anyhow!(
            "{} is a saved plan, not a cluster definition: apply it with `dcform apply {}`, or give the definition's .hcl file",
            def.path.display(),
            def.path.display()
        )));
    }
    load_definition(&def.path, vars, def.var_files.clone())
}

/// Loads `path` with these variables and the process environment, recording every file read.
fn load_definition(
    path: &Path,
    vars: Vec<(String, String)>,
    var_files: Vec<PathBuf>,
) -> Result<LoadedDef, CliError> {
    let opts = LoadOptions {
        vars,
        var_files,
        env: std::env::vars().collect(),
    };
    let (loaded, reads) = spec::input::recorded(|| {
        // A dcos-terraform main.tf or an installer config.yaml is converted in memory first.
        if super::compat::is_foreign_definition(path) {
            let (attributed, text, sources) = super::compat::convert_in_memory(path)?;
            // Read once more through the recording reader, so a saved plan keeps (and checks)
            // the files the conversion read. Should one change in between, the spec hash of
            // the saved plan still holds what was converted, and apply refuses.
            for source in &sources {
                spec::input::read_regular_file(source).map_err(|e| {
                    CliError::user(anyhow!("cannot read {}: {e}", source.display()))
                })?;
            }
            Ok::<_, CliError>(spec::load_text(&attributed, text, &opts)?)
        } else {
            Ok(spec::load(path, &opts)?)
        }
    });
    let loaded = loaded?;
    for w in &loaded.warnings {
        eprintln!("Warning: {w}");
    }
    Ok(LoadedDef {
        spec: loaded.spec,
        vars: opts.vars,
        reads,
    })
}

/// The definition of the saved plan `plan` (read from `plan_path`), loaded and validated again with
/// the plan's variables, and checked to be the one the plan was made from.
pub(super) fn reload_saved_definition(
    plan_path: &Path,
    plan: &SavedPlan,
    def: &DefArgs,
) -> Result<ClusterSpec, CliError> {
    let refuse = |e: anyhow::Error| {
        CliError::user(e.context(format!(
            "{}: the saved plan is not applied",
            plan_path.display()
        )))
    };
    if !def.vars.is_empty() || !def.var_files.is_empty() {
        return Err(refuse(anyhow!(
            "-var and -var-file belong to `dcform plan`: a saved plan applies the variables it was made with"
        )));
    }
    plan.verify().map_err(|e| refuse(e.into()))?;
    let d = &plan.definition;
    let here = std::env::current_dir()
        .map_err(|e| CliError::internal(anyhow!("cannot read the current folder: {e}")))?;
    if !same_dir(&here, &d.dir) {
        return Err(refuse(anyhow!(
            "it was made in {} and names its files relative to that folder; run `dcform apply {}` there",
            d.dir.display(),
            plan_path.display()
        )));
    }
    let loaded = load_definition(&d.path, d.vars.clone(), d.var_files.clone()).map_err(|e| {
        refuse(e.error.context(format!(
            "its definition {} does not load any more; run `dcform plan` again once it does",
            d.path.display()
        )))
    })?;
    d.check(&loaded.reads, &loaded.spec)
        .map_err(|e| refuse(e.into()))?;
    Ok(loaded.spec)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(super) fn state_file(spec: &ClusterSpec, flag: &Option<PathBuf>) -> StateFile {
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
pub(super) fn read_state_and_spec(
    a: &StateArgs,
) -> Result<(StateFile, State, Option<ClusterSpec>), CliError> {
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
pub(super) fn core_target(spec: &ClusterSpec) -> CoreTarget {
    let version = if spec.core.version == "bundled" {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        spec.core.version.clone()
    };
    CoreTarget { version }
}
/// A saved plan file, recognised by its content (not its name): `None` when `path` is not one.
/// The plan is not checked here (see [`reload_saved_definition`]).
pub(super) fn read_plan_file(path: &Path) -> Option<Result<SavedPlan, CliError>> {
    if !path.is_file() || path.extension().is_some_and(|e| e == "hcl") {
        return None;
    }
    let bytes = spec::input::read_regular_file(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let format = value.get("format")?.as_u64()?;
    if format == 1 {
        return Some(Err(CliError::user(anyhow!(
            "{}: a plan of format 1, made by an older dcform: it holds its definition in a form this dcform does not apply unchecked; run `dcform plan -out {}` again",
            path.display(),
            path.display()
        ))));
    }
    if format != u64::from(PLAN_FORMAT) {
        return Some(Err(CliError::user(anyhow!(
            "{}: plan format {format} is not supported by this dcform (it reads {PLAN_FORMAT}); run `dcform plan -out` again",
            path.display()
        ))));
    }
    Some(
        serde_json::from_value(value)
            .map_err(|e| CliError::user(anyhow!("{}: not a valid plan file: {e}", path.display()))),
    )
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
