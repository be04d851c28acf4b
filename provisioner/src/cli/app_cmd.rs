//! `dcform app deploy|list|show|scale|restart|remove`: long-running services on an applied
//! cluster, through its masters' Marathon-compatible API ([`crate::services::MarathonClient`]).
//! Changes wait for their deployment (progress on stderr) unless `--no-wait`; a wait that runs
//! out says why the app does not start.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use dccore_api::marathon::answers::AppStatus;
use dccore_api::marathon::{App, AppId};
use serde_json::Value;

use super::app_args::{AppCommand, AppDeployArgs, AppIdArgs, AppScaleArgs, AppShowArgs, WaitArgs};
use super::args::StateArgs;
use super::inputs::read_state;
use super::{CliError, exit, table};
use crate::services::{Awaited, MarathonClient, ServiceApiError, WaitProgress, counts_line};

/// Runs one `dcform app` subcommand.
pub(super) async fn app_cmd(c: &AppCommand) -> Result<u8, CliError> {
    match c {
        AppCommand::Deploy(a) => deploy(a).await,
        AppCommand::List(a) => list(a).await,
        AppCommand::Show(a) => show(a).await,
        AppCommand::Scale(a) => scale(a).await,
        AppCommand::Restart(a) => restart(a).await,
        AppCommand::Remove(a) => remove(a).await,
    }
}

/// The client of the cluster of the state `a` names.
fn client(a: &StateArgs) -> Result<MarathonClient, CliError> {
    let (file, state) = read_state(a)?;
    MarathonClient::of(&state, file.dir()).map_err(|e| {
        CliError::user(anyhow::Error::new(e).context(format!(
            "cannot talk to the cluster of {}",
            file.path().display()
        )))
    })
}

fn app_id(raw: &str) -> Result<AppId, CliError> {
    AppId::parse(raw).map_err(|e| CliError::user(anyhow!("app id {raw:?}: {e}")))
}

/// A failed call as the command reports it: an unknown app names the apps there are.
async fn failed(c: &MarathonClient, e: ServiceApiError) -> CliError {
    if let ServiceApiError::AppNotFound { id } = &e {
        let known = match c.list_apps().await {
            Ok(apps) if apps.is_empty() => "there are no apps".to_string(),
            Ok(apps) => format!(
                "apps: {}",
                apps.iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(_) => "the apps could not be listed".to_string(),
        };
        return CliError::user(anyhow!("no app {id} on this cluster; {known}"));
    }
    if e.is_user_error() {
        CliError::user(e)
    } else {
        CliError::internal(e)
    }
}

/// Waits for `awaited` unless `--no-wait`, printing each new state on stderr.
async fn wait(c: &MarathonClient, w: &WaitArgs, awaited: Awaited) -> Result<(), CliError> {
    if w.no_wait {
        eprintln!(
            "{}: deployment {} started (not waiting)",
            awaited.app, awaited.deployment_id
        );
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(w.timeout);
    let mut shown = String::new();
    let progress = |p: &WaitProgress| {
        let line = p.summary();
        if line != shown {
            eprintln!("  {line}");
            shown = line;
        }
    };
    let id = awaited.app.clone();
    match c.wait_deployment(&[awaited], deadline, progress).await {
        Ok(()) => Ok(()),
        Err(e @ ServiceApiError::Timeout { .. }) => Err(CliError::internal(
            anyhow::Error::new(e).context(format!("the deployment of {id} did not finish")),
        )),
        Err(e) => Err(failed(c, e).await),
    }
}

/// Reads and checks a definition file with dccore's own parser: what passes is what the
/// masters accept. Errors name the file (and line:column of bad JSON, or the invalid fields).
fn read_definition(path: &Path) -> Result<App, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::user(anyhow!("cannot read {}: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::user(anyhow!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(CliError::user(anyhow!(
            "{}: a Marathon app definition is one JSON object, e.g. {{\"id\": \"/web\", \"cmd\": \"...\", \"instances\": 1}}",
            path.display()
        )));
    }
    if value.get("id").is_none() {
        return Err(CliError::user(anyhow!(
            "{}: the app has no \"id\" (e.g. \"/web\")",
            path.display()
        )));
    }
    App::from_json(value, None).map_err(|e| {
        let fields: Vec<String> =
            e.0.iter()
                .map(|f| format!("  {}: {}", f.path, f.error))
                .collect();
        CliError::user(anyhow!(
            "{} is not a valid app definition:\n{}",
            path.display(),
            fields.join("\n")
        ))
    })
}

