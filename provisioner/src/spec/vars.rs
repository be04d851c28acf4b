//! Variables: `variable "x" { default, type, description }` declarations and the values given to them.
//!
//! # Precedence
//!
//! Like Terraform, later sources win:
//!
//! 1. `default` in the `variable` block (lowest),
//! 2. environment variables `DCFORM_VAR_<name>`,
//! 3. `*.auto.hcl` files in the definition folder, in alphabetical order,
//! 4. `-var-file FILE` files, in command-line order,
//! 5. `-var NAME=VALUE`, in command-line order (highest).
//!
//! Values from files are HCL expressions. Values from the environment and `-var` are text: for a variable
//! of type `string` they are taken as-is; for `list(...)`/`map(...)` they must be HCL expressions; otherwise
//! text that looks like a number, a bool, a list or a map is parsed as HCL and anything else is a string.
//! Every value is then converted to the declared type (`"3"` -> `3` for `number`, `true` -> `"true"` for
//! `string`), Terraform's rule for typed variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::edit::expr::Expression;
use hcl::{Map, Value};

use super::error::{Diagnostic, Diags, name_hint};
use super::eval::Evaluator;
use super::funcs::{parse_number, scalar_string, type_name};
use super::raw::{Loc, RawBlock, Sources, parse_file};

/// Prefix of environment variables that set definition variables.
pub const ENV_PREFIX: &str = "DCFORM_VAR_";

/// A declared variable type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VarType {
    Any,
    String,
    Number,
    Bool,
    List(Box<VarType>),
    Map(Box<VarType>),
}

impl VarType {
    fn name(&self) -> String {
        match self {
            VarType::Any => "any".into(),
            VarType::String => "string".into(),
            VarType::Number => "number".into(),
            VarType::Bool => "bool".into(),
            VarType::List(t) => format!("list({})", t.name()),
            VarType::Map(t) => format!("map({})", t.name()),
        }
    }

    fn is_collection(&self) -> bool {
        matches!(self, VarType::List(_) | VarType::Map(_))
    }
}

const TYPE_NAMES: &[&str] = &[
    "string",
    "number",
    "bool",
    "any",
    "list(TYPE)",
    "set(TYPE)",
    "map(TYPE)",
];
const VARIABLE_ATTRS: &[&str] = &["default", "type", "description"];

/// One `variable` block.
#[derive(Debug, Clone)]
pub(crate) struct VarDecl {
    pub name: String,
    pub loc: Loc,
    pub ty: VarType,
    pub default: Option<Value>,
    /// The declaration itself had errors: do not also report "has no value" for it.
    pub broken: bool,
}

/// Reads `variable` blocks. Errors go to `diags`; a broken declaration is still declared (as `any`
/// without default) so that references to it do not cascade into "undeclared" errors.
pub(crate) fn declare(sources: &Sources, blocks: &[&RawBlock], diags: &mut Diags) -> Vec<VarDecl> {
    let ev = Evaluator::without_vars();
    let mut decls: Vec<VarDecl> = Vec::new();
    for b in blocks {
        let Some(label) = b.labels.first() else {
            diags.error(sources.diag(
                &b.ident_loc,
                "variable block needs a name",
                "write: variable \"name\" { default = ... }",
            ));
            continue;
        };
        if b.labels.len() > 1 {
            diags.error(sources.diag(
                &b.labels[1].loc,
                "variable block takes one name",
                "write: variable \"name\" { ... }",
            ));
        }
        let name = label.name.clone();
        if !is_identifier(&name) {
            diags.error(sources.diag(
                &label.loc,
                format!("invalid variable name \"{name}\""),
                "a name starts with a letter and holds letters, digits, `_` and `-`",
            ));
        }
        if let Some(prev) = decls.iter().find(|d| d.name == name) {
            let (l, c) = sources.line_col(prev.loc.file, prev.loc.span.start);
            diags.error(sources.diag(
                &label.loc,
                format!("variable \"{name}\" is declared twice"),
                format!("first declared at line {l}:{c}; remove one"),
            ));
            continue;
        }
        for blk in &b.body.blocks {
            diags.error(sources.diag(
                &blk.ident_loc,
                format!("unexpected block \"{}\" in variable \"{name}\"", blk.ident),
                format!("valid attributes: {}", VARIABLE_ATTRS.join(", ")),
            ));
        }
        check_duplicate_attrs(
            sources,
            &b.body.attrs,
            &format!("variable \"{name}\""),
            diags,
        );
        let errors_before = diags.errors.len();
        let mut ty = VarType::Any;
        let mut default = None;
        for a in &b.body.attrs {
            match a.key.as_str() {
                "type" => match parse_type(&a.value) {
                    Ok(t) => ty = t,
                    Err(shown) => diags.error(sources.diag(
                        &a.value_loc,
                        format!("unknown type `{shown}` for variable \"{name}\""),
                        format!("valid types: {}", TYPE_NAMES.join(", ")),
                    )),
                },
                "default" => match ev.eval(sources, &a.value, &a.value_loc) {
                    // `default = null` means "no default", as in Terraform.
                    Ok(Value::Null) => {}
                    Ok(v) => default = Some((v, a.value_loc.clone())),
                    Err(ds) => diags.errors(ds),
                },
                "description" => {}
                other => diags.error(sources.diag(
                    &a.key_loc,
                    format!("unknown attribute \"{other}\" in variable \"{name}\""),
                    name_hint(other, "attributes", VARIABLE_ATTRS),
                )),
            }
        }
        // The default is checked against the type once the type is known (it may come later in the block).
        let default = default.and_then(|(v, loc)| match convert(&v, &ty) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.error(sources.diag(
                    &loc,
                    format!("default of variable \"{name}\": {e}"),
                    format!("give a {} value", ty.name()),
                ));
                None
            }
        });
        let broken = diags.errors.len() > errors_before;
        decls.push(VarDecl {
            name,
            loc: label.loc.clone(),
            ty,
            default,
            broken,
        });
    }
    decls
}

