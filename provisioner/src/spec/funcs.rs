//! The functions a definition may call: `file`, `pathexpand`, `env`, `length`, `concat`, `merge`, `format`,
//! `lower`, `upper`, `join`, `tostring`, `tonumber`, `min`, `max`.
//!
//! hcl-rs takes functions as plain `fn` pointers, so `file` (which resolves paths against the definition
//! folder) and `env`/`pathexpand` (which read the *injected* environment, not the process's) find their
//! inputs in a thread-local [`FuncEnv`] that [`FuncEnvGuard`] installs for the duration of one load.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

/// Names of every function, for "did you mean" hints.
pub(crate) const NAMES: &[&str] = &[
    "concat",
    "env",
    "file",
    "format",
    "join",
    "jsonencode",
    "length",
    "lower",
    "max",
    "merge",
    "min",
    "pathexpand",
    "tonumber",
    "tostring",
    "upper",
];

/// What the impure functions may see during one load.
#[derive(Debug, Clone, Default)]
pub(crate) struct FuncEnv {
    /// Folder `file()` resolves relative paths against.
    pub dir: PathBuf,
    /// The injected environment (`env()`, and `HOME` for `pathexpand()`).
    pub env: BTreeMap<String, String>,
}

thread_local! {
    static FUNC_ENV: RefCell<Option<FuncEnv>> = const { RefCell::new(None) };
}

/// Installs a [`FuncEnv`] for this thread until dropped (restoring the previous one, so nested loads work).
pub(crate) struct FuncEnvGuard {
    previous: Option<FuncEnv>,
}

impl FuncEnvGuard {
    /// Makes `env` visible to the functions on this thread.
    pub fn install(env: FuncEnv) -> Self {
        let previous = FUNC_ENV.with(|c| c.replace(Some(env)));
        FuncEnvGuard { previous }
    }
}

impl Drop for FuncEnvGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        FUNC_ENV.with(|c| {
            c.replace(previous);
        });
    }
}

fn with_env<T>(f: impl FnOnce(&FuncEnv) -> Result<T, String>) -> Result<T, String> {
    FUNC_ENV.with(|c| match &*c.borrow() {
        Some(env) => f(env),
        None => Err("invariant: function environment not installed".into()),
    })
}

/// A context with every function declared and no variables.
pub(crate) fn context() -> Context<'static> {
    let mut ctx = Context::new();
    let s = ParamType::String;
    ctx.declare_func("file", FuncDef::builder().param(s.clone()).build(file));
    ctx.declare_func(
        "pathexpand",
        FuncDef::builder().param(s.clone()).build(pathexpand),
    );
    ctx.declare_func(
        "env",
        FuncDef::builder()
            .param(s.clone())
            .variadic_param(ParamType::Any)
            .build(env),
    );
    ctx.declare_func(
        "jsonencode",
        FuncDef::builder().param(ParamType::Any).build(jsonencode),
    );
    ctx.declare_func(
        "length",
        FuncDef::builder().param(ParamType::Any).build(length),
    );
    ctx.declare_func(
        "concat",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(concat),
    );
    ctx.declare_func(
        "merge",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(merge),
    );
    ctx.declare_func(
        "format",
        FuncDef::builder()
            .param(s.clone())
            .variadic_param(ParamType::Any)
            .build(format),
    );
    ctx.declare_func("lower", FuncDef::builder().param(s.clone()).build(lower));
    ctx.declare_func("upper", FuncDef::builder().param(s.clone()).build(upper));
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(s)
            .param(ParamType::Any)
            .build(join),
    );
    ctx.declare_func(
        "tostring",
        FuncDef::builder().param(ParamType::Any).build(tostring),
    );
    ctx.declare_func(
        "tonumber",
        FuncDef::builder().param(ParamType::Any).build(tonumber),
    );
    ctx.declare_func(
        "min",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(min),
    );
    ctx.declare_func(
        "max",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(max),
    );
    ctx
}

fn arg_str(args: &FuncArgs, i: usize) -> Result<&str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {} must be a string", i + 1))
}

/// Expands a leading `~` with `HOME` from the injected environment.
pub(crate) fn expand_home(path: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    if path == "~" || path.starts_with("~/") {
        let home = env
            .get("HOME")
            .ok_or("cannot expand `~`: HOME is not set")?;
        Ok(format!("{home}{}", &path[1..]))
    } else {
        Ok(path.to_string())
    }
}

fn file(args: FuncArgs) -> Result<Value, String> {
    let name = arg_str(&args, 0)?;
    with_env(|env| {
        let expanded = expand_home(name, &env.env)?;
        let p = Path::new(&expanded);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            env.dir.join(p)
        };
        let bytes = super::input::read_regular_file(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        String::from_utf8(bytes)
            .map(Value::String)
            .map_err(|_| format!("{} is not UTF-8 text", full.display()))
    })
}