async fn deploy(a: &AppDeployArgs) -> Result<u8, CliError> {
    let app = read_definition(&a.file)?;
    let c = client(&a.target)?;
    let r = match c.put_app(&app.id, &app.raw, a.wait.force).await {
        Ok(r) => r,
        Err(e) => return Err(failed(&c, e).await),
    };
    eprintln!(
        "Deploying {} (version {}, deployment {})",
        app.id, r.version, r.deployment_id
    );
    let awaited = Awaited {
        app: app.id.clone(),
        deployment_id: r.deployment_id,
        removed: false,
    };
    wait(&c, &a.wait, awaited).await?;
    done(&c, &app.id, a.wait.no_wait, "deployed").await
}

/// Prints the app's final counters after a change (when waited for).
async fn done(c: &MarathonClient, id: &AppId, no_wait: bool, what: &str) -> Result<u8, CliError> {
    if no_wait {
        println!("{id}: change accepted");
        return Ok(exit::OK);
    }
    match c.app(id).await {
        Ok(Some(app)) => println!("{id} {what}: {}", counts_line(&app)),
        Ok(None) => println!("{id} {what}"),
        Err(e) => return Err(failed(c, e).await),
    }
    Ok(exit::OK)
}

async fn list(a: &StateArgs) -> Result<u8, CliError> {
    let c = client(a)?;
    let apps = match c.list_apps().await {
        Ok(apps) => apps,
        Err(e) => return Err(failed(&c, e).await),
    };
    if a.def.json {
        let text = serde_json::to_string_pretty(&apps).map_err(CliError::internal)?;
        println!("{text}");
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            vec![
                app.id.clone(),
                app.instances.to_string(),
                app.tasks_running.to_string(),
                if app.has_health_checks() {
                    app.tasks_healthy.to_string()
                } else {
                    "-".into()
                },
                app.deployments.len().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["ID", "INSTANCES", "RUNNING", "HEALTHY", "DEPLOYMENTS"],
            &rows
        )
    );
    Ok(exit::OK)
}

async fn show(a: &AppShowArgs) -> Result<u8, CliError> {
    let id = app_id(&a.id)?;
    let c = client(&a.target)?;
    let app = match c.app(&id).await {
        Ok(Some(app)) => app,
        Ok(None) => {
            let e = ServiceApiError::AppNotFound { id: id.to_string() };
            return Err(failed(&c, e).await);
        }
        Err(e) => return Err(failed(&c, e).await),
    };
    if a.target.def.json {
        let text = serde_json::to_string_pretty(&app).map_err(CliError::internal)?;
        println!("{text}");
        return Ok(exit::OK);
    }
    print!("{}", describe(&app));
    Ok(exit::OK)
}

/// `app show` for people: the definition's main fields, counters, deployments, tasks.
fn describe(app: &AppStatus) -> String {
    let field = |k: &str| match app.definition.get(k) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut out = format!("App {}\n", app.id);
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<12} {v}\n"));
    line("version", app.version.clone());
    line("cmd", field("cmd"));
    line(
        "resources",
        format!(
            "cpus {} mem {} MiB disk {} MiB",
            field("cpus"),
            field("mem"),
            field("disk")
        ),
    );
    line("status", counts_line(app));
    let deployments: Vec<&str> = app.deployments.iter().map(|d| d.id.as_str()).collect();
    line(
        "deployments",
        if deployments.is_empty() {
            "none".into()
        } else {
            deployments.join(", ")
        },
    );
    if let Some(f) = &app.last_task_failure {
        line("last failure", f.to_string());
    }
    let tasks = app.tasks.as_deref().unwrap_or_default();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let ports: Vec<String> = t.ports.iter().map(u64::to_string).collect();
            let health = match t.health_check_results.as_deref() {
                Some([r, ..]) if r.alive => "healthy",
                Some([_, ..]) => "unhealthy",
                _ => "-",
            };
            vec![
                t.id.clone(),
                t.state.name().to_string(),
                if ports.is_empty() {
                    t.host.clone()
                } else {
                    format!("{}:{}", t.host, ports.join(","))
                },
                health.to_string(),
                t.started_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table::render(
        &["TASK", "STATE", "HOST:PORTS", "HEALTH", "STARTED"],
        &rows,
    ));
    out
}

