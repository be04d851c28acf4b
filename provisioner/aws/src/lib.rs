//! `dcform-aws`: dcform's EC2 engine. The only crate that names `aws-sdk-ec2` types; dcform's `aws`
//! provider (`provisioner/src/providers/aws.rs`) drives it through the plain types here. `dccore`
//! never depends on it (it is the binary uploaded to every node and stays small).
//!
//! ```text
//! Settings ──Ec2::connect──> Ec2 ─ensure_network(NetworkSpec)─> Network (VPC, subnets, IGW, routes, groups, key pair)
//!                             │
//!                             ├─ Launcher::launch(pool, subnet, node) ── coalesced ──> one RunInstances per pool+zone
//!                             │        └─ adopts instances an interrupted apply launched (found by tag)
//!                             ├─ start / terminate / wait_for_state
//!                             └─ purge_cluster(name): everything tagged dcform:cluster=name, in dependency order
//! ```
//!
//! | piece | what it owns |
//! |---|---|
//! | `client` | credentials, region, endpoint (`aws-config`), HTTPS (rustls + ring), the SDK's retry with backoff and jitter |
//! | `error` | [`AwsError`]: the call, the AWS error code, its message and what to do |
//! | `tags` | the `dcform:*` tags every resource carries from its creation call on |
//! | `network` | [`NetworkSpec`] -> [`Network`], found or created |
//! | `instances` | [`PoolTemplate`], [`Instance`], batched launches, waits, start, terminate, AMI lookup |
//! | `batch` | [`Launcher`]: per-node `create` calls coalesced into batches |
//! | `teardown` | [`Ec2::purge_cluster`] |
//! | `console` | SSH host keys from an instance's console output (`GetConsoleOutput`), to pin before first contact |
//! | `wait` | polling with jittered backoff up to a deadline, written once |

mod batch;
mod client;
mod console;
mod error;
mod instances;
mod network;
pub mod tags;
mod teardown;
mod wait;

pub use batch::{Launcher, Terminator};
pub use client::{Ec2, Settings};
pub use console::host_keys_from_console;
pub use error::AwsError;
pub use instances::{ExtraVolume, Instance, NodeSlot, PoolTemplate, is_live};
pub use network::{Network, NetworkSpec, Subnet, key_pair_name};
pub use teardown::PurgeReport;
pub use wait::WaitPolicy;
