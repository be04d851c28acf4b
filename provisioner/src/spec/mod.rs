//! The cluster definition: HCL files -> `RawCluster` (keeps source spans) -> validated `ClusterSpec`.
//!
//! `load(path, &LoadOptions)` reads a `.hcl` file or a folder of them, applies variables (`-var`, `-var-file`,
//! `DCFORM_VAR_*`, `*.auto.hcl`, defaults), evaluates expressions, and validates the result. Every error names
//! `file:line:col` and what would have been valid.

mod model;

pub use model::*;
