//! Resolving Terraform expressions into dcform expressions, as far as they can be known before Terraform
//! runs: locals are substituted, 0.11's `"${...}"` wrappers dropped, constant functions folded; `var.x`
//! stays `var.x` (the variable is carried over). What depends on data sources, resources or module outputs
//! cannot be known without running Terraform: resolving it fails with the reason.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use hcl::expr::{
    Conditional, Expression, FuncCall, ObjectKey, TemplateExpr, Traversal, TraversalOperator,
};
use hcl::template::Element;
use hcl::{Identifier, Template};

/// Functions dcform's language has (`provisioner/src/spec/funcs.rs`): calls to them may stay in the
/// output with variable arguments, since dcform evaluates them itself.
const DCFORM_FUNCS: &[&str] = &[
    "length", "concat", "merge", "format", "lower", "upper", "join", "tostring", "tonumber", "min",
    "max",
];

/// Deepest chain of locals referring to locals; beyond it we assume a cycle.
const MAX_DEPTH: usize = 32;

/// The name `x` of a `var.x` traversal (and only of that: `var.x.y` is not a plain variable).
pub(crate) fn var_name(t: &Traversal) -> Option<&str> {
    match (&t.expr, t.operators.as_slice()) {
        (Expression::Variable(v), [TraversalOperator::GetAttr(name)]) if v.as_str() == "var" => {
            Some(name.as_str())
        }
        _ => None,
    }
}

/// Resolves expressions in one Terraform configuration's scope.
pub(crate) struct Resolver<'a> {
    /// Declared variables.
    pub vars: &'a BTreeSet<String>,
    /// `locals` blocks' values.
    pub locals: &'a BTreeMap<String, Expression>,
    /// Variables referenced by what was resolved so far: these are the ones to carry over.
    pub used: RefCell<BTreeSet<String>>,
    depth: Cell<usize>,
}

impl<'a> Resolver<'a> {
    pub fn new(vars: &'a BTreeSet<String>, locals: &'a BTreeMap<String, Expression>) -> Self {
        Resolver {
            vars,
            locals,
            used: RefCell::new(BTreeSet::new()),
            depth: Cell::new(0),
        }
    }

    /// The expression with everything known substituted, or why it cannot be known before Terraform
    /// runs. Variables used by a failed resolution are not recorded as used.
    pub fn resolve(&self, e: &Expression) -> Result<Expression, String> {
        let before = self.used.borrow().clone();
        let r = self.expr(e);
        if r.is_err() {
            *self.used.borrow_mut() = before;
        }
        r
    }

    /// Resolves to a literal value with no variable in it (cluster names, block labels).
    pub fn literal(&self, e: &Expression) -> Result<Expression, String> {
        let before = self.used.borrow().clone();
        match self.resolve(e) {
            Ok(r) if is_literal(&r) => Ok(r),
            Ok(_) => {
                *self.used.borrow_mut() = before;
                Err("it depends on a variable".into())
            }
            Err(why) => Err(why),
        }
    }

    fn expr(&self, e: &Expression) -> Result<Expression, String> {
        if self.depth.get() > MAX_DEPTH {
            return Err("locals refer to each other in a cycle (or nest too deeply)".into());
        }
        self.depth.set(self.depth.get() + 1);
        let r = self.expr_inner(e);
        self.depth.set(self.depth.get() - 1);
        r
    }

    fn expr_inner(&self, e: &Expression) -> Result<Expression, String> {
        Ok(match e {
            Expression::Null
            | Expression::Bool(_)
            | Expression::Number(_)
            | Expression::String(_) => e.clone(),
            Expression::Array(items) => Expression::Array(
                items
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Result<_, _>>()?,
            ),
            Expression::Object(o) => {
                let mut out = hcl::Object::new();
                for (k, v) in o {
                    let key = match k {
                        ObjectKey::Identifier(i) => ObjectKey::Identifier(i.clone()),
                        ObjectKey::Expression(ke) => ObjectKey::Expression(self.expr(ke)?),
                        _ => return Err("an object key this version of dcform cannot read".into()),
                    };
                    out.insert(key, self.expr(v)?);
                }
                Expression::Object(out)
            }
            Expression::TemplateExpr(t) => self.template(t)?,
            Expression::Parenthesis(p) => {
                let inner = self.expr(p)?;
                if is_literal(&inner) {
                    inner
                } else {
                    Expression::Parenthesis(Box::new(inner))
                }
            }
            Expression::Variable(v) => {
                return Err(format!(
                    "it refers to `{}`, which has no value before Terraform runs",
                    v.as_str()
                ));
            }
            Expression::Traversal(t) => self.traversal(t)?,
            Expression::FuncCall(f) => self.call(f)?,
            Expression::Conditional(c) => self.conditional(c)?,
            Expression::Operation(op) => {
                let mut op = (**op).clone();
                match &mut op {
                    hcl::expr::Operation::Unary(u) => u.expr = self.expr(&u.expr)?,
                    hcl::expr::Operation::Binary(b) => {
                        b.lhs_expr = self.expr(&b.lhs_expr)?;
                        b.rhs_expr = self.expr(&b.rhs_expr)?;
                    }
                }
                Expression::Operation(Box::new(op))
            }
            Expression::ForExpr(_) => return Err("`for` expressions are not converted".into()),
            _ => return Err("an expression this version of dcform cannot read".into()),
        })
    }

