//! Access rules in Mesos' ACL JSON (`--acls FILE`, master config key `acls`), and their
//! evaluation. Pure: parsing takes text, evaluation takes a request; no I/O, no clock.
//!
//! ```text
//! {"permissive": false,
//!  "register_frameworks": [{"principals": {"values": ["alice"]}, "roles": {"values": ["analytics"]}}],
//!  "run_tasks":           [{"principals": {"type": "ANY"},       "users": {"values": ["nobody"]}}],
//!  "view_tasks":          [{"principals": {"values": ["ops"]},   "users": {"type": "ANY"}}],
//!  "drain_agents":        [{"principals": {"values": ["ops"]},   "agents": {"type": "ANY"}}]}
//! ```
//!
//! Evaluation is Mesos' local authorizer: the rules of one action are tried in order and the
//! first rule whose subject (`principals`) and object (`roles`, `users`, ...) both *match* the
//! request decides; it allows only if neither entity is `NONE` and the values contain the
//! request's. A request with no principal (a framework subscribed with the operator token) is the
//! subject `ANY`, which only rules for `ANY` or `NONE` principals match.
//!
//! When no rule matches, Mesos answers `permissive` (default true). dccore differs on purpose:
//! without an explicit `permissive` it answers what its built-in rules ([`Acls::default_rules`],
//! also what a master without `--acls` uses) say, so a file that forgets an action neither opens
//! it to everyone nor locks everyone out. `"permissive": true` gives Mesos' behaviour (allow), and
//! `false` denies everything no rule allows.
//!
//! Built-in rules (no file, or nothing matched and no `permissive`): any principal may register
//! with any role; tasks may run only as the default task user; nobody may tear down, see, drain,
//! deactivate, reactivate or mark gone what is not theirs, nor read `/metrics`. A principal always
//! sees and may tear down its own frameworks and tasks; the operator token may do everything;
//! those two are not ACL decisions (see `master`).

use serde_json::Value;
use std::collections::HashMap;

/// The Mesos default task user, and dccore's default for tasks that ask for none.
pub const DEFAULT_TASK_USER: &str = "nobody";

/// An action a rule can grant, with its Mesos ACL JSON name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `register_frameworks`: principal -> `roles` it may subscribe with.
    RegisterFramework,
    /// `run_tasks`: principal -> `users` its tasks may run as.
    RunTask,
    /// `teardown_frameworks`: principal -> `framework_principals` whose frameworks it may tear down.
    TeardownFramework,
    /// `view_frameworks`: principal -> `users` whose frameworks it may see.
    ViewFramework,
    /// `view_tasks`: principal -> `users` whose tasks it may see.
    ViewTask,
    /// `drain_agents`: principal -> `agents` (ANY or NONE).
    DrainAgent,
    /// `deactivate_agents`: principal -> `agents` (ANY or NONE).
    DeactivateAgent,
    /// `reactivate_agents`: principal -> `agents` (ANY or NONE).
    ReactivateAgent,
    /// `mark_agents_gone`: principal -> `agents` (ANY or NONE); a drain with `mark_gone` needs it
    /// besides `drain_agents`.
    MarkAgentGone,
    /// `get_endpoints`: principal -> `paths` it may GET (dccore: `/metrics`).
    GetEndpoint,
}

impl Action {
    /// Every action dccore enforces, in the order the documentation lists them.
    pub const ALL: [Action; 10] = [
        Action::RegisterFramework,
        Action::RunTask,
        Action::TeardownFramework,
        Action::ViewFramework,
        Action::ViewTask,
        Action::DrainAgent,
        Action::DeactivateAgent,
        Action::ReactivateAgent,
        Action::MarkAgentGone,
        Action::GetEndpoint,
    ];

    /// The key of this action's rule list in the ACL JSON.
    pub fn json_name(self) -> &'static str {
        match self {
            Action::RegisterFramework => "register_frameworks",
            Action::RunTask => "run_tasks",
            Action::TeardownFramework => "teardown_frameworks",
            Action::ViewFramework => "view_frameworks",
            Action::ViewTask => "view_tasks",
            Action::DrainAgent => "drain_agents",
            Action::DeactivateAgent => "deactivate_agents",
            Action::ReactivateAgent => "reactivate_agents",
            Action::MarkAgentGone => "mark_agents_gone",
            Action::GetEndpoint => "get_endpoints",
        }
    }

    /// The key of the rule's object entity.
    pub fn object_name(self) -> &'static str {
        match self {
            Action::RegisterFramework => "roles",
            Action::RunTask | Action::ViewFramework | Action::ViewTask => "users",
            Action::TeardownFramework => "framework_principals",
            Action::DrainAgent
            | Action::DeactivateAgent
            | Action::ReactivateAgent
            | Action::MarkAgentGone => "agents",
            Action::GetEndpoint => "paths",
        }
    }

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

