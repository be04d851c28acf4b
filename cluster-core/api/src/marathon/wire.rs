//! Reading an app definition from JSON (every bad field collected, Marathon's 422 shape) and
//! writing it back as Marathon answers it.

use super::{
    App, AppError, AppId, Constraint, FieldError, HealthCheck, LaunchDelay, Operator, PortDef,
    Protocol,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Collects field errors while reading a JSON object.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Reader<'_> {
    fn err(&mut self, path: impl Into<String>, error: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            error: error.into(),
        });
    }

    fn number(&mut self, key: &str, default: f64, min: f64) -> f64 {
        match self.obj.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() && v >= min => v,
                _ => {
                    self.err(format!("/{key}"), format!("must be a number >= {min}"));
                    default
                }
            },
            Some(_) => {
                self.err(format!("/{key}"), format!("must be a number >= {min}"));
                default
            }
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(format!("/{key}"), "must be a string");
                None
            }
        }
    }
}

/// Reads `obj` (a JSON object) as number at `path`, or records an error.
fn num_in(
    r: &mut Reader<'_>,
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    default: f64,
) -> f64 {
    match obj.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => x,
            _ => {
                r.err(format!("{path}/{key}"), "must be a number >= 0");
                default
            }
        },
    }
}

impl App {
    /// Parses and validates a definition. `id_from_path` is the id of the URL (PUT/PATCH), used
    /// when the body has none and checked against the body's otherwise.
    pub fn from_json(value: Value, id_from_path: Option<&AppId>) -> Result<App, AppError> {
        let Value::Object(mut raw) = value else {
            return Err(AppError(vec![FieldError {
                path: "/".into(),
                error: "an app definition must be a JSON object".into(),
            }]));
        };
        // Read-only fields of an answer a client sends back (GET then PUT) are not part of the definition.
        for k in [
            "version",
            "versionInfo",
            "tasksRunning",
            "tasksStaged",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "tasks",
            "lastTaskFailure",
        ] {
            raw.remove(k);
        }
        let mut r = Reader {
            obj: &raw,
            errors: Vec::new(),
        };
        let id = match (r.string("id"), id_from_path) {
            (Some(s), from_path) => match AppId::parse(&s) {
                Ok(id) => {
                    if let Some(p) = from_path.filter(|p| **p != id) {
                        r.err("/id", format!("is {id} but the URL names {p}"));
                    }
                    Some(id)
                }
                Err(e) => {
                    r.err("/id", e);
                    None
                }
            },
            (None, Some(p)) => Some(p.clone()),
            (None, None) => {
                r.err("/id", "is required, e.g. \"/prod/web\"");
                None
            }
        };
        let cmd = r.string("cmd");
        let args: Vec<String> = match raw.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                r.err("/args", "must be an array of strings");
                Vec::new()
            }
        };
        match (&cmd, args.is_empty()) {
            (Some(_), false) => r.err("/cmd", "give either cmd or args, not both"),
            (None, true) => r.err("/cmd", "is required (or args): what the instances run"),
            _ => {}
        }
        let instances = r.number("instances", 1.0, 0.0);
        if instances.fract() != 0.0 || instances > 100_000.0 {
            r.err("/instances", "must be a whole number between 0 and 100000");
        }
        let cpus = r.number("cpus", 1.0, 0.0);
        let mem = r.number("mem", 128.0, 0.0);
        let disk = r.number("disk", 0.0, 0.0);
        if cpus < 0.001 && mem < 1.0 {
            r.err("/cpus", "an instance needs some cpus or mem");
        }
        let mut env = BTreeMap::new();
        match raw.get("env") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    match v.as_str() {
                        Some(s) => {
                            env.insert(k.clone(), s.to_string());
                        }
                        // Marathon's secret references ({"secret": ...}) have no store here.
                        None => r.err(format!("/env/{k}"), "must be a string"),
                    }
                }
            }
            Some(_) => r.err("/env", "must be an object of name: value strings"),
        }
        let ports = read_ports(&mut r, &raw);
        let constraints = read_constraints(&mut r, &raw);
        let accepted_roles = match raw.get("acceptedResourceRoles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                r.err(
                    "/acceptedResourceRoles",
                    "must be a non-empty array of role names, e.g. [\"*\"] or [\"slave_public\"]",
                );
                Vec::new()
            }
        };
        let health_checks = read_health_checks(&mut r, &raw, ports.len());
        let backoff = LaunchDelay {
            seconds: r.number("backoffSeconds", 1.0, 0.0),
            factor: r.number("backoffFactor", 1.15, 1.0),
            max_launch_delay_secs: r.number("maxLaunchDelaySeconds", 300.0, 0.0),
        };
        let user = r.string("user").filter(|u| !u.is_empty());
        if let Some(v) = raw.get("labels")
            && !(v.is_null()
                || v.as_object()
                    .is_some_and(|m| m.values().all(Value::is_string)))
        {
            r.err("/labels", "must be an object of name: value strings");
        }
        let (mut min_health, mut max_over) = (1.0, 1.0);
        match raw.get("upgradeStrategy") {
            None | Some(Value::Null) => {}
            Some(Value::Object(u)) => {
                min_health = num_in(&mut r, u, "minimumHealthCapacity", "/upgradeStrategy", 1.0);
                max_over = num_in(&mut r, u, "maximumOverCapacity", "/upgradeStrategy", 1.0);
                if min_health > 1.0 {
                    r.err(
                        "/upgradeStrategy/minimumHealthCapacity",
                        "must be between 0 and 1",
                    );
                }
                if max_over > 1.0 {
                    r.err(
                        "/upgradeStrategy/maximumOverCapacity",
                        "must be between 0 and 1",
                    );
                }
            }
            Some(_) => r.err("/upgradeStrategy", "must be an object"),
        }
        let errors = std::mem::take(&mut r.errors);
        let Some(id) = id.filter(|_| errors.is_empty()) else {
            return Err(AppError(errors));
        };
        raw.insert("id".into(), Value::String(id.to_string()));
        Ok(App {
            id,
            cmd,
            args,
            instances: instances as u32,
            cpus,
            mem,
            disk,
            env,
            ports,
            constraints,
            accepted_roles,
            health_checks,
            backoff,
            user,
            minimum_health_capacity: min_health,
            maximum_over_capacity: max_over,
            raw,
        })
    }

    /// The definition as Marathon answers it: what was sent, with defaults for the fields
    /// Marathon always shows.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = self.raw.clone();
        let defaults = [
            ("instances", json!(self.instances)),
            ("cpus", json!(self.cpus)),
            ("mem", json!(self.mem)),
            ("disk", json!(self.disk)),
            ("env", json!({})),
            ("labels", json!({})),
            ("constraints", json!([])),
            ("portDefinitions", json!([])),
            ("healthChecks", json!([])),
            ("backoffSeconds", json!(self.backoff.seconds)),
            ("backoffFactor", json!(self.backoff.factor)),
            (
                "maxLaunchDelaySeconds",
                json!(self.backoff.max_launch_delay_secs),
            ),
            (
                "upgradeStrategy",
                json!({"minimumHealthCapacity": self.minimum_health_capacity,
                       "maximumOverCapacity": self.maximum_over_capacity}),
            ),
        ];
        for (k, v) in defaults {
            out.entry(k.to_string()).or_insert(v);
        }
        out
    }

    /// A copy with another instance count (scaling keeps everything else, the raw JSON too).
    pub fn with_instances(&self, n: u32) -> App {
        let mut a = self.clone();
        a.instances = n;
        a.raw.insert("instances".into(), json!(n));
        a
    }
}

