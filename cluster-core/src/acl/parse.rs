//! Reading Mesos ACL JSON into [`Acls`]: every shape check lives here, and each refusal names the
//! field (`run_tasks[0].users`) and what would have been valid.

use serde_json::Value;

use super::{Acls, Action, Entity, Rule};

impl Action {
    /// Objects Mesos allows only as ANY or NONE (no list of values).
    fn object_any_or_none_only(self) -> bool {
        matches!(
            self,
            Action::DrainAgent
                | Action::DeactivateAgent
                | Action::ReactivateAgent
                | Action::MarkAgentGone
        )
    }

    fn from_json_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.json_name() == name)
    }
}

/// Mesos ACL actions that dccore does not enforce: a file naming one is refused rather than
/// silently ignored (an ignored rule would be a promise the cluster does not keep).
const NOT_ENFORCED: &[&str] = &[
    "register_agents",
    "reserve_resources",
    "unreserve_resources",
    "create_volumes",
    "destroy_volumes",
    "resize_volumes",
    "update_weights",
    "get_quotas",
    "update_quotas",
    "view_executors",
    "access_sandboxes",
    "access_mesos_logs",
    "view_roles",
    "view_flags",
    "set_log_level",
    "view_containers",
    "update_maintenance_schedules",
    "get_maintenance_schedules",
    "start_maintenances",
    "stop_maintenances",
    "get_maintenance_statuses",
];

/// Paths `get_endpoints` can name.
const AUTHORIZABLE_PATHS: &[&str] = &["/metrics"];

/// Why an ACL file was refused; each names the field and what would have been valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Syntax(String),
    /// A field has the wrong shape or value.
    #[error("{field}: {problem}; valid: {valid}")]
    Field {
        /// JSON path of the field, e.g. `run_tasks[0].users`.
        field: String,
        /// What is wrong.
        problem: String,
        /// What would have been accepted.
        valid: String,
    },
}

fn field_err(
    field: impl Into<String>,
    problem: impl Into<String>,
    valid: impl Into<String>,
) -> AclError {
    AclError::Field {
        field: field.into(),
        problem: problem.into(),
        valid: valid.into(),
    }
}

const ENTITY_SHAPES: &str = r#"{"values": ["a", "b"]}, {"type": "ANY"} or {"type": "NONE"}"#;

impl Acls {
    /// Parses Mesos ACL JSON. Unknown keys and actions dccore does not enforce are errors.
    pub fn parse(text: &str, default_task_user: &str) -> Result<Self, AclError> {
        let v: Value = serde_json::from_str(text).map_err(|e| AclError::Syntax(e.to_string()))?;
        let known = || {
            let mut k = vec!["permissive"];
            k.extend(Action::ALL.iter().map(|a| a.json_name()));
            k.join(", ")
        };
        let Value::Object(top) = v else {
            return Err(field_err(
                "(top level)",
                "must be a JSON object",
                format!("an object with keys {}", known()),
            ));
        };
        let mut acls = Acls::default_rules(default_task_user);
        for (key, val) in top {
            if key == "permissive" {
                acls.permissive = Some(val.as_bool().ok_or_else(|| {
                    field_err("permissive", format!("is {val}"), "true or false")
                })?);
                continue;
            }
            let Some(action) = Action::from_json_name(&key) else {
                let problem = if NOT_ENFORCED.contains(&key.as_str()) {
                    "is a Mesos action dccore does not enforce".to_string()
                } else {
                    "is not an ACL action".to_string()
                };
                return Err(field_err(key, problem, known()));
            };
            let Value::Array(list) = val else {
                return Err(field_err(
                    key,
                    "must be a list of rules",
                    format!(
                        r#"[{{"principals": ..., "{}": ...}}, ...]"#,
                        action.object_name()
                    ),
                ));
            };
            let mut rules = Vec::with_capacity(list.len());
            for (i, r) in list.into_iter().enumerate() {
                rules.push(parse_rule(action, &format!("{key}[{i}]"), r)?);
            }
            acls.rules.insert(action, rules);
        }
        Ok(acls)
    }
}

