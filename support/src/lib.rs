//! `dc-support`: the few things every crate of this workspace needs exactly once.
//!
//! | module | what |
//! |---|---|
//! | [`retry`] | one [`Backoff`](retry::Backoff) (exponential, capped, jittered, with an attempt and/or time budget) and one runner whose steps say what happens next ([`Next`](retry::Next)) |
//! | [`error`] | one way to print an error with its causes ([`error::chain`]) |
//! | [`splitmix`] | one small seeded generator ([`SplitMix64`](splitmix::SplitMix64)): the retry jitter, and fault tests that replay from their seed |
//! | `testing` (feature `testing`, dev-dependencies only) | commands and futures under a deadline, and the one rule for when a test may skip |
//!
//! This crate must stay tiny: `dccore` (the binary uploaded to every node), `dcform`,
//! `dcform-bootstrap` and `dcform-aws` all depend on it. Its only dependency is tokio's timer; add
//! nothing that is not needed by at least two of those crates.

pub mod error;
pub mod retry;
pub mod splitmix;
#[cfg(feature = "testing")]
pub mod testing;
