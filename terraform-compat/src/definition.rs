//! The dcform definition a conversion writes, as a small model rendered to HCL text. The crate names
//! none of dcform's types but the shared vocabulary of `dcform-model` ([`Role`]); dcform's tests load
//! every rendered golden file with `spec::load`, which is what keeps this renderer and dcform's
//! language in step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hcl::Expression;

use crate::report::PoolSummary;

/// A node pool's role: dcform's own type (crate `dcform-model`), so a conversion cannot write a role
/// dcform does not read.
pub use dcform_model::Role;

/// The pool name a conversion gives the first pool of `role`.
pub fn default_pool_name(role: Role) -> &'static str {
    match role {
        Role::Master => "masters",
        Role::Agent => "agents",
        Role::PublicAgent => "public-agents",
    }
}

/// How big a pool is.
#[derive(Debug, Clone, PartialEq)]
pub enum Size {
    /// `count = EXPR` (providers that create machines).
    Count(Expression),
    /// `hosts = [...]` (provider `ssh`).
    Hosts(Vec<String>),
}

/// One `pool` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Pool name (already valid for dcform).
    pub name: String,
    /// Role of its nodes.
    pub role: Role,
    /// Count or hosts.
    pub size: Size,
    /// `instance_type = EXPR`.
    pub instance_type: Option<Expression>,
    /// `attributes = { ... }`.
    pub attributes: BTreeMap<String, String>,
    /// A comment line above the block: where the pool came from.
    pub comment: String,
}

/// One `variable` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Name.
    pub name: String,
    /// The type expression as written (`number`, `"string"`, `list(string)`).
    pub type_expr: Option<String>,
    /// Default value.
    pub default: Option<Expression>,
    /// Description.
    pub description: Option<String>,
}

/// A whole definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Comment lines at the top (without `# `).
    pub header: Vec<String>,
    /// Variable blocks, in source order.
    pub variables: Vec<Variable>,
    /// Cluster name (already valid for dcform).
    pub cluster: String,
    /// `provider "KIND" { ... }`.
    pub provider: String,
    /// The provider block's attributes.
    pub provider_attrs: Vec<(String, Expression)>,
    /// The `ssh { ... }` block's attributes; no block when empty.
    pub ssh: Vec<(String, Expression)>,
    /// Pools in order.
    pub pools: Vec<Pool>,
}

