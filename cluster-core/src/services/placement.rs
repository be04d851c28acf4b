//! Does an instance of an app fit an offer? Resources (by accepted role), host ports and
//! constraints, each refusal with the reason `/v2/queue` shows. Pure: no I/O, no clock.

use crate::proto::{Offer, Resources};
use dccore_api::marathon::{App, Constraint, Operator};
use std::collections::BTreeMap;

/// What placement needs to know of an offer.
#[derive(Clone, Debug)]
pub struct OfferView {
    /// The offer id.
    pub offer_id: String,
    /// Its agent.
    pub agent_id: String,
    /// The agent's hostname.
    pub hostname: String,
    /// Agent attributes (text values).
    pub attributes: BTreeMap<String, String>,
    /// Offered resources per role (`*` = unreserved).
    pub by_role: BTreeMap<String, Resources>,
}

impl OfferView {
    /// Reads a Mesos offer.
    pub fn of(offer: &Offer) -> OfferView {
        let mut by_role: BTreeMap<String, Resources> = BTreeMap::new();
        for r in &offer.resources {
            // The reservation refinement's last role wins over the legacy `role`.
            let role = r
                .reservations
                .last()
                .and_then(|x| x.role.clone())
                .or_else(|| r.role.clone())
                .unwrap_or_else(|| "*".into());
            by_role
                .entry(role)
                .or_default()
                .add(&Resources::from_mesos(std::slice::from_ref(r)));
        }
        OfferView {
            offer_id: offer.id.value.clone(),
            agent_id: offer.agent_id.value.clone(),
            hostname: offer.hostname.clone(),
            attributes: offer
                .attributes
                .iter()
                .map(|a| (a.name.clone(), a.text.value.clone()))
                .collect(),
            by_role,
        }
    }

    /// The value of a constraint field on this agent.
    pub fn field(&self, field: &str) -> Option<&str> {
        if field == "hostname" {
            Some(&self.hostname)
        } else {
            self.attributes.get(field).map(String::as_str)
        }
    }
}

/// Where an existing instance of the app runs (its constraint field values).
#[derive(Clone, Debug)]
pub struct Placed {
    /// The agent's hostname.
    pub hostname: String,
    /// The agent's attributes.
    pub attributes: BTreeMap<String, String>,
}

impl Placed {
    fn field(&self, field: &str) -> Option<&str> {
        if field == "hostname" {
            Some(&self.hostname)
        } else {
            self.attributes.get(field).map(String::as_str)
        }
    }
}

/// A fit: the resources to take and the host ports assigned (one per port definition).
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// Taken from the offer.
    pub resources: Resources,
    /// Host ports, in `portDefinitions` order.
    pub ports: Vec<u64>,
}

/// Why an offer was not used: `label` groups reasons for `/v2/queue` counts, `detail` explains.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// `InsufficientCpus`, `InsufficientMemory`, `InsufficientDisk`, `InsufficientPorts`,
    /// `UnfulfilledRole`, `UnfulfilledConstraint` (Marathon's `processedOffersSummary` names).
    pub label: &'static str,
    /// E.g. `constraint hostname:UNIQUE: an instance already runs on host a1`.
    pub detail: String,
}

fn refuse(label: &'static str, detail: String) -> Refusal {
    Refusal { label, detail }
}

/// Tries to fit one instance of `app` into what is left of `offer` (`left`, per role), beside
/// the app's instances `placed`.
pub fn fit(
    app: &App,
    offer: &OfferView,
    left: &BTreeMap<String, Resources>,
    placed: &[Placed],
) -> Result<Fit, Refusal> {
    for c in &app.constraints {
        check_constraint(c, offer, placed)?;
    }
    let roles: Vec<String> = if app.accepted_roles.is_empty() {
        vec!["*".into()]
    } else {
        app.accepted_roles.clone()
    };
    let mut pool = Resources::default();
    for r in &roles {
        if let Some(x) = left.get(r) {
            pool.add(x);
        }
    }
    if pool.cpus == 0.0 && pool.mem == 0.0 && !left.is_empty() {
        let offered: Vec<&str> = left.keys().map(String::as_str).collect();
        return Err(refuse(
            "UnfulfilledRole",
            format!("the offer has resources for roles {offered:?}, the app accepts {roles:?}"),
        ));
    }
    let need = Resources::new(app.cpus, app.mem, app.disk);
    if let Some(why) = pool.shortfall(&need) {
        let label = if why.contains("cpus") {
            "InsufficientCpus"
        } else if why.contains("mem") {
            "InsufficientMemory"
        } else {
            "InsufficientDisk"
        };
        return Err(refuse(label, why));
    }
    let ports = assign_ports(app, &pool).ok_or_else(|| {
        refuse(
            "InsufficientPorts",
            format!(
                "needs {} host port(s) {:?}, offered ranges {:?}",
                app.ports.len(),
                app.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
                pool.ports
            ),
        )
    })?;
    let mut resources = need;
    resources.ports = ports.iter().map(|&p| (p, p)).collect();
    resources.ports.sort_unstable();
    Ok(Fit { resources, ports })
}