fn pathexpand(args: FuncArgs) -> Result<Value, String> {
    let p = arg_str(&args, 0)?;
    with_env(|env| expand_home(p, &env.env).map(Value::String))
}

/// `env("NAME")` fails when unset; `env("NAME", default)` returns the default instead.
fn env(args: FuncArgs) -> Result<Value, String> {
    let name = arg_str(&args, 0)?;
    if args.len() > 2 {
        return Err("env takes a name and an optional default".into());
    }
    with_env(|env| match (env.env.get(name), args.get(1)) {
        (Some(v), _) => Ok(Value::String(v.clone())),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (give a default: env(\"{name}\", \"...\"))"
        )),
    })
}

fn length(args: FuncArgs) -> Result<Value, String> {
    match args.first() {
        Some(Value::String(s)) => Ok(Value::from(s.chars().count())),
        Some(Value::Array(a)) => Ok(Value::from(a.len())),
        Some(Value::Object(o)) => Ok(Value::from(o.len())),
        Some(other) => Err(format!(
            "length needs a string, list or map, got {}",
            type_name(other)
        )),
        None => Err("length needs one argument".into()),
    }
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        match a {
            Value::Array(items) => out.extend(items.iter().cloned()),
            other => {
                return Err(format!(
                    "concat argument {} must be a list, got {}",
                    i + 1,
                    type_name(other)
                ));
            }
        }
    }
    Ok(Value::Array(out))
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for (i, a) in args.iter().enumerate() {
        match a {
            Value::Object(o) => out.extend(o.iter().map(|(k, v)| (k.clone(), v.clone()))),
            Value::Null => {}
            other => {
                return Err(format!(
                    "merge argument {} must be a map, got {}",
                    i + 1,
                    type_name(other)
                ));
            }
        }
    }
    Ok(Value::Object(out))
}

/// `format("%s-%d", a, b)`: verbs `%s %v %d %f %q %t %%` as in Terraform (no widths).
fn format(args: FuncArgs) -> Result<Value, String> {
    let fmt = arg_str(&args, 0)?;
    let mut rest = args.iter().skip(1);
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("format string ends with a lone %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = rest
            .next()
            .ok_or_else(|| format!("not enough arguments for %{verb}"))?;
        match verb {
            's' | 'v' => out.push_str(&display(v)?),
            'd' => match v {
                Value::Number(n) if n.as_i64().is_some() || n.as_u64().is_some() => {
                    out.push_str(&n.to_string())
                }
                other => return Err(format!("%d needs a whole number, got {}", display(other)?)),
            },
            'f' => match v.as_number().and_then(Number::as_f64) {
                Some(f) => out.push_str(&f.to_string()),
                None => return Err(format!("%f needs a number, got {}", type_name(v))),
            },
            't' => match v {
                Value::Bool(b) => out.push_str(&b.to_string()),
                other => return Err(format!("%t needs a bool, got {}", type_name(other))),
            },
            'q' => out.push_str(&serde_json::to_string(&display(v)?).map_err(|e| e.to_string())?),
            other => {
                return Err(format!(
                    "unsupported format verb %{other}; use %s %v %d %f %q %t or %%"
                ));
            }
        }
    }
    if rest.next().is_some() {
        return Err("too many arguments for the format string".into());
    }
    Ok(Value::String(out))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(arg_str(&args, 0)?.to_lowercase()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(arg_str(&args, 0)?.to_uppercase()))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = arg_str(&args, 0)?;
    let Some(Value::Array(items)) = args.get(1) else {
        return Err("join needs a list as second argument".into());
    };
    let parts = items
        .iter()
        .map(scalar_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::String(parts.join(sep)))
}

/// `jsonencode(value)`: the value as JSON text, e.g. a service's `marathon_json` written in HCL.
fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    match args.first() {
        Some(v) => serde_json::to_string(v)
            .map(Value::String)
            .map_err(|e| format!("jsonencode: {e}")),
        None => Err("jsonencode needs one argument".into()),
    }
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    match args.first() {
        Some(v) => scalar_string(v).map(Value::String),
        None => Err("tostring needs one argument".into()),
    }
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match args.first() {
        Some(Value::Number(n)) => Ok(Value::Number(*n)),
        Some(Value::String(s)) => parse_number(s)
            .map(Value::Number)
            .ok_or_else(|| format!("\"{s}\" is not a number")),
        Some(other) => Err(format!("cannot convert {} to a number", type_name(other))),
        None => Err("tonumber needs one argument".into()),
    }
}

fn min(args: FuncArgs) -> Result<Value, String> {
    extreme(&args, |a, b| a < b)
}

