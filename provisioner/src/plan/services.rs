//! `diff_services`: the definition's `service` blocks vs what dcform deployed (the state) and, when
//! the cluster answered, what it runs now -> one [`ServiceChange`] per app. Pure: no I/O, no clock.
//!
//! ```text
//! wanted (ClusterSpec.services) ─┐
//! recorded (State.services)     ─┼─> deploy | update (field by field, drift marked) | remove | no-op
//! live (GET /v2/apps, optional) ─┘
//! ```
//!
//! Definitions are compared with Marathon's semantics: both sides go through
//! `App::from_json(..).to_json()` (the parser and writer dccore uses), so a default the cluster
//! fills in (`"disk": 0`) is not a change, and numbers compare by value (`1` = `1.0`). Against the
//! live app only the fields of the (normalised) wanted definition count: what else the cluster
//! shows is not dcform's. Apps dcform did not deploy are never removed.

use std::collections::{BTreeMap, BTreeSet};

use dccore_api::marathon::{App, AppId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::{ServiceSpec, app_id_serde};
use crate::state::ServiceState;

/// The apps the cluster runs now, by id: `GET /v2/apps`' `apps[]` objects keyed by their `id`.
pub type LiveApps = BTreeMap<String, Map<String, Value>>;

/// What happens to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    /// PUT the definition: new to dcform, or gone from the cluster (`+`).
    Deploy,
    /// PUT the definition again (or PATCH `instances` when [`ServiceChange::scale_only`]) (`~`).
    Update,
    /// DELETE the app: dcform deployed it and the definition no longer has it (`-`).
    Remove,
    /// The cluster runs it as defined.
    NoOp,
}

impl ServiceAction {
    /// The Terraform-style symbol (as the node lines have them).
    pub fn symbol(self) -> &'static str {
        match self {
            ServiceAction::Deploy => "+",
            ServiceAction::Update => "~",
            ServiceAction::Remove => "-",
            ServiceAction::NoOp => " ",
        }
    }

    /// The verb of the plan line.
    pub fn verb(self) -> &'static str {
        match self {
            ServiceAction::Deploy => "deploy",
            ServiceAction::Update => "update",
            ServiceAction::Remove => "remove",
            ServiceAction::NoOp => "no-op",
        }
    }
}

/// The plan for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceChange {
    /// The app id.
    #[serde(with = "app_id_serde")]
    pub id: AppId,
    /// The `service "NAME"` block it comes from (`None` on removal: the block is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What happens.
    pub action: ServiceAction,
    /// Why, per field for an update (`instances 3 -> 5`, `cmd changed`, with
    /// `(changed outside dcform)` on drift); the reason of a deploy or removal otherwise.
    #[serde(default)]
    pub details: Vec<String>,
    /// An update where only `instances` differs: apply may scale (PATCH) instead of a full PUT.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_only: bool,
    /// Wanted instances (`None` on removal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// The definition to PUT and then record in the state (`None` on removal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Map<String, Value>>,
}