    fn traversal(&self, t: &Traversal) -> Result<Expression, String> {
        let Expression::Variable(root) = &t.expr else {
            // (expr).attr, [..][0]: resolve the base and fold what can be folded.
            let base = self.expr(&t.expr)?;
            return self.apply_ops(base, &t.operators);
        };
        let first = match t.operators.first() {
            Some(TraversalOperator::GetAttr(a)) => Some(a.as_str()),
            _ => None,
        };
        let path = traversal_text(t);
        match (root.as_str(), first) {
            ("var", Some(name)) => {
                if !self.vars.contains(name) {
                    return Err(format!("var.{name} is not declared in this configuration"));
                }
                self.used.borrow_mut().insert(name.to_string());
                let base = Expression::Traversal(Box::new(Traversal::new(
                    Expression::Variable(root.clone()),
                    vec![TraversalOperator::GetAttr(Identifier::sanitized(name))],
                )));
                self.apply_ops(base, &t.operators[1..])
            }
            ("local", Some(name)) => {
                let Some(value) = self.locals.get(name) else {
                    return Err(format!("local.{name} is not defined in this configuration"));
                };
                let base = self
                    .expr(value)
                    .map_err(|why| format!("local.{name}: {why}"))?;
                self.apply_ops(base, &t.operators[1..])
            }
            ("data", _) => Err(format!(
                "it depends on the data source `{path}`, which only Terraform reads"
            )),
            ("module", Some(m)) => Err(format!(
                "it depends on `{path}`, an output of module \"{m}\" known only after `terraform apply`"
            )),
            ("count" | "each" | "self" | "path" | "terraform", _) => Err(format!(
                "it depends on `{path}`, which exists only inside Terraform"
            )),
            _ => Err(format!(
                "it depends on the resource attribute `{path}`, known only after `terraform apply`"
            )),
        }
    }

    /// Applies `.attr` / `[index]` to a resolved base, folding them when the base is a literal.
    fn apply_ops(&self, base: Expression, ops: &[TraversalOperator]) -> Result<Expression, String> {
        let mut cur = base;
        let mut rest: Vec<TraversalOperator> = Vec::new();
        for op in ops {
            let op = match op {
                TraversalOperator::Index(i) => TraversalOperator::Index(self.expr(i)?),
                other => other.clone(),
            };
            if rest.is_empty()
                && let Some(v) = fold_op(&cur, &op)
            {
                cur = v;
                continue;
            }
            if matches!(
                op,
                TraversalOperator::AttrSplat | TraversalOperator::FullSplat
            ) {
                return Err("splat expressions (`[*]`) are not converted".into());
            }
            rest.push(op);
        }
        if rest.is_empty() {
            return Ok(cur);
        }
        if is_literal(&cur) {
            return Err("an index or attribute that the value does not have".into());
        }
        Ok(Expression::Traversal(Box::new(Traversal::new(cur, rest))))
    }

    fn conditional(&self, c: &Conditional) -> Result<Expression, String> {
        let cond = self.expr(&c.cond_expr)?;
        match cond {
            Expression::Bool(true) => self.expr(&c.true_expr),
            Expression::Bool(false) => self.expr(&c.false_expr),
            cond => Ok(Expression::Conditional(Box::new(Conditional::new(
                cond,
                self.expr(&c.true_expr)?,
                self.expr(&c.false_expr)?,
            )))),
        }
    }

