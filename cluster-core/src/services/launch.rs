//! What a launch carries: the task built from an app and the offer's fit (command, resources,
//! Marathon's environment variables), and the resources it takes out of the offer.

use super::placement::{self, OfferView};
use crate::proto::{CommandInfo, Environment, HealthCheckInfo, Id, TaskInfo, Variable};
use dccore_api::marathon::App;
use dccore_api::marathon::Protocol;
use std::collections::BTreeMap;

/// Takes an instance's resources out of what is left of the offer, from the roles the app accepts.
pub(super) fn take(
    left: &mut BTreeMap<String, crate::proto::Resources>,
    app: &App,
    used: &crate::proto::Resources,
) {
    let mut rest = used.clone();
    let roles: Vec<String> = if app.accepted_roles.is_empty() {
        vec!["*".into()]
    } else {
        app.accepted_roles.clone()
    };
    for r in roles {
        if let Some(pool) = left.get_mut(&r) {
            let before = pool.clone();
            pool.subtract(&rest);
            // What this role could not give is taken from the next one.
            let mut got = before.clone();
            got.subtract(pool);
            rest.subtract(&got);
        }
    }
}

pub(super) fn task_info(
    app: &App,
    version: &str,
    task_id: &str,
    offer: &OfferView,
    fit: &placement::Fit,
) -> TaskInfo {
    let mut env: BTreeMap<String, String> = app.env.clone();
    for (n, p) in fit.ports.iter().enumerate() {
        env.insert(format!("PORT{n}"), p.to_string());
        if let Some(name) = app.ports.get(n).and_then(|d| d.name.as_ref()) {
            env.insert(
                format!("PORT_{}", name.to_ascii_uppercase().replace('-', "_")),
                p.to_string(),
            );
        }
    }
    if let Some(p) = fit.ports.first() {
        env.insert("PORT".into(), p.to_string());
    }
    env.insert(
        "PORTS".into(),
        fit.ports
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    env.insert("HOST".into(), offer.hostname.clone());
    env.insert("MARATHON_APP_ID".into(), app.id.to_string());
    env.insert("MARATHON_APP_VERSION".into(), version.to_string());
    env.insert("MESOS_TASK_ID".into(), task_id.to_string());
    let (value, shell, arguments) = match &app.cmd {
        Some(c) => (c.clone(), true, Vec::new()),
        None => (
            app.args.first().cloned().unwrap_or_default(),
            false,
            app.args.clone(),
        ),
    };
    TaskInfo {
        name: app.id.task_name(),
        task_id: Id::new(task_id),
        agent_id: Id::new(&offer.agent_id),
        resources: fit.resources.to_mesos(None, None),
        command: Some(CommandInfo {
            value: Some(value),
            shell: Some(shell),
            arguments,
            environment: Some(Environment {
                variables: env
                    .into_iter()
                    .map(|(name, value)| Variable { name, value })
                    .collect(),
            }),
            user: app.user.clone(),
        }),
        kill_policy: None,
        health_check: command_check(app).map(Box::new),
    }
}

/// The app's COMMAND health check as a Mesos one, run by the agent (Marathon does the same).
/// Marathon runs checks right away (no Mesos delay) and its grace period covers the start.
fn command_check(app: &App) -> Option<HealthCheckInfo> {
    let c = app
        .health_checks
        .iter()
        .find(|c| c.protocol == Protocol::Command)?;
    Some(HealthCheckInfo {
        kind: Some("COMMAND".into()),
        command: Some(CommandInfo {
            value: c.command.clone(),
            ..Default::default()
        }),
        http: None,
        tcp: None,
        delay_seconds: Some(0.0),
        interval_seconds: Some(c.interval_secs),
        timeout_seconds: Some(c.timeout_secs),
        consecutive_failures: Some(c.max_consecutive_failures),
        grace_period_seconds: Some(c.grace_period_secs),
    })
}
