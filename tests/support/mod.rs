//! Shared helpers of the integration tests.
pub mod local;
pub mod mesos;
