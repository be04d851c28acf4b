//! Raw command-line arguments (phase one: what the user typed). Validation happens in the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::spec::ProviderKind;

/// Flags users of Terraform type with one dash (`-var k=v`, `-out FILE`); rewritten to `--var` before parsing.
const TERRAFORM_FLAGS: &[&str] = &[
    "var",
    "var-file",
    "out",
    "state",
    "auto-approve",
    "detailed-exitcode",
    "json",
    "parallelism",
    "destroy",
    "raw",
];

/// Rewrites `-var` / `-var=x` style flags to their `--` form so both spellings work.
pub fn normalise(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            if let Some(rest) = a.strip_prefix('-').filter(|r| !r.starts_with('-')) {
                let name = rest.split('=').next().unwrap_or(rest);
                if TERRAFORM_FLAGS.contains(&name) {
                    return format!("-{a}");
                }
            }
            a
        })
        .collect()
}

/// dcform: infrastructure-as-code for whole datacenter-OS clusters.
///
/// A cluster definition (HCL) is planned into steps that create machines, bootstrap them over SSH and install
/// the cluster core `dccore`. Exit codes: 0 ok, 1 bad input (definition, flags, state), 2 internal failure,
/// 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "dcform",
    version,
    propagate_version = true,
    max_term_width = 110
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cluster definition and report every problem with file:line:col.
    #[command(
        after_help = "Examples:\n  dcform validate examples/local.hcl\n  dcform validate . -var agents=3 --json"
    )]
    Validate(DefArgs),
    /// Show what apply would change.
    #[command(
        after_help = "Examples:\n  dcform plan examples/local.hcl\n  dcform plan -var agents=5 -out scale.plan .\n  dcform plan --detailed-exitcode examples/local.hcl   # 0 no changes, 1 error, 2 changes"
    )]
    Plan(PlanArgs),
    /// Create or update the cluster so that it matches the definition (or apply a saved plan exactly, after checking its definition is unchanged).
    #[command(
        after_help = "Examples:\n  dcform apply examples/local.hcl\n  dcform apply --auto-approve -var agents=5 .\n  dcform apply scale.plan            # a plan saved with `plan -out` (from the same folder; refused if its definition changed)"
    )]
    Apply(ApplyArgs),
    /// Remove every node of the cluster and the provider's resources.
    #[command(
        after_help = "Examples:\n  dcform destroy examples/local.hcl\n  dcform destroy --auto-approve .\n  dcform destroy --cluster docker --auto-approve   # no state: remove every Docker object labelled with the cluster\n  dcform destroy --cluster docker --auto-approve examples/docker.hcl   # ... and forget its nodes in that definition's state"
    )]
    Destroy(DestroyArgs),
    /// List the Docker clusters on this machine, found by their labels (no state needed).
    #[command(after_help = "Examples:\n  dcform list\n  dcform list --json")]
    List(ListArgs),
    /// Open an interactive shell on a node over SSH (or run one command with `-- CMD`).
    #[command(
        after_help = "Examples:\n  dcform ssh masters-1 examples/docker.hcl\n  dcform ssh agents-1 . -- uptime"
    )]
    Ssh(NodeCmdArgs),
    /// Run a command on a node over SSH and exit with its exit code.
    #[command(
        after_help = "Examples:\n  dcform exec agents-1 examples/docker.hcl -- ps aux\n  dcform exec masters-1 . -- cat /var/log/dcform/dccore-master.log"
    )]
    Exec(NodeCmdArgs),
    /// Build the node image used by the docker provider (and by the SSH tests).
    #[command(subcommand, name = "node-image")]
    NodeImage(NodeImageCommand),
    /// Show the cluster's nodes: role, address, core version and status.
    #[command(
        after_help = "Examples:\n  dcform status examples/local.hcl\n  dcform status --json . | jq '.nodes[].health'"
    )]
    Status(StateArgs),
    /// Show the cluster's outputs (master URL, ...).
    #[command(
        after_help = "Examples:\n  dcform output examples/local.hcl\n  dcform output -json .              # Terraform's shape: {\"master_url\": {\"sensitive\": false, \"type\": \"string\", \"value\": ...}}\n  dcform output masters-ips .        # one value, raw\n  dcform output --json --flat .      # {\"master_url\": ...}"
    )]
    Output(OutputArgs),
    /// Inspect the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Tasks running on the cluster: list them, read their output.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Long-running services (Marathon apps) on the cluster: deploy, list, show, scale, restart, remove.
    #[command(subcommand)]
    App(super::app_args::AppCommand),
    /// Remove a state lock left by a process that is gone.
    #[command(after_help = "Example:\n  dcform force-unlock 3f2a7c4e-... examples/local.hcl")]
    ForceUnlock(ForceUnlockArgs),
    /// Convert a dcos-terraform main.tf or a DC/OS installer config.yaml to a dcform definition, listing
    /// every input that is not carried over (plan and apply also take such files directly).
    #[command(
        after_help = "Examples:\n  dcform convert main.tf -o cluster.hcl\n  dcform convert genconf/config.yaml > onprem.hcl\n  dcform convert --json main.tf | jq '.report.not_carried_over[].input'"
    )]
    Convert(ConvertArgs),
    /// Hand machines made by Terraform to dcform: a v4 state's aws_instances become ssh-provider pools.
    #[command(
        name = "import-tfstate",
        after_help = "Examples:\n  dcform import-tfstate terraform.tfstate -o onprem.hcl\n  dcform import-tfstate terraform.tfstate --filter tag:Role=agent --ssh-user centos"
    )]
    ImportTfstate(ImportTfstateArgs),
}

