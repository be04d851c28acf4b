//! Raw arguments of `dcform app ...` (phase one); checked in `app_cmd`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::StateArgs;

/// `dcform app ...`: long-running services through the masters' Marathon-compatible API.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create or update an app from a Marathon app definition (JSON), and wait until it runs.
    #[command(
        after_help = "Examples:\n  dcform app deploy web.json examples/local.hcl\n  dcform app deploy --no-wait web.json .\n  dcform app deploy --timeout 600 --force web.json .   # override a deployment in progress\n\nThe file is one Marathon app: {\"id\": \"/web\", \"cmd\": \"python3 -m http.server $PORT0\", \"instances\": 2, \"cpus\": 0.1, \"mem\": 32, \"portDefinitions\": [{\"port\": 0}]}"
    )]
    Deploy(AppDeployArgs),
    /// List the apps: ID INSTANCES RUNNING HEALTHY DEPLOYMENTS (`--json`: the apps as the API answers them).
    #[command(
        after_help = "Examples:\n  dcform app list examples/local.hcl\n  dcform app list --json . | jq '.[].tasksRunning'"
    )]
    List(StateArgs),
    /// Show an app: its definition, counters, and tasks with host:ports.
    #[command(
        after_help = "Examples:\n  dcform app show /web examples/local.hcl\n  dcform app show web --json ."
    )]
    Show(AppShowArgs),
    /// Set the number of instances of an app and wait until they run.
    #[command(
        after_help = "Examples:\n  dcform app scale /web 3 examples/local.hcl\n  dcform app scale /web 0 --no-wait ."
    )]
    Scale(AppScaleArgs),
    /// Replace every instance of an app (new tasks), and wait until the new ones run.
    #[command(after_help = "Examples:\n  dcform app restart /web examples/local.hcl")]
    Restart(AppIdArgs),
    /// Remove an app (its instances are killed), and wait until it is gone.
    #[command(
        after_help = "Examples:\n  dcform app remove /web examples/local.hcl\n  dcform app remove /web --force ."
    )]
    Remove(AppIdArgs),
}

/// How a change waits for its deployment.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return once the change is accepted, without waiting for the deployment.
    #[arg(long = "no-wait")]
    pub no_wait: bool,
    /// Seconds to wait for the deployment before failing (with why the app is not starting).
    #[arg(long, default_value_t = 300, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Override a deployment in progress for the app (Marathon's `?force=true`).
    #[arg(long)]
    pub force: bool,
}

/// `dcform app deploy FILE [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct AppDeployArgs {
    /// A Marathon app definition: one JSON object with an `id`.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: StateArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `dcform app show ID [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct AppShowArgs {
    /// The app's id, e.g. `/web` (the leading `/` is optional).
    pub id: String,
    #[command(flatten)]
    pub target: StateArgs,
}

/// `dcform app restart|remove ID [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct AppIdArgs {
    /// The app's id, e.g. `/web` (the leading `/` is optional).
    pub id: String,
    #[command(flatten)]
    pub target: StateArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `dcform app scale ID N [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct AppScaleArgs {
    /// The app's id, e.g. `/web`.
    pub id: String,
    /// The number of instances wanted.
    pub instances: u32,
    #[command(flatten)]
    pub target: StateArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}
