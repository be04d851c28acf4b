//! Plans two 10,000-node definitions: `cargo bench -p dcform --bench plan`.
//!
//! Both have the same shape (3 masters, 6 agent pools of 1,500, a public pool of 997) and differ in
//! how a pool names its machines, which selects the planner's matcher:
//! - **count pools** (`provider "local"`, `count = N`): nodes are matched by index;
//! - **host lists** (`provider "ssh"`, `hosts = [...]`): nodes are matched by host; the public pool
//!   is a 997-entry `hosts` list, and one more plan removes one host from the middle of that list
//!   (the host matcher keeps every other node's name).
//!
//! For each: load the HCL, parse the applied 10,000-node state file, plan against an empty state
//! (10,000 creates), plan against the applied state (no changes), render the human plan. Prints
//! the median and best of several runs. No host is contacted: planning does no I/O.

use std::path::Path;
use std::time::{Duration, Instant};

use dcform::plan::{self, CoreTarget};
use dcform::spec::{self, LoadOptions, ProviderKind};
use dcform::state::{NodeState, NodeStatus, State};

const RUNS: usize = 10;

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut d: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    d.sort();
    (d[d.len() / 2], d[0])
}

/// The pools of both definitions: (name, role, size).
const POOLS: [(&str, &str, usize); 8] = [
    ("masters", "master", 3),
    ("agents0", "agent", 1500),
    ("agents1", "agent", 1500),
    ("agents2", "agent", 1500),
    ("agents3", "agent", 1500),
    ("agents4", "agent", 1500),
    ("agents5", "agent", 1500),
    ("public", "public_agent", 997),
];

/// A definition with `count = N` pools (`provider "local"`).
fn count_definition() -> String {
    let mut hcl = String::from("cluster \"big\" {\n  provider \"local\" {}\n");
    for (name, role, n) in POOLS {
        hcl.push_str(&format!(
            "  pool \"{name}\" {{\n    role  = \"{role}\"\n    count = {n}\n{}  }}\n",
            attributes(name)
        ));
    }
    hcl.push_str("}\n");
    hcl
}

/// The same shape with `hosts = [...]` lists (`provider "ssh"`); every host a distinct address.
/// `skip` leaves one host out of the public pool's list.
fn hosts_definition(skip: Option<usize>) -> String {
    let mut hcl = String::from(
        "cluster \"big\" {\n  provider \"ssh\" {}\n  ssh {\n    user = \"root\"\n  }\n",
    );
    let mut next = 0usize;
    for (p, (name, role, n)) in POOLS.into_iter().enumerate() {
        let hosts: Vec<String> = (0..n)
            .filter(|&i| !(name == "public" && Some(i) == skip))
            .map(|i| {
                let k = next + i;
                format!("\"10.{p}.{}.{}\"", k / 250, k % 250 + 1)
            })
            .collect();
        next += n;
        hcl.push_str(&format!(
            "  pool \"{name}\" {{\n    role  = \"{role}\"\n    hosts = [{}]\n{}  }}\n",
            hosts.join(", "),
            attributes(name)
        ));
    }
    hcl.push_str("}\n");
    hcl
}

fn attributes(pool: &str) -> String {
    match pool.strip_prefix("agents") {
        Some(i) => format!("    attributes = {{\n      rack = \"r{i}\"\n    }}\n"),
        None => String::new(),
    }
}

/// The state `apply` would leave after carrying out `fresh`.
fn applied_state(provider: ProviderKind, fresh: &plan::Plan, core: &CoreTarget) -> State {
    let mut applied = State::new("big", provider);
    applied.nodes = fresh
        .actions()
        .map(|c| NodeState {
            name: c.node.clone(),
            pool: c.pool.clone(),
            index: c.index,
            role: c.role,
            host: c.host.clone(),
            provider_id: Some(format!("id-{}", c.node)),
            addresses: vec!["10.0.0.1".into()],
            private_address: None,
            ssh_host_key: Some("SHA256:x".into()),
            core_version: Some(core.version.clone()),
            config_hash: c.config_hash.clone(),
            status: NodeStatus::Running,
            // Masters as apply leaves them: each with its id in the group, a member of it.
            replica_id: c.replica_id,
            replica_member: c.role == dcform::spec::Role::Master,
        })
        .collect();
    applied
        .nodes
        .sort_by(|a, b| (&a.pool, a.index).cmp(&(&b.pool, b.index)));
    applied
}

