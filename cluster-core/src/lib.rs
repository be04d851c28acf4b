//! `dccore`: the cluster core that dcform installs on every node (master and agent roles).

/// The version reported by `dccore --version` and recorded by dcform in its state.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