fn parse_rule(action: Action, at: &str, v: Value) -> Result<Rule, AclError> {
    let obj_name = action.object_name();
    let shape = format!(r#"{{"principals": {ENTITY_SHAPES}, "{obj_name}": {ENTITY_SHAPES}}}"#);
    let Value::Object(mut m) = v else {
        return Err(field_err(at, "must be an object", shape));
    };
    let principals = match m.remove("principals") {
        Some(p) => parse_entity(&format!("{at}.principals"), p)?,
        None => return Err(field_err(format!("{at}.principals"), "is missing", shape)),
    };
    let objects = match m.remove(obj_name) {
        Some(o) => parse_entity(&format!("{at}.{obj_name}"), o)?,
        None => return Err(field_err(format!("{at}.{obj_name}"), "is missing", shape)),
    };
    if let Some(extra) = m.keys().next() {
        return Err(field_err(
            format!("{at}.{extra}"),
            format!("is not a field of {} rules", action.json_name()),
            format!("principals, {obj_name}"),
        ));
    }
    if action.object_any_or_none_only() && matches!(objects, Entity::Some(_)) {
        return Err(field_err(
            format!("{at}.{obj_name}"),
            "cannot list agents (as in Mesos)",
            r#"{"type": "ANY"} or {"type": "NONE"}"#,
        ));
    }
    if action == Action::GetEndpoint
        && let Entity::Some(paths) = &objects
        && let Some(p) = paths
            .iter()
            .find(|p| !AUTHORIZABLE_PATHS.contains(&p.as_str()))
    {
        return Err(field_err(
            format!("{at}.paths"),
            format!("{p:?} is not an authorizable path"),
            AUTHORIZABLE_PATHS.join(", "),
        ));
    }
    Ok(Rule {
        principals,
        objects,
    })
}

fn parse_entity(at: &str, v: Value) -> Result<Entity, AclError> {
    let Value::Object(m) = v else {
        return Err(field_err(at, format!("is {v}"), ENTITY_SHAPES));
    };
    if let Some(extra) = m.keys().find(|k| *k != "type" && *k != "values") {
        return Err(field_err(
            format!("{at}.{extra}"),
            "is not a field of an entity",
            ENTITY_SHAPES,
        ));
    }
    let kind = match m.get("type") {
        None => "SOME",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(field_err(
                format!("{at}.type"),
                format!("is {other}"),
                r#""ANY", "NONE" or "SOME""#,
            ));
        }
    };
    let values = match m.get("values") {
        None => Vec::new(),
        Some(Value::Array(vs)) => {
            let mut out = Vec::with_capacity(vs.len());
            for (i, x) in vs.iter().enumerate() {
                match x.as_str() {
                    Some(s) if !s.is_empty() => out.push(s.to_string()),
                    _ => {
                        return Err(field_err(
                            format!("{at}.values[{i}]"),
                            format!("is {x}"),
                            "a non-empty string",
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(field_err(
                format!("{at}.values"),
                format!("is {other}"),
                r#"a list of strings, e.g. ["a", "b"]"#,
            ));
        }
    };
    match kind {
        "ANY" | "NONE" if !values.is_empty() => Err(field_err(
            format!("{at}.values"),
            format!("is given with type {kind} (values apply only to a list)"),
            ENTITY_SHAPES,
        )),
        "ANY" => Ok(Entity::Any),
        "NONE" => Ok(Entity::None),
        "SOME" if values.is_empty() => Err(field_err(
            at,
            "has no values (to match no one write {\"type\": \"NONE\"})",
            ENTITY_SHAPES,
        )),
        "SOME" => Ok(Entity::Some(values)),
        other => Err(field_err(
            format!("{at}.type"),
            format!("is {other:?}"),
            r#""ANY", "NONE" or "SOME""#,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_the_field_and_what_is_valid() {
        let table: &[(&str, &str, &str)] = &[
            (r#"[]"#, "(top level)", "an object"),
            (r#"{"permissive": "yes"}"#, "permissive", "true or false"),
            (r#"{"run_task": []}"#, "run_task", "run_tasks"),
            (
                r#"{"reserve_resources": []}"#,
                "reserve_resources",
                "does not enforce",
            ),
            (r#"{"run_tasks": {}}"#, "run_tasks", "list of rules"),
            (
                r#"{"run_tasks": [{"users": {"type": "ANY"}}]}"#,
                "run_tasks[0].principals",
                "is missing",
            ),
            (
                r#"{"run_tasks": [{"principals": {"type": "ANY"}}]}"#,
                "run_tasks[0].users",
                "is missing",
            ),
            (
                r#"{"run_tasks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}, "users": {"type": "ANY"}}]}"#,
                "run_tasks[0].roles",
                "principals, users",
            ),
            (
                r#"{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}"#,
                "run_tasks[0].principals.type",
                "\"ANY\"",
            ),
            (
                r#"{"run_tasks": [{"principals": {"values": []}, "users": {"type": "ANY"}}]}"#,
                "run_tasks[0].principals",
                "NONE",
            ),
            (
                r#"{"run_tasks": [{"principals": {"values": [3]}, "users": {"type": "ANY"}}]}"#,
                "run_tasks[0].principals.values[0]",
                "non-empty string",
            ),
            (
                r#"{"run_tasks": [{"principals": "alice", "users": {"type": "ANY"}}]}"#,
                "run_tasks[0].principals",
                "{\"values\"",
            ),
            (
                r#"{"drain_agents": [{"principals": {"type": "ANY"}, "agents": {"values": ["a1"]}}]}"#,
                "drain_agents[0].agents",
                "{\"type\": \"ANY\"}",
            ),
            (
                r#"{"get_endpoints": [{"principals": {"type": "ANY"}, "paths": {"values": ["/flags"]}}]}"#,
                "get_endpoints[0].paths",
                "/metrics",
            ),
        ];
        for (text, field, valid) in table {
            let e = Acls::parse(text, "nobody").expect_err(text);
            let msg = e.to_string();
            assert!(
                msg.starts_with(field),
                "{text}: {msg} should start with {field}"
            );
            assert!(msg.contains(valid), "{text}: {msg} should mention {valid}");
        }
        assert!(matches!(
            Acls::parse("{", "nobody"),
            Err(AclError::Syntax(_))
        ));
    }
}
