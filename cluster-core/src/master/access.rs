//! Who may do what, on the master's side: the checks that need master state (whose framework
//! a call names, which user a task runs as, what an operator-API reader may see). The rules
//! themselves are [`crate::acl`]; the operator token is never restricted, except that the user
//! a framework merely *hints* with `FrameworkInfo.user` is honoured only where the rules allow it.
//!
//! Task users, in order:
//! 1. `CommandInfo.user` is a request: run as it if `run_tasks` allows it for the framework's
//!    principal (a framework subscribed with the operator token may ask for any user), else the
//!    task ends `TASK_ERROR` saying why.
//! 2. Else `FrameworkInfo.user`, if `run_tasks` allows it. Framework libraries fill it in with the
//!    local login user (often `root`), so it is a hint, not a request: a user the rules do not
//!    allow falls back to (3) instead of failing every task of an unmodified framework.
//! 3. Else the default task user (`default_task_user`, `nobody`), if `run_tasks` allows it, else
//!    `TASK_ERROR`.

use super::command::{CallError, Viewer};
use super::state::State;
use super::tables::{FrameworkRec, TaskRec};
use crate::acl::{Acls, Action};
use crate::proto::TaskInfo;
use crate::proto::scheduler::{Call, FrameworkInfo};

impl State {
    /// A SUBSCRIBE: the roles must be allowed by `register_frameworks` (the operator token may
    /// use any), and a failover must come from the framework's own principal.
    pub(super) fn authorize_subscribe(
        &self,
        info: &FrameworkInfo,
        framework_id: Option<&str>,
        principal: Option<&str>,
    ) -> Result<(), CallError> {
        let id = framework_id
            .or(info.id.as_ref().map(|i| i.value.as_str()))
            .filter(|v| !v.is_empty());
        if let Some(f) = id.and_then(|id| self.tables.frameworks.get(id))
            && f.principal.as_deref() != principal
        {
            return Err(CallError::Forbidden(format!(
                "framework {} belongs to another principal",
                f.id
            )));
        }
        let Some(p) = principal else {
            return Ok(());
        };
        for role in info.effective_roles() {
            if !self
                .cfg
                .acls
                .allows(Action::RegisterFramework, Some(p), Some(&role))
            {
                return Err(CallError::Forbidden(format!(
                    "principal {p:?} may not subscribe with role {role:?}: no register_frameworks rule allows it"
                )));
            }
        }
        Ok(())
    }

    /// Any scheduler call but SUBSCRIBE: a principal may only act for its own frameworks.
    pub(super) fn authorize_call(
        &self,
        call: &Call,
        principal: Option<&str>,
    ) -> Result<(), CallError> {
        let Some(p) = principal else {
            return Ok(()); // the operator token
        };
        let fid = call.framework_id.as_ref().map(|i| i.value.as_str());
        match fid.and_then(|id| self.tables.frameworks.get(id)) {
            Some(f) if f.principal.as_deref() != Some(p) => Err(CallError::Forbidden(format!(
                "framework {} belongs to another principal: {p:?} may not {} it",
                f.id, call.kind
            ))),
            // Unknown frameworks and missing ids are answered by `call` itself.
            _ => Ok(()),
        }
    }

    /// Operator `TEARDOWN`: the framework's own principal, one `teardown_frameworks` allows, or
    /// the operator (`principal` None).
    pub(super) fn operator_teardown(
        &mut self,
        framework_id: &str,
        principal: Option<&str>,
        now: tokio::time::Instant,
    ) -> Result<(), CallError> {
        let Some(f) = self.tables.frameworks.get(framework_id) else {
            return Err(CallError::BadRequest(format!(
                "framework {framework_id} is not known"
            )));
        };
        if let Some(p) = principal
            && f.principal.as_deref() != Some(p)
            && !self
                .cfg
                .acls
                .allows(Action::TeardownFramework, Some(p), f.principal.as_deref())
        {
            return Err(CallError::Forbidden(format!(
                "principal {p:?} may not tear down framework {framework_id} of another principal: no teardown_frameworks rule allows it"
            )));
        }
        tracing::info!(framework = %framework_id, by = ?principal, "operator teardown");
        self.teardown(framework_id, now);
        Ok(())
    }

    /// The user `task` of framework `fid` runs as (see the module doc), or why it may not run.
    pub(super) fn task_user(&self, fid: &str, task: &TaskInfo) -> Result<String, String> {
        let Some(f) = self.tables.frameworks.get(fid) else {
            return Err(format!("framework {fid} is not subscribed"));
        };
        let principal = f.principal.as_deref();
        let operator = principal.is_none();
        let acls = &self.cfg.acls;
        let allowed = |u: &str| acls.allows(Action::RunTask, principal, Some(u));
        let who = principal.map_or_else(
            || "the operator's framework".to_string(),
            |p| format!("principal {p:?}"),
        );
        if let Some(u) = task
            .command
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .filter(|u| !u.is_empty())
        {
            return if operator || allowed(u) {
                Ok(u.to_string())
            } else {
                Err(format!(
                    "command.user {u:?} is not allowed for {who}: no run_tasks rule allows it (without rules only the default task user {:?} is)",
                    acls.default_task_user()
                ))
            };
        }
        if !f.info.user.is_empty() && allowed(&f.info.user) {
            return Ok(f.info.user.clone());
        }
        let d = acls.default_task_user();
        if operator || allowed(d) {
            Ok(d.to_string())
        } else {
            Err(format!(
                "no user to run as: run_tasks allows {who} neither the framework's user {:?} nor the default task user {d:?}",
                f.info.user
            ))
        }
    }
}

/// May `viewer` see framework `f`?
pub(super) fn sees_framework(acls: &Acls, viewer: &Viewer, f: &FrameworkRec) -> bool {
    match viewer {
        Viewer::Operator => true,
        Viewer::Principal(p) => {
            f.principal.as_deref() == Some(p)
                || acls.allows(Action::ViewFramework, Some(p), Some(&f.info.user))
        }
    }
}

/// May `viewer` see task `t` (its command, environment, statuses)? `framework_principal` is the
/// principal of the task's framework, if it is registered.
pub(super) fn sees_task(
    acls: &Acls,
    viewer: &Viewer,
    t: &TaskRec,
    framework_principal: Option<&str>,
) -> bool {
    match viewer {
        Viewer::Operator => true,
        Viewer::Principal(p) => {
            let own = framework_principal == Some(p);
            let user = t
                .info
                .command
                .as_ref()
                .and_then(|c| c.user.as_deref())
                .unwrap_or(acls.default_task_user());
            own || acls.allows(Action::ViewTask, Some(p), Some(user))
        }
    }
}
