//! dcform: plan and apply cluster definitions.