fn bench(label: &str, provider: ProviderKind, def: &Path, core: &CoreTarget) -> State {
    let opts = LoadOptions::default();
    let (load_med, load_min) = time(RUNS, || spec::load(def, &opts).expect("valid"));
    let spec = spec::load(def, &opts).expect("valid").spec;
    let nodes: usize = spec.pools.iter().map(|p| p.size.len()).sum();
    let empty = State::new("big", provider);
    let (fresh_med, fresh_min) = time(RUNS, || plan::diff(&spec, &empty, core, None));
    let fresh = plan::diff(&spec, &empty, core, None);
    assert_eq!(fresh.actions().count(), nodes, "one create per node");
    let applied = applied_state(provider, &fresh, core);
    let (noop_med, noop_min) = time(RUNS, || plan::diff(&spec, &applied, core, None));
    assert!(!plan::diff(&spec, &applied, core, None).has_changes());
    let (render_med, _) = time(RUNS, || plan::render_human(&fresh, false));
    let state_json = serde_json::to_string_pretty(&applied).expect("encode");
    let (state_med, _) = time(RUNS, || {
        serde_json::from_str::<State>(&state_json).expect("decode")
    });
    let total = load_med + state_med + noop_med.max(fresh_med) + render_med;
    println!("{label}: {nodes} nodes");
    println!(
        "  load HCL ({:.1} KiB):      median {:>8.2?}  best {:>8.2?}",
        std::fs::metadata(def)
            .map(|m| m.len() as f64 / 1024.0)
            .unwrap_or(0.0),
        load_med,
        load_min
    );
    println!(
        "  parse state ({} KiB):    median {:>8.2?}",
        state_json.len() / 1024,
        state_med
    );
    println!(
        "  plan vs empty state:      median {:>8.2?}  best {:>8.2?}",
        fresh_med, fresh_min
    );
    println!(
        "  plan vs applied (no-op):  median {:>8.2?}  best {:>8.2?}",
        noop_med, noop_min
    );
    println!("  render human plan:        median {:>8.2?}", render_med);
    println!(
        "  load + state + plan + render: {:>8.2?}  (target for the whole process: <= 50 ms)",
        total
    );
    applied
}

fn main() {
    println!("machine: {}", dc_support::testing::machine());
    let dir = tempfile::tempdir().expect("tempdir");
    let core = CoreTarget {
        version: "0.1.0".into(),
    };

    let counts = dir.path().join("count.hcl");
    std::fs::write(&counts, count_definition()).expect("write definition");
    bench(
        "count pools (provider local, public pool count = 997)",
        ProviderKind::Local,
        &counts,
        &core,
    );

    let lists = dir.path().join("hosts.hcl");
    std::fs::write(&lists, hosts_definition(None)).expect("write definition");
    let applied = bench(
        "host lists (provider ssh, public pool a 997-entry hosts list)",
        ProviderKind::Ssh,
        &lists,
        &core,
    );

    // One host removed from the middle of the 997-entry list: one change, no renames.
    let shorter = dir.path().join("hosts-minus-one.hcl");
    std::fs::write(&shorter, hosts_definition(Some(498))).expect("write definition");
    let spec = spec::load(&shorter, &LoadOptions::default())
        .expect("valid")
        .spec;
    let (med, best) = time(RUNS, || plan::diff(&spec, &applied, &core, None));
    let changes = plan::diff(&spec, &applied, &core, None).actions().count();
    println!(
        "  plan, one host removed from the 997-entry list: median {med:>8.2?}  best {best:>8.2?}  ({changes} change(s))"
    );
}
