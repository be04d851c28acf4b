//! Printing plans the way Terraform users expect: a symbol and a reason per node, then per service
//! (`+ service /web deploy: 3 instances`), then the summary lines.

use std::fmt::Write;

use serde::Serialize;

use super::{Action, Plan, ServiceAction, ServiceChange};

/// Counts for the closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Nodes created (a replace counts here and in `destroy`).
    pub add: usize,
    /// Nodes changed in place.
    pub change: usize,
    /// Nodes removed.
    pub destroy: usize,
    /// Services deployed.
    pub deploy: usize,
    /// Services updated (or scaled).
    pub update: usize,
    /// Services removed.
    pub remove: usize,
}

impl Summary {
    /// `Plan: X to add, Y to change, Z to destroy.`
    pub fn line(&self) -> String {
        format!(
            "Plan: {} to add, {} to change, {} to destroy.",
            self.add, self.change, self.destroy
        )
    }

    /// `Services: X to deploy, Y to update, Z to remove.`, when any service changes.
    pub fn services_line(&self) -> Option<String> {
        (self.deploy + self.update + self.remove > 0).then(|| {
            format!(
                "Services: {} to deploy, {} to update, {} to remove.",
                self.deploy, self.update, self.remove
            )
        })
    }
}

/// The closing line when nothing changes.
pub const NO_CHANGES: &str = "No changes. Your cluster matches the definition.";

/// Human output. `color` only on a TTY.
pub fn render_human(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    if !plan.has_changes() {
        let _ = writeln!(out, "{NO_CHANGES}");
        return out;
    }
    let verb = if plan.destroy { "destroy" } else { "apply" };
    let _ = writeln!(
        out,
        "dcform will {verb} the following changes to cluster \"{}\" ({} provider):\n",
        plan.spec.name,
        plan.spec.provider.kind()
    );
    let width = plan
        .actions()
        .map(|c| c.node.len() + c.role.as_str().len() + 3)
        .max()
        .unwrap_or(0);
    for c in plan.actions() {
        let (start, end) = if color {
            (colour_of(&c.action), "\x1b[0m")
        } else {
            ("", "")
        };
        let who = format!("{} ({})", c.node, c.role);
        let _ = writeln!(
            out,
            "{start}{:>4}{end} {who:<width$}  {}: {}",
            c.action.symbol(),
            c.action.verb(),
            c.reason
        );
        // The masters' group changes, in words (the ids are the plan's: never reused).
        for g in c.group_steps() {
            let _ = writeln!(out, "{:>4} {:<width$}  {g}", "", "");
        }
    }
    for c in plan.service_actions() {
        let (start, end) = if color {
            (service_colour(c.action), "\x1b[0m")
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "{start}{:>4}{end} {}",
            c.action.symbol(),
            service_line(c)
        );
    }
    let summary = plan.summary();
    let _ = writeln!(out, "\n{}", summary.line());
    if let Some(line) = summary.services_line() {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `service /web deploy: 3 instances`, `service /web update: instances 3 -> 5, cmd changed`,
/// `service /old remove`.
fn service_line(c: &ServiceChange) -> String {
    let head = format!("service {} {}", c.id, c.action.verb());
    match c.action {
        ServiceAction::Deploy => {
            let n = c.instances.unwrap_or(0);
            let mut line = format!("{head}: {n} instance{}", if n == 1 { "" } else { "s" });
            if !c.details.is_empty() {
                line.push_str(&format!(" ({})", c.details.join("; ")));
            }
            line
        }
        _ if c.details.is_empty() => head,
        _ => format!("{head}: {}", c.details.join(", ")),
    }
}

fn service_colour(action: ServiceAction) -> &'static str {
    match action {
        ServiceAction::Deploy => "\x1b[32m",
        ServiceAction::Update => "\x1b[33m",
        ServiceAction::Remove => "\x1b[31m",
        ServiceAction::NoOp => "",
    }
}

fn colour_of(action: &Action) -> &'static str {
    match action {
        Action::Create => "\x1b[32m",
        Action::Install | Action::Start | Action::Upgrade { .. } | Action::Reconfigure => {
            "\x1b[33m"
        }
        Action::Replace | Action::Remove | Action::Destroy => "\x1b[31m",
        Action::NoOp => "",
    }
}

/// `--json`: one JSON object per node change (`"type": "change"`), one per service change
/// (`"type": "service"`), then a summary object. Machine-readable, stable keys.
pub fn render_json_lines(plan: &Plan) -> String {
    let mut out = String::new();
    for c in plan.actions() {
        let line = serde_json::json!({
            "type": "change",
            "node": c.node,
            "pool": c.pool,
            "role": c.role,
            "host": c.host,
            "action": action_name(&c.action),
            "symbol": c.action.symbol(),
            "detail": c.action,
            "reason": c.reason,
            "steps": c.steps,
            "wave": c.wave,
            "replica_id": c.replica_id,
            "group": c.group_steps(),
        });
        let _ = writeln!(out, "{line}");
    }
    for c in plan.service_actions() {
        let line = serde_json::json!({
            "type": "service",
            "id": c.id.as_str(),
            "name": c.name,
            "action": c.action,
            "symbol": c.action.symbol(),
            "details": c.details,
            "scale_only": c.scale_only,
            "instances": c.instances,
            "definition": c.definition,
        });
        let _ = writeln!(out, "{line}");
    }
    let s = plan.summary();
    let line = serde_json::json!({
        "type": "summary",
        "changes": plan.has_changes(),
        "add": s.add,
        "change": s.change,
        "destroy": s.destroy,
        "services": {"deploy": s.deploy, "update": s.update, "remove": s.remove},
    });
    let _ = writeln!(out, "{line}");
    out
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Install => "install",
        Action::Start => "start",
        Action::Upgrade { .. } => "upgrade",
        Action::Reconfigure => "reconfigure",
        Action::Replace => "replace",
        Action::Remove => "remove",
        Action::Destroy => "destroy",
        Action::NoOp => "no-op",
    }
}