    fn template(&self, t: &TemplateExpr) -> Result<Expression, String> {
        let tpl =
            Template::from_expr(t).map_err(|e| format!("a template that does not parse: {e}"))?;
        let elements = tpl.elements();
        // 0.11's "${x}": the value of x itself, type kept (a list stays a list).
        let interpolations: Vec<&hcl::template::Interpolation> = elements
            .iter()
            .filter_map(|e| match e {
                Element::Interpolation(i) => Some(i),
                _ => None,
            })
            .collect();
        let only_literal_whitespace = elements.iter().all(|e| match e {
            Element::Literal(l) => l.is_empty(),
            _ => true,
        });
        if let [one] = interpolations.as_slice()
            && only_literal_whitespace
            && elements.len() <= 3
        {
            return self.expr(&one.expr);
        }
        let mut parts: Vec<Part> = Vec::new();
        for el in elements {
            match el {
                Element::Literal(l) => parts.push(Part::Lit(l.clone())),
                Element::Interpolation(i) => match self.expr(&i.expr)? {
                    Expression::String(s) => parts.push(Part::Lit(s)),
                    Expression::Number(n) => parts.push(Part::Lit(n.to_string())),
                    Expression::Bool(b) => parts.push(Part::Lit(b.to_string())),
                    e if is_literal(&e) => {
                        return Err("a list or map interpolated into a string".into());
                    }
                    e => parts.push(Part::Expr(e)),
                },
                Element::Directive(_) => {
                    return Err("template directives (%{if}/%{for}) are not converted".into());
                }
            }
        }
        if parts.iter().all(|p| matches!(p, Part::Lit(_))) {
            let s: String = parts
                .into_iter()
                .map(|p| match p {
                    Part::Lit(s) => s,
                    Part::Expr(_) => String::new(),
                })
                .collect();
            return Ok(Expression::String(s));
        }
        let mut raw = String::new();
        for p in parts {
            match p {
                Part::Lit(s) => raw.push_str(&crate::definition::escape_literal(&s)),
                Part::Expr(e) => {
                    raw.push_str("${");
                    raw.push_str(&crate::definition::expr_text(&e));
                    raw.push('}');
                }
            }
        }
        Ok(Expression::TemplateExpr(Box::new(
            TemplateExpr::QuotedString(raw),
        )))
    }

    fn call(&self, f: &FuncCall) -> Result<Expression, String> {
        let name = f.name.name.as_str();
        if !f.name.namespace.is_empty() {
            return Err(format!("provider function {name} is not converted"));
        }
        let args: Vec<Expression> = f
            .args
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<_, _>>()?;
        if args.iter().all(is_literal)
            && !f.expand_final
            && let Some(v) = fold_call(name, &args)?
        {
            return Ok(v);
        }
        if DCFORM_FUNCS.contains(&name) {
            let mut call = FuncCall::new(Identifier::sanitized(name));
            call.args = args;
            call.expand_final = f.expand_final;
            return Ok(Expression::FuncCall(Box::new(call)));
        }
        if name == "file" {
            return Err(
                "it reads a file with file(); its content is not copied into the definition".into(),
            );
        }
        Err(format!(
            "function {name}() is not in dcform's language and its arguments are not constant"
        ))
    }
}

enum Part {
    Lit(String),
    Expr(Expression),
}

/// Whether an expression is a plain value (no reference, no call).
pub(crate) fn is_literal(e: &Expression) -> bool {
    match e {
        Expression::Null | Expression::Bool(_) | Expression::Number(_) | Expression::String(_) => {
            true
        }
        Expression::Array(a) => a.iter().all(is_literal),
        Expression::Object(o) => o.iter().all(|(k, v)| {
            (match k {
                ObjectKey::Identifier(_) => true,
                ObjectKey::Expression(e) => is_literal(e),
                _ => false,
            }) && is_literal(v)
        }),
        _ => false,
    }
}

/// `x.attr` / `x[i]` on a literal.
fn fold_op(base: &Expression, op: &TraversalOperator) -> Option<Expression> {
    match (base, op) {
        (Expression::Object(o), TraversalOperator::GetAttr(a)) => lookup_key(o, a.as_str()),
        (Expression::Object(o), TraversalOperator::Index(Expression::String(k))) => {
            lookup_key(o, k)
        }
        (Expression::Array(a), TraversalOperator::Index(Expression::Number(n))) => {
            a.get(usize::try_from(n.as_u64()?).ok()?).cloned()
        }
        (Expression::Array(a), TraversalOperator::LegacyIndex(n)) => {
            a.get(usize::try_from(*n).ok()?).cloned()
        }
        _ => None,
    }
}

