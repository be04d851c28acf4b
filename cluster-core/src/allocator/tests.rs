//! Allocator tests: DRF order, filters, holds, public agents, and the reasons reported.
use super::*;
use std::time::Duration;

fn res(cpus: f64, mem: f64) -> Resources {
    Resources::new(cpus, mem, 0.0)
}

#[test]
fn drf_offers_first_to_lowest_dominant_share() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(10.0, 1000.0), false);
    a.add_agent("a2", res(10.0, 1000.0), false);
    a.add_framework("f1", vec!["*".into()]);
    a.add_framework("f2", vec!["*".into()]);
    // f1 already holds 4 of the 20 cpus, so f2 (share 0) gets the first free agent; then f2
    // holds 6/20 > f1's 4/20 and the next agent goes to f1.
    a.allocate_to("f1", "a1", &res(4.0, 100.0));
    let out = a.allocate(now);
    assert_eq!(out.grants[0].agent, "a1");
    assert_eq!(out.grants[0].framework, "f2", "f2 has share 0 < f1's 0.2");
    assert_eq!(out.grants[1].agent, "a2");
    assert_eq!(
        out.grants[1].framework, "f1",
        "f2 now holds 6/20 > f1's 4/20"
    );
}

#[test]
fn weights_favour_heavier_roles() {
    let mut a = Allocator::new(HashMap::from([("big".to_string(), 4.0)]));
    a.add_agent("a1", res(10.0, 1000.0), false);
    a.add_agent("a2", res(10.0, 1000.0), false);
    a.add_framework("f-big", vec!["big".into()]);
    a.add_framework("f-small", vec!["small".into()]);
    a.allocate_to("f-big", "a1", &res(2.0, 0.0));
    a.allocate_to("f-small", "a1", &res(1.0, 0.0));
    // big: 2/20/4 = 0.025 < small: 1/20 = 0.05
    let out = a.allocate(Instant::now());
    assert_eq!(out.grants[0].framework, "f-big");
}

#[test]
fn declined_agent_is_not_reoffered_until_the_filter_expires() {
    let t0 = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(2.0, 1024.0), false);
    a.add_framework("f1", vec![]);
    let g = a.allocate(t0).grants.remove(0);
    a.decline("f1", "a1", &g.resources, Some(t0 + Duration::from_secs(5)));
    let out = a.allocate(t0 + Duration::from_secs(4));
    assert!(out.grants.is_empty());
    assert_eq!(out.unoffered[0].reason, AgentReason::NoEligibleFramework);
    assert!(
        out.unoffered[0].message().contains("declined it"),
        "{:?}",
        out.unoffered
    );
    assert_eq!(
        out.passed_over,
        vec![PassedOver {
            framework: "f1".into(),
            reason: FrameworkReason::RefuseFilter,
            agents: 1
        }]
    );
    assert_eq!(a.allocate(t0 + Duration::from_secs(5)).grants.len(), 1);
}

#[test]
fn suppressed_framework_gets_nothing_until_revive() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(2.0, 1024.0), false);
    a.add_framework("f1", vec![]);
    a.suppress("f1");
    let out = a.allocate(now);
    assert!(out.grants.is_empty());
    assert_eq!(out.unoffered[0].skips.suppressed, 1);
    assert_eq!(out.passed_over[0].reason, FrameworkReason::Suppressed);
    a.revive("f1");
    assert_eq!(a.allocate(now).grants.len(), 1);
}

#[test]
fn public_agents_go_only_to_slave_public_frameworks() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("pub", res(2.0, 1024.0), true);
    a.add_framework("plain", vec!["*".into()]);
    let out = a.allocate(now);
    assert!(out.grants.is_empty());
    assert_eq!(out.unoffered[0].skips.role_mismatch, 1);
    assert!(
        out.unoffered[0].message().contains("slave_public"),
        "{:?}",
        out.unoffered
    );
    a.add_framework("edge", vec!["*".into(), PUBLIC_ROLE.into()]);
    let out = a.allocate(now);
    assert_eq!(out.grants[0].framework, "edge");
    assert_eq!(out.grants[0].role, PUBLIC_ROLE);
}

#[test]
fn recovered_resources_are_offered_again_and_inactive_agents_are_not() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(2.0, 1024.0), false);
    a.add_framework("f1", vec![]);
    let g = a.allocate(now).grants.remove(0);
    assert!(
        a.allocate(now).grants.is_empty(),
        "everything is offered already"
    );
    a.recover("f1", "a1", &g.resources);
    a.set_agent_active("a1", false);
    assert!(a.allocate(now).grants.is_empty());
    a.set_agent_active("a1", true);
    assert_eq!(a.allocate(now).grants[0].resources, res(2.0, 1024.0));
}

#[test]
fn draining_agent_is_not_offered_and_says_why_until_released() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(2.0, 1024.0), false);
    a.add_agent("a2", res(2.0, 1024.0), false);
    a.add_framework("f1", vec![]);
    a.set_agent_hold("a1", Some(AgentHold::Draining));
    let out = a.allocate(now);
    assert_eq!(out.grants.len(), 1);
    assert_eq!(out.grants[0].agent, "a2");
    assert_eq!(
        out.unoffered,
        vec![Unoffered::new("a1".into(), AgentReason::Draining)]
    );
    assert_eq!(out.unoffered[0].message(), "agent not offered: draining");
    a.set_agent_hold("a1", Some(AgentHold::Deactivated));
    let out = a.allocate(now);
    assert_eq!(out.unoffered[0].reason, AgentReason::Deactivated);
    assert_eq!(out.nothing_free, 1, "a2 is offered already");
    a.set_agent_hold("a1", None);
    let out = a.allocate(now);
    assert_eq!(out.grants[0].agent, "a1");
    assert!(out.unoffered.is_empty());
}