fn read_ports(r: &mut Reader<'_>, raw: &Map<String, Value>) -> Vec<PortDef> {
    let mut out = Vec::new();
    let list = match raw.get("portDefinitions").or_else(|| raw.get("ports")) {
        None | Some(Value::Null) => return out,
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            r.err("/portDefinitions", "must be an array of {\"port\": N}");
            return out;
        }
    };
    for (i, p) in list.iter().enumerate() {
        let path = format!("/portDefinitions/{i}");
        // The legacy `ports` field is a list of numbers.
        let (port, name) = match p {
            Value::Number(n) => (n.as_u64(), None),
            Value::Object(o) => (
                o.get("port").map_or(Some(0), Value::as_u64),
                o.get("name").and_then(Value::as_str).map(str::to_string),
            ),
            _ => (None, None),
        };
        match port {
            Some(port) if port <= 65535 => out.push(PortDef { port, name }),
            _ => r.err(
                format!("{path}/port"),
                "must be a port number 0..65535 (0 = any)",
            ),
        }
    }
    let fixed: Vec<u64> = out.iter().map(|p| p.port).filter(|&p| p != 0).collect();
    let mut dedup = fixed.clone();
    dedup.sort_unstable();
    dedup.dedup();
    if dedup.len() != fixed.len() {
        r.err("/portDefinitions", "host ports must be distinct");
    }
    out
}