/// Reports an attribute set twice in the same body.
pub(crate) fn check_duplicate_attrs(
    sources: &Sources,
    attrs: &[super::raw::RawAttr],
    what: &str,
    diags: &mut Diags,
) {
    for (i, a) in attrs.iter().enumerate() {
        if let Some(prev) = attrs[..i].iter().find(|p| p.key == a.key) {
            let (l, _) = sources.line_col(prev.key_loc.file, prev.key_loc.span.start);
            diags.error(sources.diag(
                &a.key_loc,
                format!("attribute \"{}\" is set twice in {what}", a.key),
                format!("first set on line {l}; keep one"),
            ));
        }
    }
}

/// Whether `s` is an HCL identifier (what `var.NAME` can reference).
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses a type expression: `string`, `number`, `bool`, `any`, `list(T)`, `set(T)`, `map(T)`, and the
/// old quoted forms `"string"`, `"list"`, `"map"`. `object(...)`/`tuple(...)` are accepted as `map(any)`
/// and `list(any)`: the definition's own checks give the precise messages.
fn parse_type(e: &Expression) -> Result<VarType, String> {
    let shown = || e.to_string().trim().to_string();
    match e {
        Expression::Variable(v) => match v.as_str() {
            "string" => Ok(VarType::String),
            "number" => Ok(VarType::Number),
            "bool" => Ok(VarType::Bool),
            "any" => Ok(VarType::Any),
            _ => Err(shown()),
        },
        Expression::String(s) => match s.as_str() {
            "string" => Ok(VarType::String),
            "list" => Ok(VarType::List(Box::new(VarType::Any))),
            "map" => Ok(VarType::Map(Box::new(VarType::Any))),
            _ => Err(shown()),
        },
        Expression::FuncCall(f) if f.name.namespace.is_empty() => {
            let args: Vec<&Expression> = f.args.iter().collect();
            let inner = || match args.as_slice() {
                [one] => parse_type(one),
                _ => Err(shown()),
            };
            match f.name.name.as_str() {
                "list" | "set" => Ok(VarType::List(Box::new(inner()?))),
                "map" => Ok(VarType::Map(Box::new(inner()?))),
                "object" => Ok(VarType::Map(Box::new(VarType::Any))),
                "tuple" => Ok(VarType::List(Box::new(VarType::Any))),
                _ => Err(shown()),
            }
        }
        _ => Err(shown()),
    }
}