/// Host ports: fixed ones must be offered; 0 takes the lowest free offered port.
fn assign_ports(app: &App, pool: &Resources) -> Option<Vec<u64>> {
    let offered = |p: u64| pool.ports.iter().any(|&(b, e)| b <= p && p <= e);
    let mut taken: Vec<u64> = Vec::new();
    for d in app.ports.iter().filter(|d| d.port != 0) {
        if !offered(d.port) {
            return None;
        }
        taken.push(d.port);
    }
    let mut out = Vec::with_capacity(app.ports.len());
    for d in &app.ports {
        if d.port != 0 {
            out.push(d.port);
            continue;
        }
        let p = pool
            .ports
            .iter()
            .flat_map(|&(b, e)| b..=e)
            .find(|p| !taken.contains(p))?;
        taken.push(p);
        out.push(p);
    }
    Some(out)
}

fn check_constraint(c: &Constraint, offer: &OfferView, placed: &[Placed]) -> Result<(), Refusal> {
    let name = match &c.op {
        Operator::Unique => "UNIQUE".to_string(),
        Operator::Cluster(v) => format!("CLUSTER:{}", v.as_deref().unwrap_or("")),
        Operator::GroupBy(n) => {
            format!("GROUP_BY:{}", n.map(|n| n.to_string()).unwrap_or_default())
        }
        Operator::Like(r) => format!("LIKE:{}", r.as_str()),
        Operator::Unlike(r) => format!("UNLIKE:{}", r.as_str()),
        Operator::MaxPer(n) => format!("MAX_PER:{n}"),
    };
    let fail = |why: String| {
        Err(refuse(
            "UnfulfilledConstraint",
            format!("constraint {}:{name}: {why}", c.field),
        ))
    };
    let Some(value) = offer.field(&c.field) else {
        return fail(format!(
            "agent {} has no attribute {:?}",
            offer.hostname, c.field
        ));
    };
    let count_here = placed
        .iter()
        .filter(|p| p.field(&c.field) == Some(value))
        .count();
    match &c.op {
        Operator::Unique if count_here > 0 => fail(format!(
            "an instance already runs where {} is {value:?}",
            c.field
        )),
        Operator::MaxPer(n) if count_here >= *n as usize => fail(format!(
            "{count_here} instance(s) already run where {} is {value:?}",
            c.field
        )),
        Operator::Cluster(Some(want)) if want != value => {
            fail(format!("agent {} has {value:?}", offer.hostname))
        }
        Operator::Cluster(None) => match placed.iter().find_map(|p| p.field(&c.field)) {
            Some(first) if first != value => fail(format!(
                "instances run where it is {first:?}, this agent has {value:?}"
            )),
            _ => Ok(()),
        },
        Operator::Like(re) if !re.is_match(value) => fail(format!("{value:?} does not match")),
        Operator::Unlike(re) if re.is_match(value) => fail(format!("{value:?} matches")),
        Operator::GroupBy(_) => {
            // Even spread: this value may take one more only if no other known value has fewer.
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for p in placed {
                if let Some(v) = p.field(&c.field) {
                    *counts.entry(v).or_default() += 1;
                }
            }
            let min_other = counts
                .iter()
                .filter(|(v, _)| **v != value)
                .map(|(_, n)| *n)
                .min();
            match min_other {
                Some(m) if count_here > m => fail(format!(
                    "{count_here} instance(s) where it is {value:?}, fewer elsewhere"
                )),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(v: serde_json::Value) -> App {
        App::from_json(v, None).expect("valid app")
    }

    fn offer(host: &str, res: &str, attrs: &[(&str, &str)]) -> OfferView {
        OfferView {
            offer_id: format!("o-{host}"),
            agent_id: format!("a-{host}"),
            hostname: host.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            by_role: [("*".to_string(), Resources::parse(res).expect("resources"))].into(),
        }
    }

    fn on(host: &str) -> Placed {
        Placed {
            hostname: host.into(),
            attributes: BTreeMap::new(),
        }
    }

    const RES: &str = "cpus:2;mem:1024;disk:100;ports:[31000-31002]";

    #[test]
    fn an_instance_takes_its_resources_and_the_lowest_free_ports() {
        let a = app(json!({"id": "/w", "cmd": "x", "cpus": 0.5, "mem": 64,
            "portDefinitions": [{"port": 0}, {"port": 31000}]}));
        let o = offer("h1", RES, &[]);
        let f = fit(&a, &o, &o.by_role, &[]).expect("fits");
        assert_eq!(f.ports, vec![31001, 31000]);
        assert_eq!(f.resources.cpus, 0.5);
        assert_eq!(f.resources.ports, vec![(31000, 31000), (31001, 31001)]);
    }

    #[test]
    fn refusals_say_which_resource_is_short() {
        let a = app(json!({"id": "/w", "cmd": "x", "cpus": 4, "mem": 64}));
        let o = offer("h1", RES, &[]);
        let e = fit(&a, &o, &o.by_role, &[]).expect_err("too big");
        assert_eq!(e.label, "InsufficientCpus");
        assert!(e.detail.contains("need 4"), "{}", e.detail);
        let a = app(json!({"id": "/w", "cmd": "x", "cpus": 0.1, "mem": 64,
            "portDefinitions": [{"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}]}));
        assert_eq!(
            fit(&a, &o, &o.by_role, &[]).expect_err("ports").label,
            "InsufficientPorts"
        );
    }

    #[test]
    fn unique_hostname_refuses_a_second_instance_on_a_host() {
        let a = app(json!({"id": "/w", "cmd": "x", "cpus": 0.1, "mem": 16,
            "constraints": [["hostname", "UNIQUE"]]}));
        let o = offer("h1", RES, &[]);
        assert!(fit(&a, &o, &o.by_role, &[on("h2")]).is_ok());
        let e = fit(&a, &o, &o.by_role, &[on("h1")]).expect_err("second on h1");
        assert_eq!(e.label, "UnfulfilledConstraint");
        assert!(e.detail.contains("hostname:UNIQUE"), "{}", e.detail);
    }

    #[test]
    fn cluster_like_unlike_and_max_per_follow_marathon() {
        let o = offer("h1", RES, &[("rack", "r1")]);
        let ok = |c: serde_json::Value, placed: &[Placed]| {
            let a =
                app(json!({"id": "/w", "cmd": "x", "cpus": 0.1, "mem": 16, "constraints": [c]}));
            fit(&a, &o, &o.by_role, placed).is_ok()
        };
        assert!(ok(json!(["rack", "CLUSTER", "r1"]), &[]));
        assert!(!ok(json!(["rack", "CLUSTER", "r2"]), &[]));
        assert!(ok(json!(["hostname", "LIKE", "h[0-9]"]), &[]));
        assert!(
            !ok(json!(["hostname", "LIKE", "h"]), &[]),
            "LIKE matches the whole value"
        );
        assert!(!ok(json!(["hostname", "UNLIKE", "h.*"]), &[]));
        assert!(ok(json!(["hostname", "MAX_PER", "2"]), &[on("h1")]));
        assert!(!ok(
            json!(["hostname", "MAX_PER", "2"]),
            &[on("h1"), on("h1")]
        ));
        assert!(
            !ok(json!(["zone", "UNIQUE"]), &[]),
            "a missing attribute never matches"
        );
    }

    #[test]
    fn group_by_spreads_evenly() {
        let a = app(json!({"id": "/w", "cmd": "x", "cpus": 0.1, "mem": 16,
            "constraints": [["hostname", "GROUP_BY"]]}));
        let o = offer("h1", RES, &[]);
        assert!(fit(&a, &o, &o.by_role, &[on("h1"), on("h2")]).is_ok());
        assert!(fit(&a, &o, &o.by_role, &[on("h1"), on("h2"), on("h1")]).is_err());
    }

    #[test]
    fn accepted_roles_limit_which_resources_count() {
        let a = app(json!({"id": "/w", "cmd": "x", "cpus": 0.1, "mem": 16,
            "acceptedResourceRoles": ["slave_public"]}));
        let o = offer("h1", RES, &[]);
        assert_eq!(
            fit(&a, &o, &o.by_role, &[]).expect_err("role").label,
            "UnfulfilledRole"
        );
    }
}
