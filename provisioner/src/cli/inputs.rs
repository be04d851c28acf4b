//! What the commands read: the definition (with its variables, or converted from a dcos-terraform
//! `main.tf` / installer `config.yaml`), the state file, a saved plan, and the user's confirmation.
//! Shared by every command module; imports nothing from them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::CliError;
use super::args::{DefArgs, StateArgs};
use crate::plan::{CoreTarget, PLAN_FORMAT, Plan};
use crate::spec::{self, ClusterSpec, LoadOptions};
use crate::state::{State, StateFile};

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
/// A saved plan file, recognised by its content (not its name).
pub(super) fn read_plan_file(path: &Path) -> Option<Result<Plan, CliError>> {
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