/// Converts `v` to type `ty`, Terraform style.
pub(crate) fn convert(v: &Value, ty: &VarType) -> Result<Value, String> {
    let bad = || {
        Err(format!(
            "expected {}, got {} {}",
            ty.name(),
            type_name(v),
            quote(v)
        ))
    };
    match (ty, v) {
        (VarType::Any, _) => Ok(v.clone()),
        (VarType::String, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            scalar_string(v).map(Value::String)
        }
        (VarType::Number, Value::Number(_)) => Ok(v.clone()),
        (VarType::Number, Value::String(s)) => {
            parse_number(s).map(Value::Number).map_or_else(bad, Ok)
        }
        (VarType::Bool, Value::Bool(_)) => Ok(v.clone()),
        (VarType::Bool, Value::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (VarType::List(t), Value::Array(items)) => items
            .iter()
            .map(|i| convert(i, t))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (VarType::Map(t), Value::Object(o)) => o
            .iter()
            .map(|(k, i)| convert(i, t).map(|c| (k.clone(), c)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        _ => bad(),
    }
}

fn quote(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(37).collect::<String>())
    } else {
        s
    }
}

/// Where a value came from, to place conversion errors.
enum Origin {
    Default,
    Place(Loc),
    Outside(PathBuf),
}

/// Applies every value source to the declarations (see the module doc for the precedence) and returns
/// the final `var` object. Missing values and bad values are reported in `diags`.
pub(crate) fn resolve(
    sources: &mut Sources,
    decls: &[VarDecl],
    opts: &super::LoadOptions,
    auto_files: &[PathBuf],
    diags: &mut Diags,
) -> Map<String, Value> {
    let declared: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    let mut values: BTreeMap<String, (Value, Origin)> = BTreeMap::new();
    for d in decls {
        if let Some(v) = &d.default {
            values.insert(d.name.clone(), (v.clone(), Origin::Default));
        }
    }
    let ty_of = |name: &str| decls.iter().find(|d| d.name == name).map(|d| d.ty.clone());

    // 2. Environment: undeclared names are ignored, as Terraform does with TF_VAR_*, because the
    // environment is shared with unrelated definitions.
    for (k, raw) in &opts.env {
        let Some(name) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some(ty) = ty_of(name) else { continue };
        let origin = PathBuf::from(format!("<env {k}>"));
        match parse_text(raw, &ty) {
            Ok(v) => {
                values.insert(name.to_string(), (v, Origin::Outside(origin)));
            }
            Err(e) => diags.error(Diagnostic::unplaced(
                origin,
                format!("variable \"{name}\": {e}"),
                format!("give a {} value", ty.name()),
            )),
        }
    }

    // 3. and 4. Value files.
    let files: Vec<(&Path, bool)> = auto_files
        .iter()
        .map(|p| (p.as_path(), true))
        .chain(opts.var_files.iter().map(|p| (p.as_path(), false)))
        .collect();
    for (path, _auto) in files {
        let text = match super::input::read_regular_file(path) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(_) => {
                    diags.error(Diagnostic::unplaced(
                        path,
                        "variable file is not UTF-8 text",
                        "",
                    ));
                    continue;
                }
            },
            Err(e) => {
                diags.error(Diagnostic::unplaced(
                    path,
                    format!("cannot read variable file: {e}"),
                    "",
                ));
                continue;
            }
        };
        let file = sources.add(path.to_path_buf(), text);
        let body = match parse_file(sources, file) {
            Ok(b) => b,
            Err(d) => {
                diags.error(d);
                continue;
            }
        };
        for b in &body.blocks {
            diags.error(sources.diag(&b.ident_loc, format!("unexpected block \"{}\" in a variable file", b.ident), "variable files hold only `name = value` lines; declare variables in the definition"));
        }
        check_duplicate_attrs(sources, &body.attrs, "this variable file", diags);
        let ev = Evaluator::without_vars();
        for a in &body.attrs {
            if ty_of(&a.key).is_none() {
                // Terraform warns (not fails) on unknown names in value files: one file may serve
                // several definitions.
                diags.warn(sources.diag(
                    &a.key_loc,
                    format!("value for undeclared variable \"{}\" is ignored", a.key),
                    name_hint(&a.key, "variables", &declared),
                ));
                continue;
            }
            match ev.eval(sources, &a.value, &a.value_loc) {
                Ok(v) => {
                    values.insert(a.key.clone(), (v, Origin::Place(a.value_loc.clone())));
                }
                Err(ds) => diags.errors(ds),
            }
        }
    }

    // 5. -var, in order.
    for (name, raw) in &opts.vars {
        let origin = PathBuf::from(format!("<command line -var {name}=...>"));
        let Some(ty) = ty_of(name) else {
            let hint = if declared.is_empty() {
                "this definition declares no variables".to_string()
            } else {
                name_hint(name, "variables", &declared)
            };
            diags.error(Diagnostic::unplaced(
                origin,
                format!("-var sets undeclared variable \"{name}\""),
                hint,
            ));
            continue;
        };
        match parse_text(raw, &ty) {
            Ok(v) => {
                values.insert(name.clone(), (v, Origin::Outside(origin)));
            }
            Err(e) => diags.error(Diagnostic::unplaced(
                origin,
                format!("variable \"{name}\": {e}"),
                format!("give a {} value", ty.name()),
            )),
        }
    }

    let mut out = Map::new();
    for d in decls {
        match values.remove(&d.name) {
            None if d.broken => {
                out.insert(d.name.clone(), Value::Null);
            }
            None => {
                diags.error(sources.diag(
                    &d.loc,
                    format!("variable \"{}\" has no value", d.name),
                    format!(
                        "set it with -var {n}=VALUE, -var-file FILE, {ENV_PREFIX}{n}=VALUE in the environment, a *.auto.hcl file, or a default in the variable block",
                        n = d.name
                    ),
                ));
                // Declared anyway so that uses do not also report "undeclared".
                out.insert(d.name.clone(), Value::Null);
            }
            Some((v, origin)) => match convert(&v, &d.ty) {
                Ok(c) => {
                    out.insert(d.name.clone(), c);
                }
                Err(e) => {
                    let msg = format!("variable \"{}\": {e}", d.name);
                    let hint = format!("give a {} value", d.ty.name());
                    diags.error(match origin {
                        Origin::Default => sources.diag(&d.loc, msg, hint),
                        Origin::Place(loc) => sources.diag(&loc, msg, hint),
                        Origin::Outside(p) => Diagnostic::unplaced(p, msg, hint),
                    });
                    out.insert(d.name.clone(), Value::Null);
                }
            },
        }
    }
    out
}

