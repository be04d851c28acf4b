//! The allocator alone, and the framework-side matching alone, each timed on its own.
//!
//! 1. **Allocation cycle** (`Allocator::allocate(now)`: the allocator's state → the grants the
//!    master turns into offers), at 1,000 and 10,000 agents of 100 cpus / 100 GiB and 10
//!    frameworks, weighted DRF:
//!    - *every agent free*: each cycle offers every agent (the worst case: one DRF pick and one
//!      grant per agent). Between timed cycles the grants are recovered, untimed, so every cycle
//!      starts from the same state.
//!    - *nothing free*: every agent fully allocated, so a cycle only walks the agents and offers
//!      nothing (what the master pays on each allocation tick of a full cluster).
//! 2. **Offer → placements** (framework-side matching, *not* master work): the offers of one cycle
//!    at 10,000 agents are packed with tasks of 1 cpu / 1 GiB (one fit check and one subtraction
//!    per task, as a framework's matcher does), 100 tasks per offer, 1,000,000 placements.
//!
//! Neither figure is a launch rate: the end-to-end rate (ACCEPT → agent launch → TASK_RUNNING →
//! ACKNOWLEDGE over HTTP) is `cargo bench -p dccore --bench master_http`.
//!
//! `cargo bench -p dccore --bench allocator [-- --quick]` (`--quick`: fewer repetitions).

mod common;

use dccore::allocator::{Allocation, Allocator};
use dccore::proto::Resources;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const FRAMEWORKS: usize = 10;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 5 } else { 21 };
    println!("machine: {}", common::describe());
    println!("1. allocation cycle: allocate(now) -> grants (offers), {FRAMEWORKS} frameworks, DRF");
    for agents in [1_000, 10_000] {
        cycle_every_agent_free(agents, reps);
        cycle_nothing_free(agents, reps);
    }
    println!(
        "2. offer -> placements: framework-side matching (fit check + subtraction), no master"
    );
    matching(10_000, 100, reps);
}

/// An allocator with `agents` agents of 100 cpus / 100 GiB and [`FRAMEWORKS`] frameworks.
fn cluster(agents: usize) -> Allocator {
    let mut alloc = Allocator::new(HashMap::new());
    for i in 0..agents {
        alloc.add_agent(
            &format!("agent-{i:05}"),
            Resources::new(100.0, 102_400.0, 0.0),
            false,
        );
    }
    for f in 0..FRAMEWORKS {
        alloc.add_framework(&format!("fw-{f:02}"), vec!["*".into()]);
    }
    alloc
}

/// Median and best of `samples`.
fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[0])
}

fn cycle_every_agent_free(agents: usize, reps: usize) {
    let mut alloc = cluster(agents);
    let now = tokio::time::Instant::now();
    let mut samples = Vec::with_capacity(reps);
    let mut offers = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let out: Allocation = black_box(alloc.allocate(now));
        samples.push(t.elapsed());
        offers = out.grants.len();
        assert_eq!(offers, agents, "every free agent is offered");
        // Untimed: give everything back so the next cycle starts from the same state.
        for g in &out.grants {
            alloc.recover(&g.framework, &g.agent, &g.resources);
        }
    }
    let (med, best) = stats(samples);
    println!(
        "   {agents:>6} agents, every agent free:  median {:>9.3} ms per cycle (best {:.3} ms), {offers} offers per cycle = {:.0} offers/s",
        ms(med),
        ms(best),
        offers as f64 / med.as_secs_f64()
    );
}

fn cycle_nothing_free(agents: usize, reps: usize) {
    let mut alloc = cluster(agents);
    let now = tokio::time::Instant::now();
    // The first cycle hands out everything; it is not timed.
    let first = alloc.allocate(now);
    assert_eq!(first.grants.len(), agents);
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let out = black_box(alloc.allocate(now));
        samples.push(t.elapsed());
        assert!(out.grants.is_empty(), "nothing is left to offer");
    }
    let (med, best) = stats(samples);
    println!(
        "   {agents:>6} agents, nothing free:      median {:>9.3} ms per cycle (best {:.3} ms), 0 offers",
        ms(med),
        ms(best)
    );
}

fn matching(agents: usize, per_offer: usize, reps: usize) {
    let mut alloc = cluster(agents);
    let offers = alloc.allocate(tokio::time::Instant::now()).grants;
    let task = Resources::new(1.0, 1024.0, 0.0);
    let mut samples = Vec::with_capacity(reps);
    let mut placed = 0;
    for _ in 0..reps {
        let t = Instant::now();
        placed = 0;
        for o in &offers {
            let mut avail = o.resources.clone();
            let mut n = 0;
            while n < per_offer && avail.contains(&task) {
                avail.subtract(&task);
                n += 1;
            }
            placed += n;
            black_box(&avail);
        }
        samples.push(t.elapsed());
    }
    assert_eq!(
        placed,
        agents * per_offer,
        "every offer fits {per_offer} tasks"
    );
    let (med, best) = stats(samples);
    println!(
        "   {} offers x {per_offer} tasks = {placed} placements: median {:.3} ms (best {:.3} ms) = {:.0} placements/s ({:.2} us per offer)",
        offers.len(),
        ms(med),
        ms(best),
        placed as f64 / med.as_secs_f64(),
        med.as_secs_f64() * 1e6 / offers.len() as f64
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