/// `dcform convert FILE`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// A Terraform main.tf (or a folder of .tf files) or an installer config.yaml.
    pub path: PathBuf,
    /// Write the definition to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the report (and the definition, without -o) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `dcform import-tfstate STATE`.
#[derive(Debug, Clone, Args)]
pub struct ImportTfstateArgs {
    /// A Terraform state file, format version 4 (Terraform 0.12 and later).
    pub state: PathBuf,
    /// Import only instances with this tag value (repeatable; all must match): tag:KEY=VALUE.
    #[arg(long = "filter", value_name = "tag:KEY=VALUE")]
    pub filters: Vec<String>,
    /// The role of every imported instance (default: its Role tag, else its module's name).
    #[arg(long, value_name = "master|agent|public_agent")]
    pub role: Option<String>,
    /// Login user of the machines (a state does not record it).
    #[arg(long = "ssh-user", value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Private key that logs in to the machines.
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_key: Option<String>,
    /// Cluster name (default: the instances' Cluster tag).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Write the definition to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the report (and the definition, without -o) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `dcform state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the nodes in the state.
    #[command(after_help = "Example:\n  dcform state list examples/local.hcl")]
    List(StateArgs),
    /// Show everything the state records about one node.
    #[command(after_help = "Example:\n  dcform state show agents-1 examples/local.hcl")]
    Show(ShowArgs),
    /// Forget a node without touching its machine (e.g. a host that died and will never answer again).
    #[command(
        after_help = "Example:\n  dcform state rm agents-3 examples/onprem.hcl   # then `dcform apply` plans it anew if still wanted"
    )]
    Rm(ShowArgs),
}

/// `dcform task ...`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List the tasks the master knows (running, unreachable, completed).
    #[command(
        after_help = "Examples:\n  dcform task list examples/local.hcl\n  dcform task list --json ."
    )]
    List(StateArgs),
    /// Print a task's stdout (or stderr) from its sandbox on the agent.
    #[command(
        after_help = "Examples:\n  dcform task logs hello-1 examples/local.hcl\n  dcform task logs --stderr hello-1 ."
    )]
    Logs(TaskLogsArgs),
}

/// `dcform task logs TASK`.
#[derive(Debug, Clone, Args)]
pub struct TaskLogsArgs {
    /// Task id.
    pub task: String,
    #[command(flatten)]
    pub target: StateArgs,
    /// Print stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing what the task writes until it ends (or Ctrl-C), like `tail -f`.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Where the definition is and its variables.
#[derive(Debug, Clone, Args)]
pub struct DefArgs {
    /// A `.hcl` file or a folder of them.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Set a variable (repeatable; later wins): `-var agents=3`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variable values from an HCL file (repeatable; later wins).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `dcform plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// State file (default: `<definition folder>/.dcform/<cluster>/state.json`).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Save the plan to FILE, to apply exactly it later with `dcform apply FILE`.
    #[arg(long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long = "detailed-exitcode")]
    pub detailed_exitcode: bool,
    /// Plan the destruction of the whole cluster.
    #[arg(long)]
    pub destroy: bool,
}

/// `dcform apply` / `dcform destroy`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// State file (default: `<definition folder>/.dcform/<cluster>/state.json`).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long = "auto-approve")]
    pub auto_approve: bool,
    /// Most nodes worked on at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// The dccore binary to install (default: the one next to dcform).
    #[arg(long = "core-binary", env = "DCFORM_CORE_BINARY", value_name = "FILE")]
    pub core_binary: Option<PathBuf>,
    /// Accept any SSH host key. For throwaway test clusters only: a replaced or impostor host is not noticed.
    #[arg(long = "insecure-skip-host-key")]
    pub insecure_skip_host_key: bool,
    /// Create (or remove) machines and their network only, and connect to none of them: the next
    /// plain `apply` bootstraps them.
    #[arg(long = "infra-only")]
    pub infra_only: bool,
    /// How long apply waits for the definition's services to be deployed (running, and healthy
    /// where they have health checks) before it fails with the reasons they are not starting.
    #[arg(long = "service-timeout", value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub service_timeout_secs: u64,
}

