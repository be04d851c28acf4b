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
//!
//! ```text
//! ACL JSON ─ parse (parse.rs: shapes, field paths, what is valid) ─▶ Acls ─ allows(action, principal, object) ─▶ bool
//! ```

mod parse;

pub use parse::AclError;

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
}

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
    fn the_default_task_user_is_configurable() {
        let a = Acls::default_rules("tasks");
        assert!(a.allows(RunTask, Some("alice"), Some("tasks")));
        assert!(!a.allows(RunTask, Some("alice"), Some("nobody")));
        assert_eq!(a.default_task_user(), "tasks");
    }
}