fn max(args: FuncArgs) -> Result<Value, String> {
    extreme(&args, |a, b| a > b)
}

fn extreme(args: &FuncArgs, better: fn(f64, f64) -> bool) -> Result<Value, String> {
    let mut best: Option<(f64, Number)> = None;
    for v in args.iter() {
        let n = v
            .as_number()
            .ok_or_else(|| format!("needs numbers, got {}", type_name(v)))?;
        let f = n.as_f64().ok_or("number out of range")?;
        if best.as_ref().is_none_or(|(b, _)| better(f, *b)) {
            best = Some((f, *n));
        }
    }
    best.map(|(_, n)| Value::Number(n))
        .ok_or_else(|| "needs at least one number".into())
}

/// Parses a decimal integer or float as an HCL number.
pub(crate) fn parse_number(s: &str) -> Option<Number> {
    let t = s.trim();
    if let Ok(u) = t.parse::<u64>() {
        return Some(Number::from(u));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    // Rust accepts "inf" and "NaN"; HCL numbers are finite decimals only.
    if t.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return t.parse::<f64>().ok().and_then(Number::from_f64);
    }
    None
}

/// A primitive value as a string (the `tostring` conversion).
pub(crate) fn scalar_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("cannot convert {} to a string", type_name(other))),
    }
}

/// Any value as text: primitives as-is, collections as JSON.
fn display(v: &Value) -> Result<String, String> {
    match v {
        Value::Array(_) | Value::Object(_) | Value::Null => {
            serde_json::to_string(v).map_err(|e| e.to_string())
        }
        other => scalar_string(other),
    }
}

/// The HCL type name of a value, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Result<Value, String> {
        let mut env = BTreeMap::new();
        env.insert("HOME".to_string(), "/home/u".to_string());
        env.insert("REGION".to_string(), "r1".to_string());
        let _g = FuncEnvGuard::install(FuncEnv {
            dir: PathBuf::from("/nonexistent"),
            env,
        });
        let expr: hcl::Expression = src.parse().map_err(|e: hcl::Error| e.to_string())?;
        expr.evaluate(&context()).map_err(|e| e.to_string())
    }

    #[test]
    fn string_functions_work() {
        assert_eq!(eval(r#"upper("ab")"#), Ok(Value::from("AB")));
        assert_eq!(eval(r#"lower("AB")"#), Ok(Value::from("ab")));
        assert_eq!(
            eval(r#"join("-", ["a", 1, true])"#),
            Ok(Value::from("a-1-true"))
        );
        assert_eq!(
            eval(r#"format("%s-%d %q %%", "a", 3, "x")"#),
            Ok(Value::from("a-3 \"x\" %"))
        );
        assert_eq!(eval(r#"tostring(3)"#), Ok(Value::from("3")));
        assert_eq!(eval(r#"tonumber("4")"#), Ok(Value::from(4u64)));
    }

    #[test]
    fn collection_functions_work() {
        assert_eq!(eval(r#"length([1, 2, 3])"#), Ok(Value::from(3u64)));
        assert_eq!(eval(r#"length("héllo")"#), Ok(Value::from(5u64)));
        assert_eq!(
            eval(r#"length(concat([1], [2, 3]))"#),
            Ok(Value::from(3u64))
        );
        assert_eq!(
            eval(r#"merge({a = 1}, {a = 2, b = 3}).a"#),
            Ok(Value::from(2u64))
        );
        assert_eq!(eval("min(3, 1, 2)"), Ok(Value::from(1u64)));
        assert_eq!(eval("max(3, 1, 2.5)"), Ok(Value::from(3u64)));
    }

    #[test]
    fn env_and_pathexpand_read_the_injected_environment() {
        assert_eq!(eval(r#"env("REGION")"#), Ok(Value::from("r1")));
        assert_eq!(eval(r#"env("NOPE", "d")"#), Ok(Value::from("d")));
        assert!(eval(r#"env("NOPE")"#).is_err_and(|e| e.contains("NOPE is not set")));
        assert_eq!(
            eval(r#"pathexpand("~/.ssh/id")"#),
            Ok(Value::from("/home/u/.ssh/id"))
        );
    }

    #[test]
    fn file_reports_the_resolved_path() {
        let err = eval(r#"file("key.pub")"#).expect_err("missing file");
        assert!(err.contains("/nonexistent/key.pub"), "{err}");
    }

    #[test]
    fn bad_format_verbs_are_errors_not_panics() {
        assert!(eval(r#"format("%")"#).is_err());
        assert!(eval(r#"format("%d", "x")"#).is_err());
        assert!(eval(r#"format("%s")"#).is_err());
        assert!(eval(r#"format("%y", 1)"#).is_err());
    }
}
