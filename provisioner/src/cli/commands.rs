//! The dispatcher: one parsed command line to the function of its subcommand. Each subcommand checks
//! its raw arguments, runs the pipeline stages and prints; they live by what they work on:
//! `plan_cmd` (validate, plan), `apply_cmd` (apply, destroy), `state_cmd` (status, output, state, force-unlock),
//! `task_cmd` (task), `app_cmd` (app), `nodes` (list, ssh, exec, node-image, destroy --cluster), `compat` (convert,
//! import-tfstate); what they all read is in `inputs`.

use super::CliError;
use super::apply_cmd::apply_cmd;
use super::args::{Cli, Command, StateCommand, TaskCommand};
use super::plan_cmd::{plan_cmd, validate};
use super::state_cmd::{force_unlock, output, state_list, state_rm, state_show, status};
use super::task_cmd::{task_list, task_logs};

/// Runs one parsed command line; returns the exit code on success.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Validate(a) => validate(&a),
        Command::Plan(a) => plan_cmd(&a).await,
        Command::Apply(a) => apply_cmd(&a, false).await,
        Command::Destroy(a) if a.cluster.is_some() => super::nodes::destroy_by_label(&a).await,
        Command::Destroy(a) => apply_cmd(&a.apply, true).await,
        Command::List(a) => super::nodes::list(&a).await,
        Command::Ssh(a) => super::nodes::ssh(&a).await,
        Command::Exec(a) => super::nodes::exec(&a).await,
        Command::NodeImage(c) => super::nodes::node_image(&c).await,
        Command::Status(a) => status(&a).await,
        Command::Output(a) => output(&a),
        Command::State(StateCommand::List(a)) => state_list(&a),
        Command::State(StateCommand::Show(a)) => state_show(&a),
        Command::State(StateCommand::Rm(a)) => state_rm(&a),
        Command::ForceUnlock(a) => force_unlock(&a),
        Command::Task(TaskCommand::List(a)) => task_list(&a).await,
        Command::Task(TaskCommand::Logs(a)) => task_logs(&a).await,
        Command::App(c) => super::app_cmd::app_cmd(&c).await,
        Command::Convert(a) => super::compat::convert(&a),
        Command::ImportTfstate(a) => super::compat::import_tfstate(&a),
    }
}