/// `dcform destroy`.
#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Without a state: remove every container, network and volume labelled `dcform.cluster=NAME`.
    /// A `docker` state of that cluster at the definition's usual place (or `--state`) forgets
    /// its nodes, so the next `apply` creates the cluster again.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// With `--cluster`: where to look (`docker`, or `aws`: every EC2 resource tagged
    /// `dcform:cluster=NAME` in the region of AWS_REGION / the definition). Default: the
    /// definition's provider if one is given, else docker.
    #[arg(long, value_name = "PROVIDER", value_parser = label_provider, requires = "cluster")]
    pub provider: Option<ProviderKind>,
    /// With `--cluster` on aws: only the resources tagged `dcform:lineage=L` (the `lineage` of the
    /// cluster's state). Needed when several clusters of that name share the account and region:
    /// the error lists them.
    #[arg(long, value_name = "L", requires = "cluster")]
    pub lineage: Option<String>,
}

/// `--provider` of `destroy --cluster`: the providers whose objects carry the cluster's label.
fn label_provider(s: &str) -> Result<ProviderKind, String> {
    match ProviderKind::parse(s) {
        Some(k @ (ProviderKind::Docker | ProviderKind::Aws)) => Ok(k),
        _ => Err(format!("possible values: docker, aws (got {s:?})")),
    }
}

/// `dcform list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `dcform ssh NODE [PATH] [-- CMD...]` / `dcform exec NODE [PATH] -- CMD...`.
#[derive(Debug, Clone, Args)]
pub struct NodeCmdArgs {
    /// Node name, e.g. `agents-1`.
    pub node: String,
    #[command(flatten)]
    pub target: StateArgs,
    /// The command to run (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `dcform node-image ...`.
#[derive(Debug, Subcommand)]
pub enum NodeImageCommand {
    /// Build (or rebuild) the node image from Debian packages.
    #[command(
        after_help = "Examples:\n  dcform node-image build\n  dcform node-image build --tag dcform-node:test"
    )]
    Build(NodeImageArgs),
}

/// `dcform node-image build`.
#[derive(Debug, Clone, Args)]
pub struct NodeImageArgs {
    /// Image tag.
    #[arg(long, default_value = "dcform-node:bookworm")]
    pub tag: String,
    /// Reuse an image built from the same recipe instead of building again.
    #[arg(long = "if-missing")]
    pub if_missing: bool,
}

/// Commands that read a cluster's state.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// State file (default: `<definition folder>/.dcform/<cluster>/state.json`).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

/// `dcform output [NAME] [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print only this output's value, raw (as `terraform output NAME`). A lone argument that is an
    /// existing path is taken as the definition instead.
    #[arg(value_name = "NAME")]
    pub name_arg: Option<String>,
    #[command(flatten)]
    pub target: StateArgs,
    /// Print only this output's value.
    #[arg(long)]
    pub name: Option<String>,
    /// With --json: dcform's flat {"name": value} object instead of Terraform's
    /// {"name": {"sensitive", "type", "value"}}.
    #[arg(long)]
    pub flat: bool,
    /// Print the one value raw, as `terraform output -raw NAME` (what `dcform output NAME` does anyway).
    #[arg(long)]
    pub raw: bool,
}

/// `dcform state show NODE`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Node name, e.g. `agents-1`.
    pub node: String,
    #[command(flatten)]
    pub target: StateArgs,
}

/// `dcform force-unlock ID`.
#[derive(Debug, Clone, Args)]
pub struct ForceUnlockArgs {
    /// The lock id printed by the command that found the state locked.
    pub id: String,
    #[command(flatten)]
    pub target: StateArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_single_dash_flags_are_accepted() {
        let args = normalise(
            [
                "dcform",
                "plan",
                "-var",
                "a=1",
                "-var-file=x.hcl",
                "-out",
                "p",
                "-v",
            ]
            .map(String::from),
        );
        assert_eq!(
            args,
            [
                "dcform",
                "plan",
                "--var",
                "a=1",
                "--var-file=x.hcl",
                "--out",
                "p",
                "-v"
            ]
        );
        let cli = Cli::try_parse_from(args.iter().take(7)).unwrap();
        let Command::Plan(p) = cli.command else {
            panic!()
        };
        assert_eq!(p.def.vars, vec!["a=1"]);
        assert_eq!(p.out, Some(PathBuf::from("p")));
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let leaves: Vec<&clap::Command> = if sub.has_subcommands() {
                sub.get_subcommands().collect()
            } else {
                vec![sub]
            };
            for leaf in leaves {
                let help = leaf
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    help.contains("dcform "),
                    "{} has no example",
                    leaf.get_name()
                );
            }
        }
    }
}