/// A Mesos `ACL.Entity`: some values, anyone, or no one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entity {
    /// `{"values": [...]}` (type SOME).
    Some(Vec<String>),
    /// `{"type": "ANY"}`.
    Any,
    /// `{"type": "NONE"}`.
    None,
}

impl Entity {
    /// Does a rule with this entity *match* the request value (`None`: the request is ANY)?
    /// Mesos: NONE and ANY match every specific value; a list matches the values it contains; a
    /// request for ANY is matched only by ANY or NONE.
    fn matches(&self, request: Option<&str>) -> bool {
        match (self, request) {
            (Entity::Any | Entity::None, _) => true,
            (Entity::Some(vs), Some(v)) => vs.iter().any(|x| x == v),
            (Entity::Some(_), None) => false,
        }
    }

    /// Does a matching rule with this entity *allow* the request? NONE never does.
    fn allows(&self, request: Option<&str>) -> bool {
        match (self, request) {
            (Entity::None, _) => false,
            (Entity::Any, _) => true,
            (Entity::Some(vs), Some(v)) => vs.iter().any(|x| x == v),
            (Entity::Some(_), None) => false,
        }
    }
}

/// One rule: these principals may (or, with NONE, may not) do the action on these objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `principals`.
    pub principals: Entity,
    /// The object entity (`roles`, `users`, ...).
    pub objects: Entity,
}

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

/// The rules the master enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acls {
    /// `permissive` as written; `None`: fall back to the built-in rules.
    permissive: Option<bool>,
    rules: HashMap<Action, Vec<Rule>>,
    /// The user a task runs as when it asks for none (the built-in `run_tasks` allows only it).
    default_task_user: String,
}

impl Default for Acls {
    fn default() -> Self {
        Acls::default_rules(DEFAULT_TASK_USER)
    }
}

impl Acls {
    /// The built-in rules (no `--acls` file), with this default task user.
    pub fn default_rules(default_task_user: &str) -> Self {
        Acls {
            permissive: None,
            rules: HashMap::new(),
            default_task_user: default_task_user.to_string(),
        }
    }

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

    /// The same rules with another default task user.
    pub fn with_default_task_user(mut self, user: &str) -> Self {
        self.default_task_user = user.to_string();
        self
    }

    /// The user tasks run as when they ask for none.
    pub fn default_task_user(&self) -> &str {
        &self.default_task_user
    }

    /// May `principal` (`None`: a framework without principal, i.e. ANY) do `action` on `object`
    /// (`None`: no particular object, i.e. ANY)?
    pub fn allows(&self, action: Action, principal: Option<&str>, object: Option<&str>) -> bool {
        for r in self.rules.get(&action).into_iter().flatten() {
            if r.principals.matches(principal) && r.objects.matches(object) {
                return r.principals.allows(principal) && r.objects.allows(object);
            }
        }
        match self.permissive {
            Some(p) => p,
            None => self.builtin(action, object),
        }
    }

