//! Who goes first: the [`Sorter`] interface (Mesos' `Sorter`) and its weighted DRF
//! implementation, [`DrfSorter`].
//!
//! A client's dominant share is its largest fraction of any one cluster resource (cpus, mem, disk)
//! divided by its weight. Roles are compared first, then clients within a role, as in Mesos'
//! hierarchical sorter; ties are broken by id so the order is deterministic.

use crate::proto::Resources;
use std::collections::{BTreeMap, HashMap};

/// Orders clients (frameworks) for offers. The allocator tells it what is allocated to whom and
/// how big the cluster is; it answers in which order clients should be offered. A policy is
/// swapped by implementing this trait; it does no I/O and reads no clock.
pub trait Sorter {
    /// Adds a client in `role`, or moves an existing one (and its allocation) to `role`.
    fn add_client(&mut self, client: &str, role: &str);
    /// Removes a client (its allocation leaves its role's too).
    fn remove_client(&mut self, client: &str);
    /// The cluster grew by `r` (an agent joined or became reachable).
    fn add_total(&mut self, r: &Resources);
    /// The cluster shrank by `r`.
    fn remove_total(&mut self, r: &Resources);
    /// `r` was allocated to `client` (offered, or used by its task).
    fn allocated(&mut self, client: &str, r: &Resources);
    /// `r` went back from `client`.
    fn unallocated(&mut self, client: &str, r: &Resources);
    /// What `client` holds.
    fn allocation(&self, client: &str) -> Option<&Resources>;
    /// The client's own (unweighted) dominant share.
    fn share(&self, client: &str) -> f64;
    /// Every client, the one to offer first first.
    fn sort(&self) -> Vec<&str>;
}

/// The dominant share of `alloc` in a cluster of size `total`, divided by `weight`.
pub fn dominant_share(alloc: &Resources, total: &Resources, weight: f64) -> f64 {
    let frac = |a: f64, t: f64| if t > 0.0 { a / t } else { 0.0 };
    let share = frac(alloc.cpus, total.cpus)
        .max(frac(alloc.mem, total.mem))
        .max(frac(alloc.disk, total.disk));
    share / weight.max(f64::MIN_POSITIVE)
}

/// The sort key of a client: (role share, client share, id). Lower goes first.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct DrfKey<'a> {
    /// Weighted dominant share of the client's role.
    pub role_share: f64,
    /// Dominant share of the client itself.
    pub framework_share: f64,
    /// Client id (tie-break).
    pub id: &'a str,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Client {
    role: String,
    allocated: Resources,
}

/// Weighted hierarchical DRF: roles by weighted share, then clients within a role.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrfSorter {
    clients: BTreeMap<String, Client>,
    roles: HashMap<String, Resources>,
    weights: HashMap<String, f64>,
    total: Resources,
}

impl DrfSorter {
    /// An empty sorter; roles not in `weights` weigh 1.
    pub fn new(weights: HashMap<String, f64>) -> Self {
        DrfSorter {
            weights,
            ..Default::default()
        }
    }

    fn weight(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(1.0)
    }

    fn role_share(&self, role: &str) -> f64 {
        self.roles
            .get(role)
            .map(|r| dominant_share(r, &self.total, self.weight(role)))
            .unwrap_or(0.0)
    }
}

impl Sorter for DrfSorter {
    fn add_client(&mut self, client: &str, role: &str) {
        match self.clients.get_mut(client) {
            Some(c) if c.role == role => {}
            Some(c) => {
                if let Some(r) = self.roles.get_mut(&c.role) {
                    r.subtract(&c.allocated);
                }
                self.roles
                    .entry(role.to_string())
                    .or_default()
                    .add(&c.allocated);
                c.role = role.to_string();
            }
            None => {
                self.clients.insert(
                    client.to_string(),
                    Client {
                        role: role.to_string(),
                        allocated: Resources::default(),
                    },
                );
            }
        }
    }

    fn remove_client(&mut self, client: &str) {
        if let Some(c) = self.clients.remove(client)
            && let Some(r) = self.roles.get_mut(&c.role)
        {
            r.subtract(&c.allocated);
        }
    }

    fn add_total(&mut self, r: &Resources) {
        self.total.add(r);
    }

    fn remove_total(&mut self, r: &Resources) {
        self.total.subtract(r);
    }

    fn allocated(&mut self, client: &str, r: &Resources) {
        if let Some(c) = self.clients.get_mut(client) {
            c.allocated.add(r);
            self.roles.entry(c.role.clone()).or_default().add(r);
        }
    }

    fn unallocated(&mut self, client: &str, r: &Resources) {
        if let Some(c) = self.clients.get_mut(client) {
            c.allocated.subtract(r);
            if let Some(role) = self.roles.get_mut(&c.role) {
                role.subtract(r);
            }
        }
    }