fn lookup_key(o: &hcl::Object<ObjectKey, Expression>, key: &str) -> Option<Expression> {
    o.iter()
        .find(|(k, _)| match k {
            ObjectKey::Identifier(i) => i.as_str() == key,
            ObjectKey::Expression(Expression::String(s)) => s == key,
            _ => false,
        })
        .map(|(_, v)| v.clone())
}

fn as_str(e: &Expression) -> Option<String> {
    match e {
        Expression::String(s) => Some(s.clone()),
        Expression::Number(n) => Some(n.to_string()),
        Expression::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Folds a call to a Terraform function dcform lacks, on literal arguments. `Ok(None)`: not a function
/// folded here (it may still be one dcform evaluates itself).
fn fold_call(name: &str, args: &[Expression]) -> Result<Option<Expression>, String> {
    let bad = || format!("{name}() with arguments of the wrong kind");
    Ok(Some(match (name, args) {
        ("list", _) => Expression::Array(args.to_vec()),
        ("map", _) => {
            if !args.len().is_multiple_of(2) {
                return Err(bad());
            }
            let mut o = hcl::Object::new();
            for kv in args.chunks(2) {
                let k = as_str(&kv[0]).ok_or_else(bad)?;
                o.insert(ObjectKey::Expression(Expression::String(k)), kv[1].clone());
            }
            Expression::Object(o)
        }
        ("coalesce", _) => args
            .iter()
            .find(|a| !matches!(a, Expression::Null) && as_str(a).is_none_or(|s| !s.is_empty()))
            .cloned()
            .ok_or_else(|| "coalesce() of only empty values".to_string())?,
        ("coalescelist", _) => args
            .iter()
            .find(|a| matches!(a, Expression::Array(v) if !v.is_empty()))
            .cloned()
            .ok_or_else(|| "coalescelist() of only empty lists".to_string())?,
        ("element", [Expression::Array(a), Expression::Number(n)]) => {
            if a.is_empty() {
                return Err("element() of an empty list".into());
            }
            let i = usize::try_from(n.as_u64().ok_or_else(bad)?).map_err(|_| bad())?;
            a[i % a.len()].clone()
        }
        ("lookup", [Expression::Object(o), k, rest @ ..]) if rest.len() <= 1 => {
            let k = as_str(k).ok_or_else(bad)?;
            match (lookup_key(o, &k), rest.first()) {
                (Some(v), _) => v,
                (None, Some(d)) => d.clone(),
                (None, None) => return Err(format!("lookup() of a missing key \"{k}\"")),
            }
        }
        ("compact", [Expression::Array(a)]) => Expression::Array(
            a.iter()
                .filter(|e| !matches!(e, Expression::String(s) if s.is_empty()))
                .cloned()
                .collect(),
        ),
        ("flatten", [Expression::Array(a)]) => {
            let mut out = Vec::new();
            flatten_into(a, &mut out);
            Expression::Array(out)
        }
        ("split", [sep, s]) => {
            let (sep, s) = (as_str(sep).ok_or_else(bad)?, as_str(s).ok_or_else(bad)?);
            if sep.is_empty() {
                return Err(bad());
            }
            Expression::Array(
                s.split(sep.as_str())
                    .map(|p| Expression::String(p.into()))
                    .collect(),
            )
        }
        ("trimspace", [s]) => Expression::String(as_str(s).ok_or_else(bad)?.trim().to_string()),
        ("replace", [s, from, to]) => {
            let (s, from, to) = (
                as_str(s).ok_or_else(bad)?,
                as_str(from).ok_or_else(bad)?,
                as_str(to).ok_or_else(bad)?,
            );
            if from.starts_with('/') && from.ends_with('/') && from.len() > 1 {
                return Err("replace() with a regular expression is not converted".into());
            }
            if from.is_empty() {
                return Err(bad());
            }
            Expression::String(s.replace(&from, &to))
        }
        ("lower", [s]) => Expression::String(as_str(s).ok_or_else(bad)?.to_lowercase()),
        ("upper", [s]) => Expression::String(as_str(s).ok_or_else(bad)?.to_uppercase()),
        ("tostring", [s]) => Expression::String(as_str(s).ok_or_else(bad)?),
        ("join", [sep, Expression::Array(a)]) => {
            let sep = as_str(sep).ok_or_else(bad)?;
            let parts: Option<Vec<String>> = a.iter().map(as_str).collect();
            Expression::String(parts.ok_or_else(bad)?.join(&sep))
        }
        ("concat", _) if args.iter().all(|a| matches!(a, Expression::Array(_))) => {
            let mut out = Vec::new();
            for a in args {
                if let Expression::Array(v) = a {
                    out.extend(v.iter().cloned());
                }
            }
            Expression::Array(out)
        }
        _ => return Ok(None),
    }))
}

fn flatten_into(a: &[Expression], out: &mut Vec<Expression>) {
    for e in a {
        match e {
            Expression::Array(inner) => flatten_into(inner, out),
            other => out.push(other.clone()),
        }
    }
}

/// `data.http.whatismyip.body` as text, for reasons.
fn traversal_text(t: &Traversal) -> String {
    let mut s = match &t.expr {
        Expression::Variable(v) => v.as_str().to_string(),
        _ => "(...)".into(),
    };
    for op in &t.operators {
        match op {
            TraversalOperator::GetAttr(a) => {
                s.push('.');
                s.push_str(a.as_str());
            }
            TraversalOperator::LegacyIndex(i) => {
                s.push_str(&format!(".{i}"));
            }
            TraversalOperator::AttrSplat => s.push_str(".*"),
            TraversalOperator::FullSplat => s.push_str("[*]"),
            TraversalOperator::Index(_) => s.push_str("[...]"),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_expr(src: &str) -> Expression {
        let body = hcl::parse(&format!("x = {src}\n")).expect("test expression parses");
        body.attributes()
            .next()
            .expect("one attribute")
            .expr()
            .clone()
    }

    fn resolve(src: &str, locals: &[(&str, &str)]) -> Result<String, String> {
        let vars: BTreeSet<String> = ["num", "prefix", "region"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let locals: BTreeMap<String, Expression> = locals
            .iter()
            .map(|(k, v)| (k.to_string(), parse_expr(v)))
            .collect();
        let r = Resolver::new(&vars, &locals);
        r.resolve(&parse_expr(src))
            .map(|e| crate::definition::expr_text(&e))
    }

    #[test]
    fn terraform_0_11_interpolation_wrappers_are_dropped_and_variables_kept() {
        assert_eq!(resolve(r#""${var.num}""#, &[]).as_deref(), Ok("var.num"));
        assert_eq!(resolve("var.num", &[]).as_deref(), Ok("var.num"));
        assert_eq!(resolve(r#""3""#, &[]).as_deref(), Ok("\"3\""));
    }

    #[test]
    fn locals_are_substituted_through_chains_and_templates() {
        let locals = [("name", r#""${local.base}-x""#), ("base", r#""dcos""#)];
        assert_eq!(resolve("local.name", &locals).as_deref(), Ok("\"dcos-x\""));
        assert_eq!(
            resolve(r#""${var.prefix}-${local.base}""#, &locals).as_deref(),
            Ok("\"${var.prefix}-dcos\"")
        );
    }

    #[test]
    fn constant_functions_dcform_lacks_are_folded() {
        assert_eq!(
            resolve(r#"coalesce("", "m5.large")"#, &[]).as_deref(),
            Ok("\"m5.large\"")
        );
        assert_eq!(
            resolve(r#"lookup(map("a", "1"), "a", "0")"#, &[]).as_deref(),
            Ok("\"1\"")
        );
        assert_eq!(
            resolve(r#"element(list("a", "b"), 3)"#, &[]).as_deref(),
            Ok("\"b\"")
        );
    }

    #[test]
    fn what_only_terraform_knows_is_refused_with_the_reason() {
        let e = resolve(r#"["${data.http.whatismyip.body}/32"]"#, &[]).unwrap_err();
        assert!(e.contains("data.http.whatismyip.body"), "{e}");
        let e = resolve("module.dcos.masters-ips", &[]).unwrap_err();
        assert!(e.contains("module \"dcos\""), "{e}");
        let e = resolve(r#"file("~/license.txt")"#, &[]).unwrap_err();
        assert!(e.contains("file()"), "{e}");
        let e = resolve("var.nope", &[]).unwrap_err();
        assert!(e.contains("not declared"), "{e}");
    }

    #[test]
    fn a_cycle_of_locals_is_an_error_not_a_stack_overflow() {
        let locals = [("a", "local.b"), ("b", "local.a")];
        assert!(resolve("local.a", &locals).unwrap_err().contains("cycle"));
    }
}