    fn builtin(&self, action: Action, object: Option<&str>) -> bool {
        match action {
            Action::RegisterFramework => true,
            Action::RunTask => object == Some(self.default_task_user.as_str()),
            Action::TeardownFramework
            | Action::ViewFramework
            | Action::ViewTask
            | Action::DrainAgent
            | Action::DeactivateAgent
            | Action::ReactivateAgent
            | Action::MarkAgentGone
            | Action::GetEndpoint => false,
        }
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
    use Action::*;

    fn acls(text: &str) -> Acls {
        Acls::parse(text, "nobody").expect("valid ACLs")
    }

    #[test]
    fn builtin_rules_allow_registration_and_only_the_default_task_user() {
        let a = Acls::default();
        let table: &[(Action, Option<&str>, Option<&str>, bool)] = &[
            (RegisterFramework, Some("alice"), Some("*"), true),
            (RegisterFramework, None, Some("slave_public"), true),
            (RunTask, Some("alice"), Some("nobody"), true),
            (RunTask, Some("alice"), Some("root"), false),
            (RunTask, None, Some("root"), false),
            (TeardownFramework, Some("bob"), Some("alice"), false),
            (ViewTask, Some("bob"), Some("nobody"), false),
            (ViewFramework, Some("bob"), Some("nobody"), false),
            (DrainAgent, Some("bob"), None, false),
            (DeactivateAgent, Some("bob"), None, false),
            (ReactivateAgent, Some("bob"), None, false),
            (MarkAgentGone, Some("bob"), None, false),
            (GetEndpoint, Some("bob"), Some("/metrics"), false),
        ];
        for (action, p, o, want) in table {
            assert_eq!(a.allows(*action, *p, *o), *want, "{action:?} {p:?} {o:?}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides_as_in_mesos() {
        let a = acls(
            r#"{"run_tasks": [
                {"principals": {"values": ["alice"]}, "users": {"values": ["alice", "nobody"]}},
                {"principals": {"values": ["bob"]}, "users": {"type": "NONE"}},
                {"principals": {"type": "ANY"}, "users": {"values": ["www"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "ANY"}}
            ]}"#,
        );
        let table: &[(Option<&str>, &str, bool)] = &[
            // Rule 1 matches and allows.
            (Some("alice"), "alice", true),
            // Rule 1 does not match root (not in its users); rule 4 allows anything.
            (Some("alice"), "root", true),
            // Rule 2's NONE matches every user of bob and denies.
            (Some("bob"), "www", false),
            (Some("bob"), "nobody", false),
            // Rule 3 for anyone else.
            (Some("carol"), "www", true),
            // No principal (ANY) is matched only by ANY/NONE principal rules: rule 3, then 4.
            (None, "www", true),
            (None, "root", true),
        ];
        for (p, user, want) in table {
            assert_eq!(a.allows(RunTask, *p, Some(user)), *want, "{p:?} as {user}");
        }
    }

    #[test]
    fn without_permissive_unmatched_requests_fall_back_to_the_builtin_rules() {
        let a = acls(
            r#"{"run_tasks": [{"principals": {"values": ["ops"]}, "users": {"values": ["root"]}}]}"#,
        );
        assert!(a.allows(RunTask, Some("ops"), Some("root")));
        assert!(
            a.allows(RunTask, Some("alice"), Some("nobody")),
            "built-in: default user"
        );
        assert!(!a.allows(RunTask, Some("alice"), Some("root")));
        assert!(
            a.allows(RegisterFramework, Some("alice"), Some("*")),
            "action not in the file"
        );
        assert!(!a.allows(DrainAgent, Some("ops"), None));
    }

    #[test]
    fn explicit_permissive_decides_unmatched_requests() {
        let open = acls(r#"{"permissive": true}"#);
        assert!(open.allows(RunTask, Some("alice"), Some("root")));
        assert!(open.allows(DrainAgent, Some("alice"), None));
        let closed = acls(
            r#"{"permissive": false, "register_frameworks": [{"principals": {"values": ["alice"]}, "roles": {"type": "ANY"}}]}"#,
        );
        assert!(closed.allows(RegisterFramework, Some("alice"), Some("dev")));
        assert!(!closed.allows(RegisterFramework, Some("bob"), Some("dev")));
        assert!(!closed.allows(RunTask, Some("alice"), Some("nobody")));
    }

    #[test]
    fn operator_rights_can_be_granted_to_a_principal() {
        let a = acls(
            r#"{"drain_agents": [{"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}}],
                "view_tasks": [{"principals": {"values": ["ops"]}, "users": {"type": "ANY"}}],
                "get_endpoints": [{"principals": {"values": ["ops"]}, "paths": {"values": ["/metrics"]}}]}"#,
        );
        let table: &[(Action, &str, Option<&str>, bool)] = &[
            (DrainAgent, "ops", None, true),
            (DrainAgent, "bob", None, false),
            (MarkAgentGone, "ops", None, false),
            (ViewTask, "ops", Some("nobody"), true),
            (ViewTask, "bob", Some("nobody"), false),
            (GetEndpoint, "ops", Some("/metrics"), true),
            (GetEndpoint, "bob", Some("/metrics"), false),
        ];
        for (action, p, o, want) in table {
            assert_eq!(
                a.allows(*action, Some(p), *o),
                *want,
                "{action:?} {p} {o:?}"
            );
        }
    }

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

    #[test]
    fn the_default_task_user_is_configurable() {
        let a = Acls::default_rules("tasks");
        assert!(a.allows(RunTask, Some("alice"), Some("tasks")));
        assert!(!a.allows(RunTask, Some("alice"), Some("nobody")));
        assert_eq!(a.default_task_user(), "tasks");
    }
}
