//! terraform-compat: bring dcos-terraform and DC/OS installer definitions over to dcform, hand machines
//! made by Terraform to it, and speak Terraform's output format.
//!
//! ```text
//! main.tf (dcos-terraform modules) ──terraform::convert──┐
//! genconf/config.yaml (installer) ───installer::convert──┼──> Conversion { definition: HCL text, report }
//! terraform.tfstate (v4) ───────────tfstate::import──────┘        │                      │
//!                                                                  ▼                      ▼
//!                                       dcform's spec::load (validated there)   what was not carried over,
//!                                                                               by name and reason
//! dcform state outputs + nodes ──outputs::terraform_json──> {"name": {"sensitive", "type", "value"}}
//! ```
//!
//! The crate is a pure library: it reads the files it is given and returns text; it never names dcform's
//! types (dcform depends on it, not the reverse). Every error is bad input ([`CompatError`]) and names
//! `file:line` or the field, and what would be valid.
//!
//! | word | meaning |
//! |---|---|
//! | conversion | the definition text and its [`Report`] |
//! | not carried over | an input with no place in a dcform definition, with its reason (Enterprise-only, no dccore meaning, ...) |
//! | note | an input carried over with a change (a default filled in, a path rewritten) |

pub mod definition;
pub mod error;
pub mod installer;
pub mod outputs;
pub mod report;
pub mod terraform;
pub mod tfstate;

use std::path::{Path, PathBuf};

pub use error::CompatError;
pub use report::{Item, Report, SourceKind};

/// A converted definition and what the conversion left behind.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The dcform definition, as HCL text.
    pub definition: String,
    /// What was not carried over, and what was changed.
    pub report: Report,
}

impl Conversion {
    /// The result of converting into `def`: its HCL, and `report` completed with what the
    /// definition says (cluster, provider, pools) and sorted.
    pub fn of(def: &definition::Definition, mut report: Report) -> Conversion {
        report.cluster = def.cluster.clone();
        report.provider = def.provider.clone();
        report.pools = def.pool_summaries();
        report.sort();
        Conversion {
            definition: def.render(),
            report,
        }
    }
}

/// What kind of file `path` is, judged by its name (`.tf`, `.yaml`/`.yml`, `.tfstate`) or, for a
/// folder, by the `.tf` files in it. `None`: not one this crate converts (e.g. a dcform `.hcl` file).
pub fn detect(path: &Path) -> Option<SourceKind> {
    if path.is_dir() {
        return (!tf_files(path).ok()?.is_empty()).then_some(SourceKind::Terraform);
    }
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".tf") {
        Some(SourceKind::Terraform)
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        Some(SourceKind::Installer)
    } else if name.ends_with(".tfstate") || name.ends_with(".tfstate.backup") {
        Some(SourceKind::TfState)
    } else {
        None
    }
}

/// Converts a `main.tf` (or a folder of `.tf` files) or an installer `config.yaml` to a definition.
///
/// # Errors
///
/// [`CompatError::Read`] when a file cannot be read; [`CompatError::NotRecognised`] for a file of another
/// kind (a state is converted with [`tfstate::import`]); otherwise the converter's own errors.
pub fn convert_path(path: &Path) -> Result<Conversion, CompatError> {
    match detect(path) {
        Some(SourceKind::Terraform) => {
            let files = if path.is_dir() {
                tf_files(path).map_err(|source| CompatError::Read {
                    path: path.to_path_buf(),
                    source,
                })?
            } else {
                vec![path.to_path_buf()]
            };
            let dir = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let texts = files
                .into_iter()
                .map(|p| read_text(&p).map(|t| (p, t)))
                .collect::<Result<Vec<_>, _>>()?;
            let values = tfvars_files(&dir)
                .into_iter()
                .map(|p| read_text(&p).map(|t| (p, t)))
                .collect::<Result<Vec<_>, _>>()?;
            terraform::convert_with_values(&texts, &values)
        }
        Some(SourceKind::Installer) => installer::convert(path, &read_text(path)?),
        Some(SourceKind::TfState) => Err(CompatError::NotRecognised {
            file: path.to_path_buf(),
            message: "a Terraform state, not a configuration".into(),
            hint: "hand its machines to dcform with: dcform import-tfstate FILE".into(),
        }),
        None => Err(CompatError::NotRecognised {
            file: path.to_path_buf(),
            message: "not a file dcform converts".into(),
            hint: "convert takes a Terraform main.tf (or a folder of .tf files) or a DC/OS installer config.yaml".into(),
        }),
    }
}

/// Largest input file read.
const MAX_INPUT_BYTES: u64 = 16 << 20;

/// Reads a file as UTF-8 text.
///
/// # Errors
///
/// [`CompatError::Read`] when it cannot be read, [`CompatError::NotRecognised`] when it is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, CompatError> {
    let read_err = |source| CompatError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Only regular files of sane size: a FIFO with no writer would block the read forever
    // (dcform's own definition files are read by the same rule, `dcform::spec::input`).
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() || meta.len() > MAX_INPUT_BYTES {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            if meta.is_file() {
                format!("larger than the {} MiB read", MAX_INPUT_BYTES >> 20)
            } else {
                "not a regular file (a FIFO, socket, device or folder); give a file's path".into()
            },
        )));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    String::from_utf8(bytes).map_err(|_| CompatError::NotRecognised {
        file: path.to_path_buf(),
        message: "not UTF-8 text".into(),
        hint: "Terraform, YAML and state files are UTF-8".into(),
    })
}

/// The `.tf` files of a folder, sorted (Terraform reads them all as one configuration).
fn tf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tf"))
        .collect();
    v.sort();
    Ok(v)
}

/// The variable value files Terraform reads by itself from a configuration's folder, in its order:
/// `terraform.tfvars`, then `*.auto.tfvars` alphabetically. (The JSON forms are not read.)
fn tfvars_files(dir: &Path) -> Vec<PathBuf> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut auto: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".auto.tfvars"))
                .collect()
        })
        .unwrap_or_default();
    auto.sort();
    let main = dir.join("terraform.tfvars");
    let mut v = Vec::new();
    if main.is_file() {
        v.push(main);
    }
    v.extend(auto);
    v
}
