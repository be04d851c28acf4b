//! Allocator alone: place 1,000,000 tasks on 10,000 simulated agents.
//!
//! 10 frameworks each want 100,000 tasks of 1 cpu / 1 GiB; each agent has 100 cpus / 100 GiB.
//! Every cycle: `allocate(now)` -> each offer is packed with tasks (one fit check and one
//! subtraction per task, as a framework would) -> the unused rest is declined back. Two runs:
//! frameworks that take all they can from an offer, and frameworks that launch at most 10 tasks
//! per offer (so an agent is offered ~10 times, to different frameworks, over many cycles).
//! Run with `cargo bench -p dccore --bench allocator`.

mod common;

use dccore::allocator::Allocator;
use dccore::proto::Resources;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const AGENTS: usize = 10_000;
const FRAMEWORKS: usize = 10;
const TASKS: usize = 1_000_000;

fn main() {
    run(usize::MAX);
    run(10);
}

fn run(per_offer: usize) {
    let mut alloc = Allocator::new(HashMap::new());
    for i in 0..AGENTS {
        alloc.add_agent(
            &format!("agent-{i:05}"),
            Resources::new(100.0, 102_400.0, 0.0),
            false,
        );
    }
    let mut want: HashMap<String, usize> = HashMap::new();
    for f in 0..FRAMEWORKS {
        let id = format!("fw-{f:02}");
        alloc.add_framework(&id, vec!["*".into()]);
        want.insert(id, TASKS / FRAMEWORKS);
    }
    let task = Resources::new(1.0, 1024.0, 0.0);
    let mut now = tokio::time::Instant::now();
    let started = Instant::now();
    let (mut placed, mut cycles, mut offers) = (0usize, 0usize, 0usize);
    while placed < TASKS {
        let out = alloc.allocate(now);
        cycles += 1;
        offers += out.grants.len();
        if out.grants.is_empty() {
            break;
        }
        for g in out.grants {
            let left = want.get_mut(&g.framework).expect("framework exists");
            let mut avail = g.resources.clone();
            let mut n = 0;
            while *left > 0 && n < per_offer && avail.contains(&task) {
                n += 1;
                avail.subtract(&task);
                *left -= 1;
                placed += 1;
            }
            // The unused rest goes back, filtered for this framework for 5 s (simulated time).
            alloc.decline(
                &g.framework,
                &g.agent,
                &avail,
                Some(now + Duration::from_secs(5)),
            );
        }
        now += Duration::from_secs(1);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "allocator (max {} tasks per offer): placed {placed} tasks on {AGENTS} agents for {FRAMEWORKS} frameworks in {secs:.3} s \
         ({cycles} cycles, {offers} offers): {:.0} placements/s on {}",
        if per_offer == usize::MAX {
            "all".to_string()
        } else {
            per_offer.to_string()
        },
        placed as f64 / secs,
        common::describe()
    );
    assert_eq!(placed, TASKS, "every task must be placed");
}
