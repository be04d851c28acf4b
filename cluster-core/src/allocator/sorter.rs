//! Weighted Dominant Resource Fairness: who is furthest below their fair share.
//!
//! A client's dominant share is its largest fraction of any one cluster resource (cpus, mem, disk)
//! divided by its weight. Roles are compared first, then frameworks within a role, as in Mesos'
//! hierarchical sorter; ties are broken by id so the order is deterministic.

use crate::proto::Resources;

/// The dominant share of `alloc` in a cluster of size `total`, divided by `weight`.
pub fn dominant_share(alloc: &Resources, total: &Resources, weight: f64) -> f64 {
    let frac = |a: f64, t: f64| if t > 0.0 { a / t } else { 0.0 };
    let share = frac(alloc.cpus, total.cpus)
        .max(frac(alloc.mem, total.mem))
        .max(frac(alloc.disk, total.disk));
    share / weight.max(f64::MIN_POSITIVE)
}

/// The sort key of a framework: (role share, framework share, id). Lower goes first.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct DrfKey<'a> {
    /// Weighted dominant share of the framework's role.
    pub role_share: f64,
    /// Dominant share of the framework itself.
    pub framework_share: f64,
    /// Framework id (tie-break).
    pub id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_share_is_the_largest_fraction_over_weight() {
        let total = Resources::new(10.0, 1000.0, 0.0);
        assert_eq!(
            dominant_share(&Resources::new(1.0, 500.0, 0.0), &total, 1.0),
            0.5
        );
        assert_eq!(
            dominant_share(&Resources::new(5.0, 100.0, 0.0), &total, 2.0),
            0.25
        );
        assert_eq!(
            dominant_share(&Resources::new(5.0, 100.0, 0.0), &Resources::default(), 1.0),
            0.0
        );
    }

    #[test]
    fn keys_order_by_role_then_framework_then_id() {
        let a = DrfKey {
            role_share: 0.1,
            framework_share: 0.9,
            id: "b",
        };
        let b = DrfKey {
            role_share: 0.2,
            framework_share: 0.0,
            id: "a",
        };
        assert!(a < b);
        let c = DrfKey {
            role_share: 0.1,
            framework_share: 0.9,
            id: "a",
        };
        assert!(c < a);
    }
}
