//! `service "NAME" { ... }` blocks: a Marathon app, written either as HCL attributes in snake_case
//! (mapped to Marathon's camelCase JSON) or as `marathon_json = file("web.json")`.
//!
//! Either way the resulting JSON goes through `dccore_api::marathon::App::from_json`, the parser the
//! master's `/v2/apps` uses: a definition that validates here is one the cluster accepts, and each
//! of the parser's field errors becomes a diagnostic at the attribute it came from.

use dccore_api::marathon::{App, AppId, FieldError};
use hcl::edit::expr::Expression;
use serde_json::{Map, Value as Json};

use super::super::funcs::type_name;
use super::super::model::ServiceSpec;
use super::super::raw::{Loc, RawAttr, RawBlock};
use super::Validator;

/// The attribute that holds a whole Marathon app definition as JSON text.
const MARATHON_JSON: &str = "marathon_json";

/// Every attribute of a service block: `marathon_json`, or the HCL form's Marathon fields.
pub(super) const SERVICE_ATTRS: &[&str] = &[
    MARATHON_JSON,
    "id",
    "cmd",
    "args",
    "instances",
    "cpus",
    "mem",
    "disk",
    "env",
    "port_definitions",
    "constraints",
    "accepted_resource_roles",
    "health_checks",
    "upgrade_strategy",
    "backoff_seconds",
    "backoff_factor",
    "max_launch_delay_seconds",
    "labels",
    "user",
];

/// Keys of one `port_definitions` entry.
const PORT_KEYS: &[&str] = &["port", "name", "protocol", "labels"];
/// Keys of one `health_checks` entry.
const HEALTH_CHECK_KEYS: &[&str] = &[
    "protocol",
    "path",
    "port_index",
    "port",
    "command",
    "grace_period_seconds",
    "interval_seconds",
    "timeout_seconds",
    "max_consecutive_failures",
];
/// Keys of `upgrade_strategy`.
const UPGRADE_KEYS: &[&str] = &["minimum_health_capacity", "maximum_over_capacity"];

/// `max_launch_delay_seconds` -> `maxLaunchDelaySeconds`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `portIndex` -> `port_index`.
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON pointer of the parser (`/healthChecks/0/portIndex`) in the HCL form's words
/// (`health_checks[0].port_index`). Keys under `env` and `labels` are the user's own: kept as they are.
fn hcl_path(pointer: &str) -> String {
    let mut out = String::new();
    let mut user_keys = false;
    for (i, seg) in pointer.trim_start_matches('/').split('/').enumerate() {
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
            continue;
        }
        let name = if user_keys {
            seg.to_string()
        } else {
            snake(seg)
        };
        if i > 0 {
            out.push('.');
        }
        out.push_str(&name);
        user_keys = matches!(seg, "env" | "labels");
    }
    out
}

/// The string argument of `file("...")`, when that is what the expression is: JSON errors then
/// name the file they are in.
fn file_argument(expr: &Expression) -> Option<String> {
    let Expression::FuncCall(f) = expr else {
        return None;
    };
    if f.name.name.as_str() != "file" || !f.name.namespace.is_empty() {
        return None;
    }
    match f.args.iter().next() {
        Some(Expression::String(s)) => Some(s.value().to_string()),
        _ => None,
    }
}

/// serde_json's message without its trailing ` at line L column C` (we say where ourselves).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

