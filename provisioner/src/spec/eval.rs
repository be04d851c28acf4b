//! Expression evaluation with positions.
//!
//! hcl-rs evaluates `hcl::Expression`s, which carry no spans, so its errors cannot say where they happened.
//! We evaluate one attribute value at a time and attach the value's span to any error; before that, a
//! visitor over the span-keeping `hcl-edit` expression finds the common mistakes (unknown `var.x`,
//! unknown function, division by zero, integer overflow) at their exact position. The arithmetic check
//! also keeps hcl-rs's number type from panicking on `1 % 0` or overflowing integers.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, UnwindSafe};
use std::sync::Once;

use hcl::Value;
use hcl::edit::Span;
use hcl::edit::expr::{BinaryOperator, Expression, ForExpr, ObjectKey, TraversalOperator};
use hcl::edit::template::{Element, ForDirective};
use hcl::edit::visit::{self, Visit};
use hcl::eval::{Context, Evaluate};

use super::error::{Diagnostic, closest, name_hint};
use super::funcs;
use super::raw::{FileId, Loc, Sources};

/// Evaluates attribute values in one scope: functions always, `var.*` only where `vars` is `Some`.
pub(crate) struct Evaluator<'c> {
    ctx: Context<'c>,
    /// Declared variable names; `None` where variables may not be referenced (defaults, value files).
    vars: Option<Vec<String>>,
}

impl Evaluator<'static> {
    /// A scope without variables: for `default`s and variable-value files.
    pub fn without_vars() -> Self {
        Evaluator {
            ctx: funcs::context(),
            vars: None,
        }
    }

    /// A scope where `var.NAME` resolves to `values`.
    pub fn with_vars(values: hcl::Map<String, Value>) -> Self {
        let mut ctx = funcs::context();
        let names = values.keys().cloned().collect();
        ctx.declare_var("var", Value::Object(values));
        Evaluator {
            ctx,
            vars: Some(names),
        }
    }
}

