//! dcform's outputs in Terraform's `output -json` shape, `{"name": {"sensitive": false, "type": T,
//! "value": V}}`, with the names dcos-terraform users script against (`masters-ips`,
//! `private-agents-ips`, `public-agents-ips`, `cluster-address`) beside dcform's own.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One node as the outputs need it.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// `master`, `agent` or `public_agent`.
    pub role: &'a str,
    /// The address dcform reaches the node at, if it has one yet.
    pub address: Option<&'a str>,
}

/// dcform's outputs plus the dcos-terraform names, each wrapped as Terraform wraps an output. A
/// dcos-terraform name is added only when the cluster has what it names (no `public-agents-ips` without
/// public agents), and never replaces an output of dcform's own with the same name.
pub fn terraform_json(outputs: &BTreeMap<String, Value>, nodes: &[NodeView<'_>]) -> Value {
    let mut all: BTreeMap<String, Value> = outputs.clone();
    let ips = |role: &str| -> Vec<Value> {
        nodes
            .iter()
            .filter(|n| n.role == role)
            .filter_map(|n| n.address.map(|a| Value::String(a.to_string())))
            .collect()
    };
    for (name, role) in [
        ("masters-ips", "master"),
        ("private-agents-ips", "agent"),
        ("public-agents-ips", "public_agent"),
    ] {
        let v = ips(role);
        if !v.is_empty() {
            all.entry(name.to_string()).or_insert(Value::Array(v));
        }
    }
    if let Some(Value::String(url)) = outputs.get("master_url") {
        let addr = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        all.entry("cluster-address".into())
            .or_insert_with(|| Value::String(addr.trim_end_matches('/').to_string()));
    }
    let wrapped: serde_json::Map<String, Value> = all
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                json!({"sensitive": false, "type": terraform_type(&v), "value": v}),
            )
        })
        .collect();
    Value::Object(wrapped)
}

/// The type of a value as Terraform's JSON output spells it: `"string"`, `"number"`, `"bool"`,
/// `["list", T]` for a list of one element type, `["tuple", [...]]` otherwise, `["object", {...}]`.
pub fn terraform_type(v: &Value) -> Value {
    match v {
        Value::Null => json!("dynamic"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => {
            let types: Vec<Value> = items.iter().map(terraform_type).collect();
            match types.first() {
                Some(first) if types.iter().all(|t| t == first) => json!(["list", first]),
                _ => json!(["tuple", types]),
            }
        }
        Value::Object(o) => {
            let fields: serde_json::Map<String, Value> = o
                .iter()
                .map(|(k, v)| (k.clone(), terraform_type(v)))
                .collect();
            json!(["object", fields])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_wrapped_as_terraform_does_with_dcos_terraform_names() {
        let outputs: BTreeMap<String, Value> = [
            ("master_url".to_string(), json!("https://127.0.0.1:5050")),
            ("agents".to_string(), json!(2)),
        ]
        .into();
        let nodes = [
            NodeView {
                role: "master",
                address: Some("127.0.0.1:5050"),
            },
            NodeView {
                role: "agent",
                address: Some("127.0.0.2"),
            },
            NodeView {
                role: "agent",
                address: None,
            },
        ];
        let v = terraform_json(&outputs, &nodes);
        assert_eq!(
            v["master_url"],
            json!({"sensitive": false, "type": "string", "value": "https://127.0.0.1:5050"})
        );
        assert_eq!(v["agents"]["type"], json!("number"));
        assert_eq!(v["masters-ips"]["type"], json!(["list", "string"]));
        assert_eq!(v["private-agents-ips"]["value"], json!(["127.0.0.2"]));
        assert_eq!(v["cluster-address"]["value"], json!("127.0.0.1:5050"));
        assert!(
            v.get("public-agents-ips").is_none(),
            "no public agents, no output"
        );
    }

    #[test]
    fn mixed_lists_are_tuples_and_maps_objects() {
        assert_eq!(
            terraform_type(&json!([1, "a"])),
            json!(["tuple", ["number", "string"]])
        );
        assert_eq!(
            terraform_type(&json!({"a": true})),
            json!(["object", {"a": "bool"}])
        );
        assert_eq!(terraform_type(&json!([])), json!(["tuple", []]));
    }
}
