//! The terraform-compat commands: `convert`, `import-tfstate`, the in-memory conversion behind
//! `plan main.tf` / `apply main.tf`, and Terraform's `output -json` shape.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::args::{ConvertArgs, ImportTfstateArgs};
use super::{CliError, exit};
use crate::state::State;
use terraform_compat::{Conversion, SourceKind};

impl From<terraform_compat::CompatError> for CliError {
    fn from(e: terraform_compat::CompatError) -> Self {
        // Every conversion error is about the file the user gave.
        CliError::user(e)
    }
}

/// Whether `path` is a file another tool wrote that dcform converts before loading (`main.tf`, a folder
/// of `.tf` files without `.hcl` ones, an installer `config.yaml`), rather than a dcform definition.
pub(super) fn is_foreign_definition(path: &Path) -> bool {
    match terraform_compat::detect(path) {
        Some(SourceKind::Terraform) if path.is_dir() => !has_hcl(path),
        Some(SourceKind::Terraform | SourceKind::Installer) => true,
        _ => false,
    }
}

fn has_hcl(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "hcl"))
    })
}

/// Converts `path` in memory for `plan`/`apply`/`validate`, saying so on stderr. Returns the path to
/// attribute the definition to (the state then lives beside the original file), its text, and the
/// files the conversion read.
pub(super) fn convert_in_memory(path: &Path) -> Result<(PathBuf, String, Vec<PathBuf>), CliError> {
    let c = terraform_compat::convert_path(path)?;
    let n = c.report.not_carried_over.len();
    eprintln!(
        "Converted {} ({}) to a dcform definition in memory: cluster \"{}\", {} node(s){}. `dcform convert {}` prints it and lists what was not carried over.",
        path.display(),
        c.report.kind.describe(),
        c.report.cluster,
        c.report.known_nodes(),
        if n == 0 {
            String::new()
        } else {
            format!(", {n} input(s) not carried over")
        },
        path.display()
    );
    // Messages about the converted text name the original file, marked as converted.
    let name = path
        .file_name()
        .map_or_else(|| "definition".into(), |n| n.to_string_lossy().into_owned());
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // The installer runs beside its genconf/ folder, and the converted key path
        // (genconf/ssh-key) is relative to that place: so is the definition, and its state.
        match (c.report.kind, parent.file_name()) {
            (SourceKind::Installer, Some(n)) if n == "genconf" => {
                parent.parent().map(Path::to_path_buf).unwrap_or_default()
            }
            _ => parent,
        }
    };
    Ok((
        dir.join(format!("{name} (converted)")),
        c.definition,
        c.report.sources,
    ))
}

/// `dcform convert FILE [-o OUT] [--json]`.
pub(super) fn convert(a: &ConvertArgs) -> Result<u8, CliError> {
    let c = terraform_compat::convert_path(&a.path)?;
    emit(c, a.out.as_deref(), a.json)
}

/// `dcform import-tfstate STATE [--filter tag:K=V]...`.
pub(super) fn import_tfstate(a: &ImportTfstateArgs) -> Result<u8, CliError> {
    let filters = a
        .filters
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<terraform_compat::tfstate::Filter>, _>>()
        .map_err(CliError::user)?;
    let text = terraform_compat::read_text(&a.state)?;
    let opts = terraform_compat::tfstate::ImportOptions {
        filters,
        role: a.role.clone(),
        ssh_user: a.ssh_user.clone(),
        ssh_key: a.ssh_key.clone(),
        cluster: a.cluster.clone(),
    };
    let c = terraform_compat::tfstate::import(&a.state, &text, &opts)?;
    emit(c, a.out.as_deref(), a.json)
}

/// The definition to `out` (or stdout), the report to stderr; with `json`, one object on stdout.
fn emit(c: Conversion, out: Option<&Path>, json: bool) -> Result<u8, CliError> {
    if let Some(out) = out {
        std::fs::write(out, &c.definition)
            .map_err(|e| CliError::user(anyhow!("cannot write {}: {e}", out.display())))?;
    }
    if json {
        let mut v = serde_json::json!({ "report": c.report });
        if out.is_none() {
            v["definition"] = serde_json::Value::String(c.definition);
        }
        print_out(&format!("{v}\n"));
        return Ok(exit::OK);
    }
    if out.is_none() {
        print_out(&c.definition);
    }
    eprint!("{}", c.report.render_human());
    if let Some(out) = out {
        eprintln!(
            "Wrote {}. Check it with: dcform validate {}",
            out.display(),
            out.display()
        );
    }
    Ok(exit::OK)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error worth a panic.
fn print_out(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

/// The state's outputs in Terraform's shape, with dcos-terraform's names.
pub(super) fn terraform_outputs(state: &State) -> serde_json::Value {
    let nodes: Vec<terraform_compat::outputs::NodeView<'_>> = state
        .nodes
        .iter()
        .map(|n| terraform_compat::outputs::NodeView {
            role: n.role.as_str(),
            address: n.addresses.first().map(String::as_str),
        })
        .collect();
    terraform_compat::outputs::terraform_json(&state.outputs, &nodes)
}