impl Evaluator<'_> {
    /// Evaluates `expr` (found at `loc`); every error is placed at the sub-expression that caused it
    /// when known, else at the start of the value.
    pub fn eval(
        &self,
        sources: &Sources,
        expr: &Expression,
        loc: &Loc,
    ) -> Result<Value, Vec<Diagnostic>> {
        let mut check = Check {
            ev: self,
            sources,
            file: loc.file,
            bound: Vec::new(),
            errors: Vec::new(),
        };
        check.visit_expr(expr);
        if !check.errors.is_empty() {
            return Err(check.errors);
        }
        match self.try_eval(expr) {
            Ok(v) => Ok(v),
            Err(failure) => {
                // Narrow the error down to the innermost sub-expression that fails on its own, so
                // `config = { a = 1, b = "x" + 1 }` points at `"x" + 1`, not at `{`.
                let (at, failure) = self
                    .innermost_failure(expr, loc.file)
                    .unwrap_or((loc.clone(), failure));
                let what = match failure {
                    Failure::Error(msg) => bounded(&msg, 160),
                    Failure::Panic => "arithmetic overflow or division by zero".to_string(),
                };
                Err(vec![sources.diag(
                    &at,
                    format!("cannot evaluate `{}`: {what}", short(sources.snippet(&at))),
                    "",
                )])
            }
        }
    }

    /// Evaluates one expression. hcl-rs's number type panics on some arithmetic the visitor cannot see
    /// ahead (operands bound by a `for` expression); contain that rather than crash the CLI.
    fn try_eval(&self, expr: &Expression) -> Result<Value, Failure> {
        let plain: hcl::Expression = expr.clone().into();
        match quiet_catch_unwind(AssertUnwindSafe(|| plain.evaluate(&self.ctx))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Error(e.kind().to_string())),
            Err(_) => Err(Failure::Panic),
        }
    }

    /// The innermost sub-expression of `expr` that fails when evaluated alone, with its failure.
    ///
    /// Only children that are always evaluated with their parent are tried: not `for` bodies (their
    /// variables are unbound out of the loop) and not conditional branches (one of them is skipped).
    fn innermost_failure(&self, expr: &Expression, file: FileId) -> Option<(Loc, Failure)> {
        let children: Vec<&Expression> = match expr {
            Expression::Array(a) => a.iter().collect(),
            Expression::Object(o) => o
                .iter()
                .flat_map(|(k, v)| {
                    let key = match k {
                        ObjectKey::Expression(e) => Some(e),
                        ObjectKey::Ident(_) => None,
                    };
                    key.into_iter().chain(std::iter::once(v.expr()))
                })
                .collect(),
            Expression::Parenthesis(p) => vec![p.inner()],
            Expression::FuncCall(f) => f.args.iter().collect(),
            Expression::BinaryOp(b) => vec![&b.lhs_expr, &b.rhs_expr],
            Expression::UnaryOp(u) => vec![&u.expr],
            Expression::Conditional(c) => vec![&c.cond_expr],
            Expression::Traversal(t) => vec![&t.expr],
            Expression::StringTemplate(t) => t
                .iter()
                .filter_map(|el| match el {
                    Element::Interpolation(i) => Some(&i.expr),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for child in children {
            if let Err(failure) = self.try_eval(child) {
                let here = Loc {
                    file,
                    span: child.span().unwrap_or(0..0),
                };
                return self
                    .innermost_failure(child, file)
                    .or(Some((here, failure)));
            }
        }
        None
    }
}

/// Why an expression could not be evaluated.
enum Failure {
    Error(String),
    Panic,
}

/// A one-line, bounded quote of the user's expression.
fn short(s: &str) -> String {
    bounded(s, 60)
}

/// `s` on one line, cut to `max` characters: messages stay readable whatever the input.
fn bounded(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > max {
        format!("{}...", one.chars().take(max - 3).collect::<String>())
    } else {
        one
    }
}

struct Check<'a, 'c> {
    ev: &'a Evaluator<'c>,
    sources: &'a Sources,
    file: FileId,
    /// Names bound by enclosing `for` expressions/directives.
    bound: Vec<String>,
    errors: Vec<Diagnostic>,
}

impl Check<'_, '_> {
    fn loc(&self, s: &impl Span) -> Loc {
        Loc {
            file: self.file,
            span: s.span().unwrap_or(0..0),
        }
    }

    fn error(&mut self, s: &impl Span, message: String, hint: String) {
        let loc = self.loc(s);
        self.errors.push(self.sources.diag(&loc, message, hint));
    }

    fn check_var_name(&mut self, name_span: &impl Span, name: &str) {
        match &self.ev.vars {
            None => self.error(
                name_span,
                format!("variables cannot be used here (var.{name})"),
                "variable defaults and variable-value files hold constant values".into(),
            ),
            Some(declared) if !declared.iter().any(|d| d == name) => {
                let valid: Vec<&str> = declared.iter().map(String::as_str).collect();
                let hint = if valid.is_empty() {
                    format!("declare it: variable \"{name}\" {{ default = ... }}")
                } else {
                    name_hint(name, "variables", &valid)
                };
                self.error(name_span, format!("undeclared variable \"{name}\""), hint);
            }
            Some(_) => {}
        }
    }

    /// Checks `lhs op rhs` would not make hcl-rs's number arithmetic panic or overflow.
    fn check_arithmetic(&mut self, op: &hcl::edit::expr::BinaryOp) {
        let op_kind = *op.operator.value();
        if !matches!(
            op_kind,
            BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Mul
                | BinaryOperator::Div
                | BinaryOperator::Mod
        ) {
            return;
        }
        // Operands that use `for` variables cannot be evaluated out of their loop; the evaluator's
        // panic guard covers those.
        if !self.bound.is_empty() {
            return;
        }
        let eval = |e: &Expression| {
            let plain: hcl::Expression = e.clone().into();
            quiet_catch_unwind(AssertUnwindSafe(|| plain.evaluate(&self.ev.ctx)))
                .ok()
                .and_then(Result::ok)
        };
        let (Some(Value::Number(l)), Some(Value::Number(r))) =
            (eval(&op.lhs_expr), eval(&op.rhs_expr))
        else {
            return; // type errors are reported by the evaluator itself
        };
        if let Err(msg) = arithmetic_ok(op_kind, l, r) {
            self.error(
                op,
                format!("{msg} in `{}`", short(self.sources.snippet(&self.loc(op)))),
                String::new(),
            );
        }
    }
}

/// Whether hcl-rs can compute `l op r` without panicking or producing a non-finite number.
fn arithmetic_ok(op: BinaryOperator, l: hcl::Number, r: hcl::Number) -> Result<(), &'static str> {
    let as_int = |n: hcl::Number| {
        n.as_i64()
            .filter(|i| *i > i64::MIN)
            .map(i128::from)
            .or(n.as_u64().map(i128::from))
    };
    let zero = r.as_f64() == Some(0.0);
    if matches!(op, BinaryOperator::Div | BinaryOperator::Mod) && zero {
        return Err("division by zero");
    }
    match (l.is_f64() || r.is_f64(), as_int(l), as_int(r)) {
        (false, Some(a), Some(b)) => {
            let res = match op {
                BinaryOperator::Plus => a + b,
                BinaryOperator::Minus => a - b,
                BinaryOperator::Mul => a.checked_mul(b).ok_or("integer overflow")?,
                _ => 0,
            };
            // hcl-rs computes in u64/i64 without overflow checks: stay inside i64 on both sides.
            let fits = |x: i128| x > i128::from(i64::MIN) && x <= i128::from(i64::MAX);
            if fits(a) && fits(b) && fits(res) {
                Ok(())
            } else {
                Err("integer overflow")
            }
        }
        _ => {
            let (a, b) = (
                l.as_f64().unwrap_or(f64::NAN),
                r.as_f64().unwrap_or(f64::NAN),
            );
            let res = match op {
                BinaryOperator::Plus => a + b,
                BinaryOperator::Minus => a - b,
                BinaryOperator::Mul => a * b,
                BinaryOperator::Div => a / b,
                _ => a % b,
            };
            if res.is_finite() {
                Ok(())
            } else {
                Err("number out of range")
            }
        }
    }
}

impl Visit for Check<'_, '_> {
    fn visit_expr(&mut self, expr: &Expression) {
        match expr {
            Expression::Variable(v) => {
                let name = v.as_str();
                if self.bound.iter().any(|b| b == name) {
                    return;
                }
                if name == "var" {
                    self.error(
                        v,
                        "`var` needs a variable name: var.NAME".into(),
                        String::new(),
                    );
                } else {
                    let hint = match closest(name, self.bound.iter().map(String::as_str)) {
                        Some(c) => format!("did you mean \"{c}\"? variables are written var.NAME"),
                        None => "variables are written var.NAME".into(),
                    };
                    self.error(v, format!("unknown name \"{name}\""), hint);
                }
            }
            Expression::Traversal(t) => {
                let is_var_root = matches!(&t.expr, Expression::Variable(v) if v.as_str() == "var" && !self.bound.iter().any(|b| b == "var"));
                if is_var_root {
                    match t.operators.first().map(|o| o.value()) {
                        Some(TraversalOperator::GetAttr(name)) => {
                            self.check_var_name(name, name.as_str())
                        }
                        _ => self.error(
                            &**t,
                            "`var` needs a variable name: var.NAME".into(),
                            String::new(),
                        ),
                    }
                    for op in t.operators.iter().skip(1) {
                        visit::visit_traversal_operator(self, op.value());
                    }
                } else {
                    visit::visit_traversal(self, t);
                }
            }
            Expression::FuncCall(f) => {
                let name = f.name.name.as_str();
                if !f.name.namespace.is_empty() || !funcs::NAMES.contains(&name) {
                    let mut shown: Vec<&str> =
                        f.name.namespace.iter().map(|n| n.as_str()).collect();
                    shown.push(name);
                    self.error(
                        &f.name.name,
                        format!("unknown function \"{}\"", shown.join("::")),
                        name_hint(name, "functions", funcs::NAMES),
                    );
                }
                visit::visit_func_call(self, f);
            }
            Expression::BinaryOp(op) => {
                let before = self.errors.len();
                visit::visit_binary_op(self, op);
                if self.errors.len() == before {
                    self.check_arithmetic(op);
                }
            }
            other => visit::visit_expr(self, other),
        }
    }

    fn visit_for_expr(&mut self, node: &ForExpr) {
        self.visit_expr(&node.intro.collection_expr);
        let pushed = push_bound(
            &mut self.bound,
            node.intro.key_var.as_ref().map(|k| k.as_str()),
            node.intro.value_var.as_str(),
        );
        if let Some(k) = &node.key_expr {
            self.visit_expr(k);
        }
        self.visit_expr(&node.value_expr);
        if let Some(c) = &node.cond {
            self.visit_expr(&c.expr);
        }
        self.bound.truncate(self.bound.len() - pushed);
    }

    fn visit_for_directive(&mut self, node: &ForDirective) {
        let f = &node.for_expr;
        self.visit_expr(&f.collection_expr);
        let pushed = push_bound(
            &mut self.bound,
            f.key_var.as_ref().map(|k| k.as_str()),
            f.value_var.as_str(),
        );
        self.visit_template(&f.template);
        self.bound.truncate(self.bound.len() - pushed);
    }
}

fn push_bound(bound: &mut Vec<String>, key: Option<&str>, value: &str) -> usize {
    let mut n = 1;
    if let Some(k) = key {
        bound.push(k.to_string());
        n += 1;
    }
    bound.push(value.to_string());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vars: Option<&[(&str, Value)]>, src: &str) -> Result<Value, Vec<Diagnostic>> {
        let mut sources = Sources::default();
        let text = format!("x = {src}\n");
        let file = sources.add("t.hcl".into(), text.clone());
        let body = hcl::edit::parser::parse_body(&text).expect("test input parses");
        let attr = body.get_attribute("x").expect("x");
        let loc = Loc {
            file,
            span: attr.value.span().unwrap_or(0..0),
        };
        let ev = match vars {
            None => Evaluator::without_vars(),
            Some(vs) => {
                Evaluator::with_vars(vs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
            }
        };
        let _g = funcs::FuncEnvGuard::install(funcs::FuncEnv::default());
        ev.eval(&sources, &attr.value, &loc)
    }

    #[test]
    fn var_references_resolve() {
        assert_eq!(
            run(Some(&[("n", Value::from(2u64))]), "var.n + 1"),
            Ok(Value::from(3u64))
        );
    }

    #[test]
    fn undeclared_variable_is_placed_at_its_name_with_a_hint() {
        let errs =
            run(Some(&[("agents", Value::from(2u64))]), "var.agnets").expect_err("undeclared");
        assert_eq!((errs[0].line, errs[0].col), (1, 9));
        assert!(errs[0].hint.contains("\"agents\""), "{}", errs[0]);
    }

    #[test]
    fn variables_are_refused_where_only_constants_belong() {
        let errs = run(None, "var.x").expect_err("no vars here");
        assert!(
            errs[0].message.contains("cannot be used here"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn unknown_function_is_named_with_a_hint() {
        let errs = run(None, "lenght([1])").expect_err("unknown fn");
        assert!(errs[0].hint.contains("\"length\""), "{}", errs[0]);
        assert_eq!(errs[0].col, 5);
    }

    #[test]
    fn arithmetic_that_would_panic_is_an_error() {
        for src in [
            "1 % 0",
            "1 / 0",
            "9223372036854775807 + 1",
            "18446744073709551615 * 2",
            "1e308 * 10",
        ] {
            let errs = run(None, src).expect_err(src);
            assert_eq!(errs.len(), 1, "{src}");
        }
        assert_eq!(run(None, "7 % 3"), Ok(Value::from(1u64)));
    }

    #[test]
    fn arithmetic_inside_for_expressions_does_not_panic() {
        assert!(run(None, "[for x in [0] : 1 % x]").is_err());
    }

    #[test]
    fn evaluation_errors_point_at_the_failing_sub_expression() {
        let errs = run(None, "{ a = 1, b = [2, \"x\" + 1] }").expect_err("type error");
        assert_eq!((errs[0].line, errs[0].col), (1, 22), "{}", errs[0]);
        assert!(
            errs[0].message.starts_with("cannot evaluate `\"x\" + 1`"),
            "{}",
            errs[0]
        );
        let errs = run(None, "\"${upper(1 + true)}\"").expect_err("type error");
        assert!(errs[0].message.contains("`1 + true`"), "{}", errs[0]);
    }

    #[test]
    fn for_variables_are_in_scope() {
        assert_eq!(
            run(None, "[for x in [1, 2] : x * 2]"),
            Ok(Value::Array(vec![Value::from(2u64), Value::from(4u64)]))
        );
        assert!(run(None, "[for x in [1] : y]").is_err());
    }
}

thread_local! {
    /// Set while evaluating under [`quiet_catch_unwind`]: the panic is contained and reported as a diagnostic,
    /// so the default "thread panicked" message must not reach the user's terminal.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// `catch_unwind` that keeps the panic message off stderr (hcl-rs panics on some arithmetic; we report it
/// ourselves, with its position). Other panics keep the previous hook's output.
fn quiet_catch_unwind<R>(f: impl FnOnce() -> R + UnwindSafe) -> std::thread::Result<R> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    r
}