fn regex(r: &mut Reader<'_>, path: &str, v: Option<&str>) -> Option<regex_lite::Regex> {
    let Some(v) = v else {
        r.err(path, "LIKE and UNLIKE need a regular expression");
        return None;
    };
    // Marathon matches the whole value.
    match regex_lite::Regex::new(&format!("^(?:{v})$")) {
        Ok(re) => Some(re),
        Err(e) => {
            r.err(path, format!("is not a valid regular expression: {e}"));
            None
        }
    }
}

fn read_constraints(r: &mut Reader<'_>, raw: &Map<String, Value>) -> Vec<Constraint> {
    let mut out = Vec::new();
    let list = match raw.get("constraints") {
        None | Some(Value::Null) => return out,
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            r.err(
                "/constraints",
                "must be an array of [field, operator, value?]",
            );
            return out;
        }
    };
    for (i, c) in list.iter().enumerate() {
        let path = format!("/constraints/{i}");
        let parts: Option<Vec<&str>> = c
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect());
        let Some(parts) = parts.filter(|p| (2..=3).contains(&p.len())) else {
            r.err(
                path,
                "must be [field, operator] or [field, operator, value] strings",
            );
            continue;
        };
        let (field, value) = (parts[0].to_string(), parts.get(2).map(|s| s.to_string()));
        let count =
            |r: &mut Reader<'_>, v: &Option<String>| match v.as_deref().map(str::parse::<u32>) {
                Some(Ok(n)) if n > 0 => Some(n),
                _ => {
                    r.err(format!("/constraints/{i}/2"), "must be a whole number > 0");
                    None
                }
            };
        let op = match parts[1].to_ascii_uppercase().as_str() {
            "UNIQUE" => Some(Operator::Unique),
            "CLUSTER" => Some(Operator::Cluster(value)),
            "GROUP_BY" => match &value {
                None => Some(Operator::GroupBy(None)),
                Some(_) => count(r, &value).map(|n| Operator::GroupBy(Some(n))),
            },
            "LIKE" => {
                regex(r, &format!("/constraints/{i}/2"), value.as_deref()).map(Operator::Like)
            }
            "UNLIKE" => {
                regex(r, &format!("/constraints/{i}/2"), value.as_deref()).map(Operator::Unlike)
            }
            "MAX_PER" => count(r, &value).map(Operator::MaxPer),
            other => {
                r.err(
                    format!("/constraints/{i}/1"),
                    format!("operator {other:?} is not known: use UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE or MAX_PER"),
                );
                None
            }
        };
        if let Some(op) = op {
            out.push(Constraint { field, op });
        }
    }
    out
}

fn read_health_checks(
    r: &mut Reader<'_>,
    raw: &Map<String, Value>,
    ports: usize,
) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    let list = match raw.get("healthChecks") {
        None | Some(Value::Null) => return out,
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            r.err("/healthChecks", "must be an array of health checks");
            return out;
        }
    };
    for (i, h) in list.iter().enumerate() {
        let path = format!("/healthChecks/{i}");
        let Some(o) = h.as_object() else {
            r.err(path, "must be an object");
            continue;
        };
        let protocol = match o.get("protocol").and_then(Value::as_str).unwrap_or("HTTP") {
            "HTTP" | "MESOS_HTTP" => Protocol::Http,
            "TCP" | "MESOS_TCP" => Protocol::Tcp,
            "COMMAND" => Protocol::Command,
            other => {
                r.err(
                    format!("{path}/protocol"),
                    format!("{other:?} is not known: use HTTP, TCP or COMMAND"),
                );
                continue;
            }
        };
        let port_index = num_in(r, o, "portIndex", &path, 0.0) as usize;
        if protocol != Protocol::Command && port_index >= ports {
            r.err(
                format!("{path}/portIndex"),
                format!("is {port_index} but the app has {ports} port definition(s)"),
            );
        }
        let command = o
            .get("command")
            .and_then(|c| c.get("value"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if protocol == Protocol::Command && command.as_deref().is_none_or(str::is_empty) {
            r.err(
                format!("{path}/command"),
                "a COMMAND health check needs {\"value\": \"shell command\"}",
            );
        }
        out.push(HealthCheck {
            command,
            protocol,
            path: o
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string(),
            port_index,
            grace_period_secs: num_in(r, o, "gracePeriodSeconds", &path, 300.0),
            interval_secs: num_in(r, o, "intervalSeconds", &path, 60.0).max(0.1),
            timeout_secs: num_in(r, o, "timeoutSeconds", &path, 20.0).max(0.1),
            max_consecutive_failures: num_in(r, o, "maxConsecutiveFailures", &path, 3.0) as u32,
        });
    }
    out
}
