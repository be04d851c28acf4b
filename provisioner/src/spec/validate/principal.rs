//! `principal "NAME" { roles = [...], users = [...] }` blocks and the core's access settings
//! (`core { tls = ..., task_user = ... }`).

use hcl::Value;

use super::super::funcs::{scalar_string, type_name};
use super::super::model::PrincipalSpec;
use super::super::raw::{RawAttr, RawBlock};
use super::Validator;

pub(super) const PRINCIPAL_ATTRS: &[&str] = &["roles", "users"];

/// Mesos' rule for role names (and what a user name may be here): no whitespace, no `/` at the
/// start, not `.` or `..`; `*` means any role.
fn valid_role(r: &str) -> bool {
    r == "*"
        || (!r.is_empty()
            && r != "."
            && r != ".."
            && !r.starts_with('-')
            && !r.starts_with('/')
            && r.len() <= 255
            && !r.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// A POSIX portable user name (what `useradd` takes).
fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// A principal name: it is an HTTP Basic user name (no `:`) and a file name.
fn valid_principal(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !p.starts_with('.')
}

impl Validator<'_> {
    /// A list of strings, each checked with `ok`; `what` names the list in messages.
    pub(super) fn string_list(
        &mut self,
        a: &RawAttr,
        what: &str,
        ok: fn(&str) -> bool,
        valid: &str,
    ) -> Option<Vec<String>> {
        let v = self.value(a)?;
        let Value::Array(items) = v else {
            self.err(
                &a.value_loc,
                format!("{what} must be a list of strings, got {}", type_name(&v)),
                format!("write: {} = [\"...\"]", a.key),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match scalar_string(&item) {
                Ok(s) if ok(&s) => out.push(s),
                Ok(s) => self.err(
                    &a.value_loc,
                    format!("invalid entry \"{s}\" in {what}"),
                    valid.to_string(),
                ),
                Err(_) => self.err(
                    &a.value_loc,
                    format!("{what} must hold strings, got {}", type_name(&item)),
                    valid.to_string(),
                ),
            }
        }
        Some(out)
    }

    /// A boolean attribute.
    pub(super) fn boolean(&mut self, a: &RawAttr, what: &str) -> Option<bool> {
        match self.value(a)? {
            Value::Bool(b) => Some(b),
            other => {
                self.err(
                    &a.value_loc,
                    format!("{what} must be true or false, got {}", type_name(&other)),
                    format!("write: {} = true", a.key),
                );
                None
            }
        }
    }

    /// A task user name.
    pub(super) fn task_user(&mut self, a: &RawAttr) -> Option<String> {
        let u = self.string(a, "task_user")?;
        if !valid_user(&u) {
            self.err(
                &a.value_loc,
                format!("invalid task_user \"{u}\""),
                "a user name of the nodes: letters, digits, `_`, `-`, `.`, at most 32 characters (e.g. \"nobody\")",
            );
            return None;
        }
        Some(u)
    }

    /// One `principal` block; `task_user` is the default for `users`.
    pub(super) fn principal(&mut self, b: &RawBlock, task_user: &str) -> Option<PrincipalSpec> {
        let label = self.single_label(
            b,
            "principal",
            "principal \"analytics\" { roles = [\"analytics\"] }",
        )?;
        if !valid_principal(&label.name) {
            self.err(
                &label.loc,
                format!("invalid principal name \"{}\"", label.name),
                "letters, digits, `_`, `-` and `.` (not first), at most 64 characters: it is the framework's HTTP Basic user and a file name",
            );
            return None;
        }
        let what = format!("principal \"{}\"", label.name);
        self.check_body(&b.body, &what, PRINCIPAL_ATTRS, &[]);
        let roles = match b.body.attr("roles") {
            Some(a) => self.string_list(
                a,
                &format!("roles of {what}"),
                valid_role,
                "Mesos role names (no white space, not starting with `/` or `-`, not `.`/`..`), or \"*\" for any role",
            )?,
            None => vec!["*".to_string()],
        };
        let users = match b.body.attr("users") {
            Some(a) => self.string_list(
                a,
                &format!("users of {what}"),
                valid_user,
                "user names of the nodes (letters, digits, `_`, `-`, `.`), e.g. [\"nobody\"]",
            )?,
            None => vec![task_user.to_string()],
        };
        Some(PrincipalSpec {
            name: label.name,
            roles,
            users,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_mesos_and_posix_do() {
        assert!(valid_role("analytics") && valid_role("*") && valid_role("a/b"));
        assert!(!valid_role("") && !valid_role("..") && !valid_role("/x") && !valid_role("a b"));
        assert!(
            valid_user("nobody") && valid_user("svc-1") && !valid_user("root:x") && !valid_user("")
        );
        assert!(valid_principal("analytics") && !valid_principal("a:b") && !valid_principal(".x"));
    }
}