impl Definition {
    /// The definition as HCL text, formatted like the examples in `examples/`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            let _ = writeln!(s, "# {h}");
        }
        if !self.header.is_empty() {
            s.push('\n');
        }
        for v in &self.variables {
            let _ = writeln!(s, "variable {} {{", quote(&v.name));
            let mut attrs: Vec<(&str, String)> = Vec::new();
            if let Some(t) = &v.type_expr {
                attrs.push(("type", t.clone()));
            }
            if let Some(d) = &v.default {
                attrs.push(("default", expr_text(d)));
            }
            if let Some(d) = &v.description {
                attrs.push(("description", quote(d)));
            }
            write_attrs(&mut s, "  ", &attrs);
            s.push_str("}\n\n");
        }
        let _ = writeln!(s, "cluster {} {{", quote(&self.cluster));
        if self.provider_attrs.is_empty() {
            let _ = writeln!(s, "  provider {} {{}}", quote(&self.provider));
        } else {
            let _ = writeln!(s, "  provider {} {{", quote(&self.provider));
            let attrs: Vec<(&str, String)> = self
                .provider_attrs
                .iter()
                .map(|(k, e)| (k.as_str(), expr_text(e)))
                .collect();
            write_attrs(&mut s, "    ", &attrs);
            s.push_str("  }\n");
        }
        if !self.ssh.is_empty() {
            s.push_str("\n  ssh {\n");
            let attrs: Vec<(&str, String)> = self
                .ssh
                .iter()
                .map(|(k, e)| (k.as_str(), expr_text(e)))
                .collect();
            write_attrs(&mut s, "    ", &attrs);
            s.push_str("  }\n");
        }
        s.push_str("\n  core {\n    version = \"bundled\"\n  }\n");
        for p in &self.pools {
            s.push('\n');
            if !p.comment.is_empty() {
                let _ = writeln!(s, "  # {}", p.comment);
            }
            let _ = writeln!(s, "  pool {} {{", quote(&p.name));
            let mut attrs: Vec<(&str, String)> = vec![("role", quote(p.role.as_str()))];
            match &p.size {
                Size::Count(e) => attrs.push(("count", expr_text(e))),
                Size::Hosts(h) => attrs.push((
                    "hosts",
                    format!(
                        "[{}]",
                        h.iter().map(|x| quote(x)).collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
            if let Some(t) = &p.instance_type {
                attrs.push(("instance_type", expr_text(t)));
            }
            if !p.attributes.is_empty() {
                let inner: Vec<String> = p
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{} = {}", object_key(k), quote(v)))
                    .collect();
                attrs.push(("attributes", format!("{{ {} }}", inner.join(", "))));
            }
            write_attrs(&mut s, "    ", &attrs);
            s.push_str("  }\n");
        }
        s.push_str("}\n");
        s
    }

    /// The pools for the report, with their node counts where the count is a literal (or a variable with
    /// a literal default).
    pub fn pool_summaries(&self) -> Vec<PoolSummary> {
        self.pools
            .iter()
            .map(|p| PoolSummary {
                name: p.name.clone(),
                role: p.role.as_str().to_string(),
                nodes: match &p.size {
                    Size::Hosts(h) => Some(h.len() as u64),
                    Size::Count(e) => self.count_value(e),
                },
            })
            .collect()
    }

    fn count_value(&self, e: &Expression) -> Option<u64> {
        match e {
            Expression::Number(n) => n.as_u64(),
            Expression::String(s) => s.trim().parse().ok(),
            Expression::Traversal(t) => {
                let name = crate::terraform::expr::var_name(t)?;
                let v = self.variables.iter().find(|v| v.name == name)?;
                self.count_value(v.default.as_ref()?)
            }
            _ => None,
        }
    }
}

/// Aligns `=` the way `terraform fmt` does within one block.
fn write_attrs(s: &mut String, indent: &str, attrs: &[(&str, String)]) {
    let width = attrs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in attrs {
        let _ = writeln!(s, "{indent}{k:<width$} = {v}");
    }
}

/// A string literal, escaped for HCL (quotes, backslashes, and `${`/`%{` so no template starts).
pub fn quote(s: &str) -> String {
    format!("\"{}\"", escape_literal(s))
}

/// Escapes text for the literal part of a quoted HCL template.
pub(crate) fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn object_key(k: &str) -> String {
    let ident = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ident { k.to_string() } else { quote(k) }
}

/// An expression as HCL text. hcl-rs formats every expression the resolver produces; the fallback is
/// unreachable in practice but keeps this total.
pub(crate) fn expr_text(e: &Expression) -> String {
    match e {
        Expression::String(s) => quote(s),
        other => hcl::format::to_string(other).unwrap_or_else(|_| "null".into()),
    }
}

/// Makes a name valid as a dcform cluster or pool name: lowercase letters, digits and `-`, starting with
/// a letter, at most 40 characters. Returns `None` when nothing usable is left.
pub fn sanitize_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed: String = out
        .trim_start_matches(|c: char| !c.is_ascii_lowercase())
        .chars()
        .take(40)
        .collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    (!trimmed.is_empty()).then_some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid_for_dcform() {
        assert_eq!(
            sanitize_name("My_Cluster.1").as_deref(),
            Some("my-cluster-1")
        );
        assert_eq!(sanitize_name("42-dcos").as_deref(), Some("dcos"));
        assert_eq!(sanitize_name("--").as_deref(), None);
        assert_eq!(sanitize_name(&"a".repeat(60)).map(|s| s.len()), Some(40));
    }

    #[test]
    fn literals_cannot_start_a_template() {
        assert_eq!(quote("a\"b${c}%{d}\n"), r#""a\"b$${c}%%{d}\n""#);
    }
}