async fn scale(a: &AppScaleArgs) -> Result<u8, CliError> {
    let id = app_id(&a.id)?;
    let c = client(&a.target)?;
    let r = match c.patch_instances(&id, a.instances, a.wait.force).await {
        Ok(r) => r,
        Err(e) => return Err(failed(&c, e).await),
    };
    eprintln!(
        "Scaling {id} to {} (deployment {})",
        a.instances, r.deployment_id
    );
    let awaited = Awaited {
        app: id.clone(),
        deployment_id: r.deployment_id,
        removed: false,
    };
    wait(&c, &a.wait, awaited).await?;
    done(&c, &id, a.wait.no_wait, "scaled").await
}

async fn restart(a: &AppIdArgs) -> Result<u8, CliError> {
    let id = app_id(&a.id)?;
    let c = client(&a.target)?;
    let r = match c.restart(&id, a.wait.force).await {
        Ok(r) => r,
        Err(e) => return Err(failed(&c, e).await),
    };
    eprintln!("Restarting {id} (deployment {})", r.deployment_id);
    let awaited = Awaited {
        app: id.clone(),
        deployment_id: r.deployment_id,
        removed: false,
    };
    wait(&c, &a.wait, awaited).await?;
    done(&c, &id, a.wait.no_wait, "restarted").await
}

async fn remove(a: &AppIdArgs) -> Result<u8, CliError> {
    let id = app_id(&a.id)?;
    let c = client(&a.target)?;
    let r = match c.delete(&id, a.wait.force).await {
        Ok(r) => r,
        Err(e) => return Err(failed(&c, e).await),
    };
    eprintln!("Removing {id} (deployment {})", r.deployment_id);
    let awaited = Awaited {
        app: id.clone(),
        deployment_id: r.deployment_id,
        removed: true,
    };
    wait(&c, &a.wait, awaited).await?;
    if a.wait.no_wait {
        println!("{id}: removal accepted");
    } else {
        println!("{id} removed");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("web.json");
        std::fs::write(&p, text).expect("written");
        (dir, p)
    }

    #[test]
    fn a_definition_that_is_not_json_is_refused_at_its_line_and_column() {
        let (_d, p) = write("{\n  \"id\": \"/web\",\n  \"cmd\": oops\n}");
        let e = read_definition(&p).expect_err("not JSON");
        assert_eq!(e.code, exit::USER);
        let msg = e.error.to_string();
        assert!(msg.contains("web.json:3:"), "{msg}");
    }

    #[test]
    fn a_definition_with_invalid_fields_names_each_field() {
        let (_d, p) = write(r#"{"id": "/web", "cmd": "sleep 9", "mem": -1, "instances": "two"}"#);
        let e = read_definition(&p).expect_err("invalid");
        let msg = e.error.to_string();
        assert!(msg.contains("/mem"), "{msg}");
        assert!(msg.contains("/instances"), "{msg}");
    }

    #[test]
    fn a_definition_without_an_id_says_so() {
        let (_d, p) = write(r#"{"cmd": "sleep 9"}"#);
        let msg = read_definition(&p).expect_err("no id").error.to_string();
        assert!(msg.contains("no \"id\""), "{msg}");
    }

    #[test]
    fn a_valid_definition_keeps_what_was_sent() {
        let (_d, p) =
            write(r#"{"id": "web", "cmd": "sleep 9", "instances": 2, "labels": {"a": "b"}}"#);
        let app = read_definition(&p).expect("valid");
        assert_eq!(app.id.as_str(), "/web");
        assert_eq!(app.raw["labels"]["a"], "b");
    }
}