#[test]
fn no_framework_is_a_reason() {
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(1.0, 64.0), false);
    let out = a.allocate(Instant::now());
    assert_eq!(out.unoffered[0].reason, AgentReason::NoFramework);
    assert_eq!(out.unoffered[0].message(), "no framework is subscribed");
}

/// A sorter that always puts `first` first: the allocator follows whatever order it is given.
#[derive(Default)]
struct Favourite {
    inner: DrfSorter,
    first: String,
}

impl Sorter for Favourite {
    fn add_client(&mut self, c: &str, r: &str) {
        self.inner.add_client(c, r)
    }
    fn remove_client(&mut self, c: &str) {
        self.inner.remove_client(c)
    }
    fn add_total(&mut self, r: &Resources) {
        self.inner.add_total(r)
    }
    fn remove_total(&mut self, r: &Resources) {
        self.inner.remove_total(r)
    }
    fn allocated(&mut self, c: &str, r: &Resources) {
        self.inner.allocated(c, r)
    }
    fn unallocated(&mut self, c: &str, r: &Resources) {
        self.inner.unallocated(c, r)
    }
    fn allocation(&self, c: &str) -> Option<&Resources> {
        self.inner.allocation(c)
    }
    fn share(&self, c: &str) -> f64 {
        self.inner.share(c)
    }
    fn sort(&self) -> Vec<&str> {
        let mut v = self.inner.sort();
        v.sort_by_key(|c| *c != self.first);
        v
    }
}

#[test]
fn the_allocator_follows_the_order_of_any_sorter() {
    let mut a = Allocator::with_sorter(Favourite {
        first: "greedy".into(),
        ..Default::default()
    });
    for i in 0..3 {
        a.add_agent(&format!("a{i}"), res(1.0, 100.0), false);
    }
    a.add_framework("fair", vec![]);
    a.add_framework("greedy", vec![]);
    let out = a.allocate(Instant::now());
    assert!(
        out.grants.iter().all(|g| g.framework == "greedy"),
        "{out:?}"
    );
}

#[test]
fn unreachable_and_fully_used_agents_are_counted_by_reason() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("gone", res(1.0, 100.0), false);
    a.add_agent("used", res(1.0, 100.0), false);
    a.add_agent("held", res(1.0, 100.0), false);
    a.add_framework("f", vec![]);
    a.set_agent_active("gone", false);
    a.set_agent_hold("held", Some(AgentHold::Draining));
    a.allocate_to("f", "used", &res(1.0, 100.0));
    let by = a.allocate(now).agents_by_reason();
    assert_eq!(
        by,
        BTreeMap::from([
            (AgentReason::Unreachable, 1),
            (AgentReason::Draining, 1),
            (AgentReason::NothingFree, 1),
        ])
    );
}

#[test]
fn removing_an_unreachable_agent_does_not_shrink_the_cluster_twice() {
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(10.0, 1000.0), false);
    a.add_agent("a2", res(10.0, 1000.0), false);
    a.add_framework("f", vec![]);
    a.set_agent_active("a2", false);
    a.remove_agent("a2");
    a.allocate_to("f", "a1", &res(5.0, 0.0));
    assert_eq!(a.share("f"), 0.5, "5 of the 10 cpus left");
}

#[test]
fn an_offer_is_reclaimed_only_for_a_waiting_framework_that_sorts_before_its_holder() {
    let now = Instant::now();
    let mut a = Allocator::new(HashMap::new());
    a.add_agent("a1", res(2.0, 1000.0), false);
    a.add_framework("busy", vec![]);
    a.allocate_to("busy", "a1", &res(0.1, 32.0)); // its task
    let g = a.allocate(now).grants.remove(0);
    assert_eq!(g.framework, "busy");
    let held = [Outstanding {
        framework: "busy",
        agent: "a1",
        resources: &g.resources,
    }];
    assert!(a.reclaim(&held).is_empty(), "nobody waits");
    a.add_framework("late", vec![]);
    assert_eq!(
        a.reclaim(&held),
        [("busy".to_string(), "a1".to_string())],
        "late uses nothing: it sorts before busy once offers are left out"
    );
    a.suppress("late");
    assert!(
        a.reclaim(&held).is_empty(),
        "a suppressed framework waits for nothing"
    );
    a.revive("late");
    a.decline(
        "late",
        "a1",
        &Resources::default(),
        Some(now + Duration::from_secs(5)),
    );
    assert!(a.reclaim(&held).is_empty(), "late refuses a1 itself");
    a.revive("late");
    // The other way round: late holds the offer, busy (0.1 cpus used) waits behind it.
    a.recover("busy", "a1", &g.resources);
    a.allocate_to("late", "a1", &g.resources);
    let held = [Outstanding {
        framework: "late",
        agent: "a1",
        resources: &g.resources,
    }];
    assert!(
        a.reclaim(&held).is_empty(),
        "no bouncing back to the higher share"
    );
}
