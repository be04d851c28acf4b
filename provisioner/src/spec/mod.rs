//! The cluster definition: HCL files -> raw blocks (`RawBlock`/`RawBody`, keep source spans) -> validated
//! `ClusterSpec`.
//!
//! `load(path, &LoadOptions)` reads a `.hcl` file or a folder of them, applies variables (`-var`, `-var-file`,
//! `DCFORM_VAR_*`, `*.auto.hcl`, defaults), evaluates expressions, and validates the result. Every error names
//! `file:line:col` and what would have been valid.
//!
//! ```text
//! files ──raw::parse_file──> RawBody (spans) ──vars::declare/resolve──> var values
//!                                  │                                        │
//!                                  └── cluster block ──validate (eval::Evaluator)──> ClusterSpec + warnings
//! ```
//!
//! Stages: `raw` (syntax, spans), [`vars`] (declarations, value sources and their precedence), `eval`
//! (expression evaluation with positions), `funcs` (the function library), `validate` (every check).
//! [`saved`]: what a saved plan keeps of its definition, checked again on apply.

pub mod core_config;
mod error;
mod eval;
mod funcs;
pub mod input;
mod model;
mod raw;
pub mod saved;
mod validate;
pub mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{Diagnostic, SpecError};
pub use model::*;
pub use validate_limits::MAX_POOL_COUNT;

use error::Diags;
use raw::{Loc, RawBlock, Sources};

/// Limits the loader enforces, for callers that want to mention them.
mod validate_limits {
    /// Largest `count` a pool may have.
    pub const MAX_POOL_COUNT: u32 = super::validate::MAX_COUNT;
}

/// Where variable values come from besides the definition itself (see [`vars`] for the precedence).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-var NAME=VALUE` pairs in command-line order (later wins).
    pub vars: Vec<(String, String)>,
    /// `-var-file FILE` paths in command-line order (later wins); relative to the current directory.
    pub var_files: Vec<PathBuf>,
    /// The environment: `DCFORM_VAR_<name>` values, `env()` and `HOME` for `~` expansion. The CLI passes
    /// `std::env::vars()`; tests inject their own.
    pub env: BTreeMap<String, String>,
}

/// A loaded definition.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated cluster.
    pub spec: ClusterSpec,
    /// Things that are allowed but probably unintended (an even number of masters, ignored values).
    pub warnings: Vec<Diagnostic>,
}

const TOP_BLOCKS: &[&str] = &["variable", "cluster"];

/// Loads and validates a cluster definition.
///
/// `path` is a `.hcl` file, or a folder whose `*.hcl` files (sorted by name, not recursive) together form
/// the definition and whose `*.auto.hcl` files hold variable values. Relative paths inside the definition
/// (`file()`, `ssh.private_key`) resolve against the file's folder.
///
/// # Errors
///
/// [`SpecError::Read`] when `path` cannot be read; [`SpecError::Invalid`] with every problem found
/// otherwise. Never panics on any file content.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, SpecError> {
    let files = raw::list_files(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut texts = Vec::with_capacity(files.definitions.len());
    for p in &files.definitions {
        let bytes = input::read_regular_file(p).map_err(|source| SpecError::Read {
            path: p.clone(),
            source,
        })?;
        texts.push((p.clone(), bytes));
    }
    load_sources(path, files, texts, opts)
}

/// Loads a definition held in memory as if it were the file `path`: messages name `path`, and the
/// definition folder (state location, relative paths) is `path`'s folder. For definitions converted from
/// another format (`dcform plan main.tf`); nothing is read from `path` itself.
///
/// # Errors
///
/// As [`load`].
pub fn load_text(path: &Path, text: String, opts: &LoadOptions) -> Result<Loaded, SpecError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let files = raw::FileSet {
        definitions: vec![path.to_path_buf()],
        auto_files: vec![],
        dir,
    };
    load_sources(
        path,
        files,
        vec![(path.to_path_buf(), text.into_bytes())],
        opts,
    )
}

