//! Marathon app definitions: parsed from the JSON a client sends, validated into [`App`] with
//! Marathon-style errors that name the field, and written back with every field the client sent
//! (unknown ones too) so that a definition round-trips through `/v2/apps` unchanged.
//!
//! Defined here, not in the master, so that `dcform validate` checks a declared service with the
//! same rules the master's `/v2/apps` applies (one parser; a definition dcform accepts is one
//! the cluster accepts).
//!
//! * this module: the validated types;
//! * `wire`: reading them from JSON (with every field error collected) and writing them back;
//! * [`answers`]: what `/v2` answers (apps with their counters, tasks, deployments, the queue,
//!   errors), built by dccore's handlers and read by dcform's client;
//! * [`events`]: what `/v2/events` streams (Marathon's event bus, as server-sent events).

pub mod answers;
pub mod events;
#[cfg(test)]
mod tests;
mod wire;

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// An app id: an absolute path of lowercase labels, e.g. `/prod/web`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppId(String);

impl AppId {
    /// Parses `raw` (a leading `/` is optional, as in Marathon); each label is lowercase
    /// letters, digits, `-` and `.`, starting and ending with a letter or digit.
    pub fn parse(raw: &str) -> Result<AppId, String> {
        let trimmed = raw.trim_matches('/');
        if trimmed.is_empty() {
            return Err("must name an app, e.g. /prod/web".into());
        }
        for label in trimmed.split('/') {
            let ok = !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(format!(
                    "path label {label:?} is not valid: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
                ));
            }
            if label == "." || label == ".." {
                return Err("path labels may not be '.' or '..'".into());
            }
        }
        Ok(AppId(format!("/{trimmed}")))
    }

    /// The path, e.g. `/prod/web`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The task name Mesos-DNS builds names from: the path reversed with dots (`web.prod`).
    pub fn task_name(&self) -> String {
        let mut labels: Vec<&str> = self.0.trim_start_matches('/').split('/').collect();
        labels.reverse();
        labels.join(".")
    }

    /// The prefix of the app's task ids, Marathon's convention (`prod_web`).
    pub fn task_prefix(&self) -> String {
        self.0.trim_start_matches('/').replace('/', "_")
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One field that is not valid, Marathon's `details` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// JSON pointer of the field, e.g. `/portDefinitions/0/port`.
    pub path: String,
    /// What is wrong and what would be valid.
    pub error: String,
}

/// Why a definition was refused: every field that is not valid (Marathon answers 422 with them).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("Object is not valid: {}", .0.iter().map(|e| format!("{}: {}", e.path, e.error)).collect::<Vec<_>>().join("; "))]
pub struct AppError(pub Vec<FieldError>);

impl AppError {
    /// Marathon's 422 body.
    pub fn to_json(&self) -> Value {
        let body = answers::ErrorBody {
            details: self
                .0
                .iter()
                .map(|e| answers::ErrorDetail {
                    path: e.path.clone(),
                    errors: vec![e.error.clone()],
                })
                .collect(),
            ..answers::ErrorBody::message("Object is not valid")
        };
        json!(body)
    }
}

/// A constraint operator with its argument.
#[derive(Clone, Debug)]
pub enum Operator {
    /// Each value of the field at most once.
    Unique,
    /// Only where the field has this value (or, without a value, all on one value).
    Cluster(Option<String>),
    /// Spread evenly over the field's values (at least this many, if given).
    GroupBy(Option<u32>),
    /// The field's value matches the regular expression (whole value).
    Like(regex_lite::Regex),
    /// The field's value does not match the regular expression.
    Unlike(regex_lite::Regex),
    /// At most this many instances per value of the field.
    MaxPer(u32),
}

/// `[field, operator, value?]`: `field` is `hostname` or an agent attribute.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// `hostname` or an attribute name.
    pub field: String,
    /// The rule.
    pub op: Operator,
}

/// `portDefinitions[i]`: `port` 0 is assigned from the offered ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct PortDef {
    /// Requested host port (0 = any).
    pub port: u64,
    /// Name (for `PORT_<NAME>`).
    pub name: Option<String>,
}

/// `healthChecks[i]` protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// GET `path` answers 2xx or 3xx.
    Http,
    /// A TCP connection opens.
    Tcp,
    /// A command exits 0: run by the agent next to the task (Mesos `COMMAND` health check).
    Command,
}

/// One health check.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    /// How.
    pub protocol: Protocol,
    /// HTTP path.
    pub path: String,
    /// Which of the instance's host ports.
    pub port_index: usize,
    /// Failures before this are not counted.
    pub grace_period_secs: f64,
    /// Between checks.
    pub interval_secs: f64,
    /// A check slower than this fails.
    pub timeout_secs: f64,
    /// Consecutive failures after which the instance is killed (0 = never).
    pub max_consecutive_failures: u32,
    /// The shell command of a `COMMAND` check (`command.value`).
    pub command: Option<String>,
}

/// An app's launch delay after failed instances, as Marathon configures it: `backoffSeconds` ×
/// `backoffFactor`^failures, capped at `maxLaunchDelaySeconds`. A setting of the app, not a retry
/// loop: the scheduler keeps the current delay per app and asks [`LaunchDelay::after`] for the next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LaunchDelay {
    /// First delay.
    pub seconds: f64,
    /// Growth per failure.
    pub factor: f64,
    /// Cap.
    pub max_launch_delay_secs: f64,
}

impl LaunchDelay {
    /// The delay after one more failure, given the current one (zero: no failure yet).
    pub fn after(&self, current: std::time::Duration) -> std::time::Duration {
        let next = if current.is_zero() {
            self.seconds
        } else {
            (current.as_secs_f64() * self.factor).min(self.max_launch_delay_secs)
        };
        std::time::Duration::from_secs_f64(next.max(0.0))
    }
}

/// A validated app definition, and the JSON it came from.
#[derive(Clone, Debug)]
pub struct App {
    /// The path.
    pub id: AppId,
    /// Shell command (or none, with `args`).
    pub cmd: Option<String>,
    /// Program and arguments, run without a shell.
    pub args: Vec<String>,
    /// Wanted instances.
    pub instances: u32,
    /// Per instance.
    pub cpus: f64,
    /// MiB per instance.
    pub mem: f64,
    /// MiB per instance.
    pub disk: f64,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Host ports.
    pub ports: Vec<PortDef>,
    /// Placement rules.
    pub constraints: Vec<Constraint>,
    /// Roles whose resources may be used (`*` = unreserved); empty = `*`.
    pub accepted_roles: Vec<String>,
    /// Health checks.
    pub health_checks: Vec<HealthCheck>,
    /// Launch back-off.
    pub backoff: LaunchDelay,
    /// Unix user (a request: the master's rules decide).
    pub user: Option<String>,
    /// `upgradeStrategy.minimumHealthCapacity`.
    pub minimum_health_capacity: f64,
    /// `upgradeStrategy.maximumOverCapacity`.
    pub maximum_over_capacity: f64,
    /// The definition as sent (id normalized), unknown fields included.
    pub raw: Map<String, Value>,
}
