//! dcform: plan and apply cluster definitions.
//!
//! The pipeline, one module per stage:
//! `spec` (HCL -> ClusterSpec) -> `state` (what exists) -> `plan` (pure diff) -> `apply` (executor over
//! `Provider` + `Remote`, with `step_ops` saying what each plan step runs on a node) ; `cli` wires them to the `dcform` command line. `pki`: the cluster CA and
//! the secrets kept beside the state.

pub mod apply;
pub mod cli;
pub mod cluster_api;
pub mod core_binary;
pub mod pki;
pub mod plan;
pub mod providers;
pub mod replica_api;
pub mod services;
pub mod spec;
pub mod state;
pub mod step_ops;