    fn allocation(&self, client: &str) -> Option<&Resources> {
        self.clients.get(client).map(|c| &c.allocated)
    }

    fn share(&self, client: &str) -> f64 {
        self.clients
            .get(client)
            .map(|c| dominant_share(&c.allocated, &self.total, 1.0))
            .unwrap_or(0.0)
    }

    fn sort(&self) -> Vec<&str> {
        let mut keys: Vec<DrfKey<'_>> = self
            .clients
            .iter()
            .map(|(id, c)| DrfKey {
                role_share: self.role_share(&c.role),
                framework_share: dominant_share(&c.allocated, &self.total, 1.0),
                id,
            })
            .collect();
        keys.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        keys.into_iter().map(|k| k.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpus: f64, mem: f64) -> Resources {
        Resources::new(cpus, mem, 0.0)
    }

    #[test]
    fn dominant_share_is_the_largest_fraction_over_weight() {
        let total = Resources::new(10.0, 1000.0, 0.0);
        assert_eq!(dominant_share(&res(1.0, 500.0), &total, 1.0), 0.5);
        assert_eq!(dominant_share(&res(5.0, 100.0), &total, 2.0), 0.25);
        assert_eq!(
            dominant_share(&res(5.0, 100.0), &Resources::default(), 1.0),
            0.0
        );
    }

    #[test]
    fn keys_order_by_role_then_framework_then_id() {
        let key = |role_share, framework_share, id| DrfKey {
            role_share,
            framework_share,
            id,
        };
        assert!(key(0.1, 0.9, "b") < key(0.2, 0.0, "a"));
        assert!(key(0.1, 0.9, "a") < key(0.1, 0.9, "b"));
    }

    /// One row: clients as (id, role, cpus, mem allocated), role weights, the expected order.
    struct Row {
        name: &'static str,
        clients: &'static [(&'static str, &'static str, f64, f64)],
        weights: &'static [(&'static str, f64)],
        order: &'static [&'static str],
    }

    #[test]
    fn drf_sorter_orders_clients_by_weighted_dominant_share() {
        let rows = [
            Row {
                name: "nothing allocated: ties broken by id",
                clients: &[("b", "*", 0.0, 0.0), ("a", "*", 0.0, 0.0)],
                weights: &[],
                order: &["a", "b"],
            },
            Row {
                name: "lowest dominant share first, whichever resource dominates",
                clients: &[("cpu", "*", 5.0, 0.0), ("mem", "*", 0.0, 300.0)],
                weights: &[],
                order: &["mem", "cpu"],
            },
            Row {
                name: "a heavier role goes first at a higher raw share",
                clients: &[("big", "big", 4.0, 0.0), ("small", "small", 2.0, 0.0)],
                weights: &[("big", 4.0)],
                order: &["big", "small"],
            },
            Row {
                name: "roles first: a busy role's idle client waits behind an idle role",
                clients: &[
                    ("busy", "r1", 6.0, 0.0),
                    ("idle-in-busy-role", "r1", 0.0, 0.0),
                    ("other", "r2", 1.0, 0.0),
                ],
                weights: &[],
                order: &["other", "idle-in-busy-role", "busy"],
            },
        ];
        for row in rows {
            let mut s = DrfSorter::new(
                row.weights
                    .iter()
                    .map(|(r, w)| (r.to_string(), *w))
                    .collect(),
            );
            s.add_total(&res(10.0, 1000.0));
            for (id, role, cpus, mem) in row.clients {
                s.add_client(id, role);
                s.allocated(id, &res(*cpus, *mem));
            }
            assert_eq!(s.sort(), row.order, "{}", row.name);
        }
    }

    #[test]
    fn unallocating_and_moving_roles_keep_role_totals_right() {
        let mut s = DrfSorter::default();
        s.add_total(&res(10.0, 1000.0));
        s.add_client("a", "r1");
        s.add_client("b", "r2");
        s.allocated("a", &res(4.0, 0.0));
        s.allocated("b", &res(2.0, 0.0));
        assert_eq!(s.sort(), ["b", "a"]);
        s.unallocated("a", &res(3.0, 0.0));
        assert_eq!(s.sort(), ["a", "b"], "a holds 1 cpu now, b 2");
        // a moves into b's role: r2 now holds 3 cpus, and a's own share (0.1) still sorts it first.
        s.add_client("a", "r2");
        assert_eq!(s.allocation("a"), Some(&res(1.0, 0.0)));
        assert_eq!(s.role_share("r1"), 0.0);
        assert!((s.role_share("r2") - 0.3).abs() < 1e-9);
        s.remove_client("a");
        assert!((s.role_share("r2") - 0.2).abs() < 1e-9);
        assert_eq!(s.sort(), ["b"]);
        assert_eq!(s.share("a"), 0.0, "removed clients have no share");
    }
}