impl Validator<'_> {
    /// One `service` block. `None` when it is not valid (the reasons are in `diags`).
    pub(super) fn service(&mut self, b: &RawBlock) -> Option<(ServiceSpec, Loc)> {
        let label = self.single_label(b, "service", "service \"web\" { cmd = \"...\" }")?;
        let what = format!("service \"{}\"", label.name);
        self.check_body(&b.body, &what, SERVICE_ATTRS, &[]);
        let json_attr = b.body.attr(MARATHON_JSON);
        if json_attr.is_some() {
            for a in b
                .body
                .attrs
                .iter()
                .filter(|a| a.key != MARATHON_JSON && SERVICE_ATTRS.contains(&a.key.as_str()))
            {
                self.err(
                    &a.key_loc,
                    format!(
                        "{what}: marathon_json holds the whole app definition; \"{}\" cannot be set beside it",
                        a.key
                    ),
                    format!(
                        "move it into the JSON (as \"{}\"), or drop marathon_json and write the app as HCL attributes",
                        camel(&a.key)
                    ),
                );
            }
        }
        let (mut object, origin) = match json_attr {
            Some(a) => (self.marathon_json(a, &what)?, Origin::Json(a)),
            None => (self.hcl_app(b, &what)?, Origin::Hcl(b)),
        };
        // The id from the name, unless the definition gives one (the parser checks that one).
        if object.get("id").is_none_or(Json::is_null) {
            match AppId::parse(&label.name) {
                Ok(id) => {
                    object.insert("id".into(), Json::String(id.to_string()));
                }
                Err(reason) => {
                    self.err(
                        &label.loc,
                        format!(
                            "{what}: without an id the name is the app id, and \"{}\" is not one: {reason}",
                            label.name
                        ),
                        "set id = \"/prod/web\", or name the service with lowercase letters, digits, '-' and '.'",
                    );
                    return None;
                }
            }
        }
        match App::from_json(Json::Object(object), None) {
            Ok(app) => Some((
                ServiceSpec {
                    name: label.name.clone(),
                    id: app.id,
                    instances: app.instances,
                    definition: app.raw,
                },
                label.loc,
            )),
            Err(e) => {
                for fe in e.0 {
                    self.field_error(&what, &origin, &label.loc, &fe);
                }
                None
            }
        }
    }

    /// A field error of the Marathon parser, placed at the attribute it is about.
    fn field_error(&mut self, what: &str, origin: &Origin<'_>, label: &Loc, fe: &FieldError) {
        match origin {
            Origin::Json(a) => self.err(
                &a.key_loc,
                format!("{what}: marathon_json {}: {}", fe.path, fe.error),
                "the definition is checked as dccore's /v2/apps checks it (Marathon's app JSON)",
            ),
            Origin::Hcl(b) => {
                let path = hcl_path(&fe.path);
                let top = path
                    .split(['.', '['])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                // `ports` is the parser's legacy name of `portDefinitions`.
                let top = if top == "ports" {
                    "port_definitions".to_string()
                } else {
                    top
                };
                let (loc, hint) = match b.body.attr(&top) {
                    Some(a) => (a.value_loc.clone(), String::new()),
                    // A field that is missing (`cmd` is required): the block is where to add it.
                    None => (
                        label.clone(),
                        format!("add {top} = ... to the service block"),
                    ),
                };
                let path = if path.is_empty() {
                    "definition".to_string()
                } else {
                    path
                };
                self.err(&loc, format!("{what}: {path}: {}", fe.error), hint);
            }
        }
    }

    /// `marathon_json = "..."`: the text parsed as a JSON object.
    fn marathon_json(&mut self, a: &RawAttr, what: &str) -> Option<Map<String, Json>> {
        let errors = self.diags.errors.len();
        let Some(v) = self.value(a) else {
            if self.diags.errors.len() == errors {
                self.err(
                    &a.value_loc,
                    format!("{what}: marathon_json is null"),
                    "write: marathon_json = file(\"web.json\"), or remove it and write the app as HCL attributes",
                );
            }
            return None;
        };
        let hcl::Value::String(text) = v else {
            self.err(
                &a.value_loc,
                format!(
                    "{what}: marathon_json must be a string of JSON, got {}",
                    type_name(&v)
                ),
                "write: marathon_json = file(\"web.json\"), or the app as HCL attributes (cmd = ..., instances = ...)",
            );
            return None;
        };
        match serde_json::from_str::<Json>(&text) {
            Ok(Json::Object(o)) => Some(o),
            Ok(other) => {
                let kind = match other {
                    Json::Array(_) => "an array",
                    Json::String(_) => "a string",
                    Json::Number(_) => "a number",
                    Json::Bool(_) => "a boolean",
                    _ => "null",
                };
                self.err(
                    &a.key_loc,
                    format!("{what}: marathon_json must be a JSON object (one app), got {kind}"),
                    "e.g. {\"cmd\": \"python3 -m http.server $PORT0\", \"instances\": 2}",
                );
                None
            }
            Err(e) => {
                let place = match file_argument(&a.value) {
                    Some(f) => format!("{f}:{}:{}", e.line(), e.column()),
                    None => format!("line {}, column {}", e.line(), e.column()),
                };
                self.err(
                    &a.key_loc,
                    format!(
                        "{what}: marathon_json is not valid JSON: {place}: {}",
                        json_message(&e)
                    ),
                    "the value must be one Marathon app definition as a JSON object",
                );
                None
            }
        }
    }

    /// The HCL form: each attribute to its Marathon field. Types are left to the Marathon parser
    /// (one set of rules); only the names are checked here, nested ones included.
    fn hcl_app(&mut self, b: &RawBlock, what: &str) -> Option<Map<String, Json>> {
        let mut out = Map::new();
        let errors = self.diags.errors.len();
        let mut ok = true;
        for a in &b.body.attrs {
            if !SERVICE_ATTRS.contains(&a.key.as_str()) {
                continue; // reported by check_body
            }
            let Some(v) = self.value(a) else {
                continue; // null: not set (or an evaluation error, counted below)
            };
            let Ok(mut j) = serde_json::to_value(&v) else {
                ok = false;
                continue;
            };
            let fixed = match a.key.as_str() {
                "port_definitions" => self.rename_entries(a, what, &mut j, PORT_KEYS, false),
                "health_checks" => self.rename_entries(a, what, &mut j, HEALTH_CHECK_KEYS, true),
                "upgrade_strategy" => match &mut j {
                    Json::Object(o) => {
                        self.rename_keys(a, what, "upgrade_strategy", o, UPGRADE_KEYS)
                    }
                    _ => true, // the parser says what it must be
                },
                _ => true,
            };
            ok &= fixed;
            out.insert(camel(&a.key), j);
        }
        // A value that did not evaluate would only add the parser's "is required" beside its error.
        (ok && self.diags.errors.len() == errors).then_some(out)
    }

    /// Renames the keys of each object in the list `j` (a list of port definitions or health
    /// checks); `command` of a health check may be written as a plain string.
    fn rename_entries(
        &mut self,
        a: &RawAttr,
        what: &str,
        j: &mut Json,
        keys: &[&str],
        health: bool,
    ) -> bool {
        let Json::Array(items) = j else {
            return true;
        };
        let mut ok = true;
        for (i, item) in items.iter_mut().enumerate() {
            if let Json::Object(o) = item {
                ok &= self.rename_keys(a, what, &format!("{}[{i}]", a.key), o, keys);
                if health && let Some(c @ Json::String(_)) = o.get_mut("command") {
                    *c = serde_json::json!({ "value": c.take() });
                }
            }
        }
        ok
    }

    /// snake_case keys of `o` to camelCase; an unknown key is an error naming the valid ones.
    fn rename_keys(
        &mut self,
        a: &RawAttr,
        what: &str,
        place: &str,
        o: &mut Map<String, Json>,
        keys: &[&str],
    ) -> bool {
        let mut ok = true;
        let old = std::mem::take(o);
        for (k, v) in old {
            if !keys.contains(&k.as_str()) {
                self.err(
                    &a.value_loc,
                    format!("{what}: unknown key \"{k}\" in {place}"),
                    super::super::error::name_hint(&k, "keys", keys),
                );
                ok = false;
                continue;
            }
            o.insert(camel(&k), v);
        }
        ok
    }
}

/// Where a service's JSON came from, to place the parser's errors.
enum Origin<'a> {
    /// `marathon_json = ...`: errors at that attribute, with the JSON pointer.
    Json(&'a RawAttr),
    /// HCL attributes: errors at the attribute the pointer names.
    Hcl(&'a RawBlock),
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod loader_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_between_hcl_and_marathon() {
        assert_eq!(camel("max_launch_delay_seconds"), "maxLaunchDelaySeconds");
        assert_eq!(camel("cpus"), "cpus");
        assert_eq!(snake("acceptedResourceRoles"), "accepted_resource_roles");
        assert_eq!(
            hcl_path("/healthChecks/0/portIndex"),
            "health_checks[0].port_index"
        );
        assert_eq!(hcl_path("/env/MY_VAR"), "env.MY_VAR");
        assert_eq!(hcl_path("/constraints/1/2"), "constraints[1][2]");
        assert_eq!(hcl_path("/"), "");
    }
}