/// Plans the services: every wanted one in definition order, then the removals by id.
///
/// `live` is `None` when the cluster was not asked (not reachable, not applied yet): then only
/// the definition and the state are compared, and nothing is found removed or changed outside.
pub fn diff_services(
    wanted: &[ServiceSpec],
    recorded: &BTreeMap<String, ServiceState>,
    live: Option<&LiveApps>,
) -> Vec<ServiceChange> {
    let mut out = Vec::with_capacity(wanted.len() + recorded.len());
    for w in wanted {
        let rec = recorded.get(w.id.as_str());
        let on_cluster = live.map(|l| l.get(w.id.as_str()));
        let change = |action, details: Vec<String>, scale_only| ServiceChange {
            id: w.id.clone(),
            name: Some(w.name.clone()),
            action,
            details,
            scale_only,
            instances: Some(w.instances),
            definition: Some(w.definition.clone()),
        };
        out.push(match (rec, on_cluster) {
            (None, Some(Some(_))) => change(
                ServiceAction::Deploy,
                vec!["an app with this id, not deployed by dcform, is replaced".into()],
                false,
            ),
            (None, _) => change(ServiceAction::Deploy, vec![], false),
            (Some(_), Some(None)) => change(
                ServiceAction::Deploy,
                vec!["removed outside dcform".into()],
                false,
            ),
            (Some(r), on_cluster) => {
                let fields = changed_fields(&w.definition, &r.definition, on_cluster.flatten());
                if fields.is_empty() {
                    change(ServiceAction::NoOp, vec![], false)
                } else {
                    let scale_only = fields.iter().all(|f| f.key == "instances");
                    let details = fields.into_iter().map(|f| f.text).collect();
                    change(ServiceAction::Update, details, scale_only)
                }
            }
        });
    }
    let wanted_ids: BTreeSet<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
    for key in recorded.keys().filter(|k| !wanted_ids.contains(k.as_str())) {
        // A key no definition could have made (a hand-edited state) names no app dcform can
        // address; `app_id_serde` refuses such ids in plans, so it is left out here.
        let Ok(id) = AppId::parse(key) else {
            continue;
        };
        let gone = live.is_some_and(|l| !l.contains_key(id.as_str()));
        out.push(ServiceChange {
            id,
            name: None,
            action: ServiceAction::Remove,
            details: if gone {
                vec!["already gone from the cluster".into()]
            } else {
                vec![]
            },
            scale_only: false,
            instances: None,
            definition: None,
        });
    }
    out
}

/// One field that differs, and how to say it.
struct FieldChange {
    key: String,
    text: String,
}

/// The fields where the wanted definition differs from what dcform last put (`recorded`) or,
/// when known, from what the cluster runs (`live`). A field dcform did not change but the
/// cluster has otherwise is drift: `instances 5 -> 3 (changed outside dcform)`.
fn changed_fields(
    wanted: &Map<String, Value>,
    recorded: &Map<String, Value>,
    live: Option<&Map<String, Value>>,
) -> Vec<FieldChange> {
    let w = normalise(wanted);
    let r = normalise(recorded);
    let l = live.map(normalise);
    let mut keys: Vec<&String> = w
        .keys()
        .chain(r.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // `instances` first (what a plan reader looks for), then by name.
    keys.sort_by_key(|k| k.as_str() != "instances");
    let mut out = Vec::new();
    for key in keys.into_iter().filter(|k| k.as_str() != "id") {
        let want = w.get(key);
        let rec = r.get(key);
        let edited = !same(want, rec);
        // Only the fields the wanted definition has are dcform's to compare on the cluster.
        let drift = match (&l, want) {
            (Some(l), Some(_)) => !same(want, l.get(key)),
            _ => false,
        };
        if !edited && !drift {
            continue;
        }
        // "From" is what runs now when the cluster said, else what dcform last put.
        let from = match &l {
            Some(l) if drift => l.get(key),
            _ => rec,
        };
        let mut text = describe(key, from, want);
        if drift && !edited {
            text.push_str(" (changed outside dcform)");
        }
        out.push(FieldChange {
            key: key.clone(),
            text,
        });
    }
    out
}

/// `instances 3 -> 5` for numbers and booleans; `cmd changed` for the rest (commands, maps and
/// lists are too long for a plan line).
fn describe(key: &str, from: Option<&Value>, to: Option<&Value>) -> String {
    let scalar = |v: Option<&Value>| match v {
        None | Some(Value::Null) => Some("(unset)".to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => None,
    };
    let is_scalar = |v: Option<&Value>| matches!(v, Some(Value::Number(_) | Value::Bool(_)));
    match (scalar(from), scalar(to)) {
        (Some(a), Some(b)) if is_scalar(from) || is_scalar(to) => format!("{key} {a} -> {b}"),
        _ => format!("{key} changed"),
    }
}

/// The definition as the cluster shows it: parsed and written back by dccore's own code, so that
/// defaults are filled in the same way on both sides. A definition the parser refuses (which a
/// validated spec never is; a live app could be) is compared as it is.
fn normalise(def: &Map<String, Value>) -> Map<String, Value> {
    match App::from_json(Value::Object(def.clone()), None) {
        Ok(app) => app.to_json(),
        Err(_) => def.clone(),
    }
}

/// JSON equality with numbers compared by value (`1` = `1.0`); absent = `null`.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let null = Value::Null;
    json_eq(a.unwrap_or(&null), b.unwrap_or(&null))
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}
