//! `core { config = { ... } }`: the settings dcform passes to `dccore` (its `--config` JSON file). Each key is
//! checked here, at load time, so a typo is reported with its position instead of a node failing to start.
//! Durations are written as `"2s"`, `"500ms"`, `"1m"`, `"1h"` or a number of seconds; Mesos' names are
//! accepted as aliases (`agent_ping_timeout` is `agent_timeout_secs`).
//!
//! The table mirrors `dccore`'s `master::ConfigFile` and `agent::ConfigFile`; `tests/local_e2e.rs` boots a
//! cluster with a core config, so a key dccore stops accepting fails a test.

use serde_json::{Map, Value};

/// Which role's config file a key goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// `dccore master --config`.
    Master,
    /// `dccore agent --config` (public agents too).
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secs,
    Bool,
    Weights,
}

struct Key {
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    applies: Applies,
}

const KEYS: &[Key] = &[
    Key {
        name: "agent_timeout_secs",
        aliases: &["agent_ping_timeout", "agent_timeout"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "agent_probe_after_secs",
        aliases: &["agent_probe_after"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "agent_reregister_timeout_secs",
        aliases: &["agent_reregister_timeout"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "allocation_interval_secs",
        aliases: &["allocation_interval"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "offer_timeout_secs",
        aliases: &["offer_timeout"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "status_update_retry_secs",
        aliases: &["status_update_retry"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "framework_heartbeat_secs",
        aliases: &["framework_heartbeat"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "default_refuse_secs",
        aliases: &["default_refuse_seconds"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "default_failover_timeout_secs",
        aliases: &["failover_timeout", "default_failover_timeout"],
        kind: Kind::Secs,
        applies: Applies::Master,
    },
    Key {
        name: "role_weights",
        aliases: &["weights"],
        kind: Kind::Weights,
        applies: Applies::Master,
    },
    Key {
        name: "heartbeat_interval_secs",
        aliases: &["heartbeat_interval"],
        kind: Kind::Secs,
        applies: Applies::Agent,
    },
    Key {
        name: "kill_grace_secs",
        aliases: &["kill_grace_period", "executor_shutdown_grace_period"],
        kind: Kind::Secs,
        applies: Applies::Agent,
    },
    Key {
        name: "cgroups",
        aliases: &[],
        kind: Kind::Bool,
        applies: Applies::Agent,
    },
];

/// Every accepted key name (canonical names first, then aliases), for hints.
pub fn known_names() -> Vec<&'static str> {
    KEYS.iter()
        .map(|k| k.name)
        .chain(KEYS.iter().flat_map(|k| k.aliases.iter().copied()))
        .collect()
}

/// Checks one `key = value` and returns the canonical key and the value dccore reads.
/// The error says what is wrong; the caller adds the position.
pub fn normalise(key: &str, value: &Value) -> Result<(&'static str, Value), String> {
    let k = KEYS
        .iter()
        .find(|k| k.name == key || k.aliases.contains(&key))
        .ok_or_else(|| format!("unknown core config key \"{key}\""))?;
    let v = match k.kind {
        Kind::Secs => Value::from(seconds(value).ok_or_else(|| {
            format!("core config \"{key}\" must be a duration such as \"2s\", \"500ms\", \"1m\" or a number of seconds, got {value}")
        })?),
        Kind::Bool => Value::Bool(value.as_bool().ok_or_else(|| format!("core config \"{key}\" must be true or false, got {value}"))?),
        Kind::Weights => {
            let obj = value.as_object().filter(|o| o.values().all(|w| w.as_f64().is_some_and(|w| w > 0.0))).ok_or_else(|| {
                format!("core config \"{key}\" must map roles to positive numbers, e.g. {{ \"*\" = 1, analytics = 2 }}, got {value}")
            })?;
            Value::Object(obj.clone())
        }
    };
    Ok((k.name, v))
}

/// The keys of `config` (already normalised) that belong to `role`'s config file.
pub fn for_role(
    config: &std::collections::BTreeMap<String, Value>,
    role: Applies,
) -> Map<String, Value> {
    config
        .iter()
        .filter(|(k, _)| {
            KEYS.iter()
                .any(|key| key.name == k.as_str() && key.applies == role)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `"2s"`, `"500ms"`, `"1.5m"`, `"1h"`, `"3"` or `3` → seconds. Negative or non-finite values are refused.
fn seconds(v: &Value) -> Option<f64> {
    let s = match v {
        Value::Number(n) => return n.as_f64().filter(|x| x.is_finite() && *x >= 0.0),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(n * factor).filter(|x| x.is_finite() && *x >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_mesos_aliases_become_dccore_seconds() {
        assert_eq!(
            normalise("agent_ping_timeout", &json!("2s")),
            Ok(("agent_timeout_secs", json!(2.0)))
        );
        assert_eq!(
            normalise("offer_timeout", &json!("500ms")),
            Ok(("offer_timeout_secs", json!(0.5)))
        );
        assert_eq!(
            normalise("failover_timeout", &json!("1h")),
            Ok(("default_failover_timeout_secs", json!(3600.0)))
        );
        assert_eq!(
            normalise("kill_grace_secs", &json!(3)),
            Ok(("kill_grace_secs", json!(3.0)))
        );
        assert_eq!(
            normalise("cgroups", &json!(false)),
            Ok(("cgroups", json!(false)))
        );
    }

    #[test]
    fn bad_keys_and_values_say_what_would_be_valid() {
        assert_eq!(
            normalise("agent_pong_timeout", &json!("2s")).unwrap_err(),
            "unknown core config key \"agent_pong_timeout\""
        );
        assert!(
            normalise("offer_timeout", &json!("soon"))
                .unwrap_err()
                .contains("\"2s\"")
        );
        assert!(normalise("offer_timeout", &json!(-1)).is_err());
        assert!(
            normalise("cgroups", &json!("yes"))
                .unwrap_err()
                .contains("true or false")
        );
        assert!(normalise("role_weights", &json!({"a": 0})).is_err());
    }

    #[test]
    fn each_role_gets_only_its_keys() {
        let mut c = std::collections::BTreeMap::new();
        c.insert("agent_timeout_secs".to_string(), json!(2.0));
        c.insert("kill_grace_secs".to_string(), json!(1.0));
        assert_eq!(
            Value::Object(for_role(&c, Applies::Master)),
            json!({"agent_timeout_secs": 2.0})
        );
        assert_eq!(
            Value::Object(for_role(&c, Applies::Agent)),
            json!({"kill_grace_secs": 1.0})
        );
    }
}