/// Parses a value given as text (`-var`, environment) for a variable of type `ty`.
fn parse_text(raw: &str, ty: &VarType) -> Result<Value, String> {
    if *ty == VarType::String {
        return Ok(Value::String(raw.to_string()));
    }
    let t = raw.trim();
    let looks_like_hcl = t.starts_with('[')
        || t.starts_with('{')
        || t == "true"
        || t == "false"
        || parse_number(t).is_some();
    if looks_like_hcl || ty.is_collection() {
        let parsed = hcl::edit::parser::parse_expr(t).ok().and_then(|e| {
            let mut sources = Sources::default();
            let file = sources.add(PathBuf::from("<value>"), t.to_string());
            let loc = Loc {
                file,
                span: 0..t.len(),
            };
            Evaluator::without_vars().eval(&sources, &e, &loc).ok()
        });
        match parsed {
            Some(v) => return Ok(v),
            None if ty.is_collection() => {
                return Err(format!("`{t}` is not a valid HCL {} value", ty.name()));
            }
            None => {}
        }
    }
    Ok(Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_follow_the_declared_type() {
        assert_eq!(parse_text("3", &VarType::Any), Ok(Value::from(3u64)));
        assert_eq!(parse_text("3", &VarType::String), Ok(Value::from("3")));
        assert_eq!(parse_text("true", &VarType::Any), Ok(Value::Bool(true)));
        assert_eq!(parse_text("hello", &VarType::Any), Ok(Value::from("hello")));
        assert_eq!(
            parse_text("[1, 2]", &VarType::List(Box::new(VarType::Number))),
            Ok(Value::Array(vec![Value::from(1u64), Value::from(2u64)]))
        );
        assert!(parse_text("nope", &VarType::List(Box::new(VarType::Any))).is_err());
    }

    #[test]
    fn conversion_is_terraform_like() {
        assert_eq!(
            convert(&Value::from("4"), &VarType::Number),
            Ok(Value::from(4u64))
        );
        assert_eq!(
            convert(&Value::from(4u64), &VarType::String),
            Ok(Value::from("4"))
        );
        assert_eq!(
            convert(&Value::from("true"), &VarType::Bool),
            Ok(Value::Bool(true))
        );
        let err = convert(&Value::from("four"), &VarType::Number).expect_err("not a number");
        assert!(
            err.contains("expected number, got string \"four\""),
            "{err}"
        );
    }

    #[test]
    fn type_expressions_parse() {
        let t = |s: &str| parse_type(&hcl::edit::parser::parse_expr(s).expect("expr"));
        assert_eq!(t("number"), Ok(VarType::Number));
        assert_eq!(
            t("list(string)"),
            Ok(VarType::List(Box::new(VarType::String)))
        );
        assert_eq!(
            t("map(number)"),
            Ok(VarType::Map(Box::new(VarType::Number)))
        );
        assert!(t("integer").is_err());
    }
}