fn load_sources(
    path: &Path,
    files: raw::FileSet,
    texts: Vec<(PathBuf, Vec<u8>)>,
    opts: &LoadOptions,
) -> Result<Loaded, SpecError> {
    let mut diags = Diags::default();
    if files.definitions.is_empty() {
        diags.error(Diagnostic::unplaced(
            path,
            "no definition files (*.hcl other than *.auto.hcl) in this folder",
            "point dcform at a .hcl file or a folder holding one",
        ));
        return Err(invalid(diags));
    }
    let mut sources = Sources::default();
    let mut bodies = Vec::new();
    for (p, bytes) in texts {
        let Ok(text) = String::from_utf8(bytes) else {
            diags.error(Diagnostic::unplaced(
                &p,
                "file is not UTF-8 text",
                "HCL files are UTF-8",
            ));
            continue;
        };
        let id = sources.add(p, text);
        match raw::parse_file(&sources, id) {
            Ok(body) => bodies.push((id, body)),
            Err(d) => diags.error(d),
        }
    }
    if !diags.errors.is_empty() {
        return Err(invalid(diags));
    }

    let mut var_blocks: Vec<&RawBlock> = Vec::new();
    let mut clusters: Vec<&RawBlock> = Vec::new();
    for (_, body) in &bodies {
        for a in &body.attrs {
            diags.error(sources.diag(
                &a.key_loc,
                format!("unexpected attribute \"{}\" outside any block", a.key),
                "a definition holds variable and cluster blocks; give variable values in *.auto.hcl files or with -var",
            ));
        }
        for b in &body.blocks {
            match b.ident.as_str() {
                "variable" => var_blocks.push(b),
                "cluster" => clusters.push(b),
                other => diags.error(sources.diag(
                    &b.ident_loc,
                    format!("unknown block \"{other}\""),
                    error::name_hint(other, "top-level blocks", TOP_BLOCKS),
                )),
            }
        }
    }

    let _funcs = funcs::FuncEnvGuard::install(funcs::FuncEnv {
        dir: files.dir.clone(),
        env: opts.env.clone(),
    });
    let decls = vars::declare(&sources, &var_blocks, &mut diags);
    let values = vars::resolve(&mut sources, &decls, opts, &files.auto_files, &mut diags);
    if !diags.errors.is_empty() {
        return Err(invalid(diags));
    }

    let first = match clusters.as_slice() {
        [] => {
            let first_file = bodies.first().map_or(0, |(id, _)| *id);
            diags.error(sources.diag(
                &Loc {
                    file: first_file,
                    span: 0..0,
                },
                "no cluster block",
                "add: cluster \"demo\" { provider \"local\" {} ... pool blocks ... }",
            ));
            return Err(invalid(diags));
        }
        [first, rest @ ..] => {
            for extra in rest {
                let (l, c) = sources.line_col(first.ident_loc.file, first.ident_loc.span.start);
                let file = sources
                    .get(first.ident_loc.file)
                    .map(|s| s.path.display().to_string())
                    .unwrap_or_default();
                diags.error(sources.diag(
                    &extra.ident_loc,
                    "more than one cluster block",
                    format!("one definition describes one cluster; the first is at {file}:{l}:{c}"),
                ));
            }
            *first
        }
    };
    let ev = eval::Evaluator::with_vars(values);
    let spec = validate::Validator {
        sources: &sources,
        ev: &ev,
        dir: &files.dir,
        env: &opts.env,
        diags: &mut diags,
    }
    .cluster(first);
    match spec {
        Some(spec) if diags.errors.is_empty() => {
            sort_diags(&mut diags.warnings);
            Ok(Loaded {
                spec,
                warnings: diags.warnings,
            })
        }
        _ => Err(invalid(diags)),
    }
}

fn invalid(mut diags: Diags) -> SpecError {
    sort_diags(&mut diags.errors);
    sort_diags(&mut diags.warnings);
    SpecError::Invalid {
        diagnostics: diags.errors,
        warnings: diags.warnings,
    }
}

/// Checks run block by block, not line by line: report in reading order, values from outside files
/// (command line, environment) first. The sort is stable, so one place's findings keep their order.
fn sort_diags(ds: &mut [Diagnostic]) {
    ds.sort_by(|a, b| {
        (a.line != 0, &a.file, a.line, a.col).cmp(&(b.line != 0, &b.file, b.line, b.col))
    });
}
