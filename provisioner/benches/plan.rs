//! Plans a 10,000-node definition: `cargo bench -p dcform --bench plan`.
//! Prints the median and best of several runs for: loading the HCL, planning against an empty state (10,000
//! creates), planning against the applied state (no changes), and rendering the human plan.

use std::time::{Duration, Instant};

use dcform::plan::{self, CoreTarget};
use dcform::spec::{self, LoadOptions};
use dcform::state::{NodeState, NodeStatus, State};

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

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let def = dir.path().join("big.hcl");
    let mut hcl = String::from(
        "cluster \"big\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role  = \"master\"\n    count = 3\n  }\n",
    );
    // 9,997 agents over 7 pools, one of them a 997-host on-prem style list, to exercise both matchers.
    for i in 0..6 {
        hcl.push_str(&format!("  pool \"agents{i}\" {{\n    role  = \"agent\"\n    count = 1500\n    attributes = {{\n      rack = \"r{i}\"\n    }}\n  }}\n"));
    }
    hcl.push_str("  pool \"public\" {\n    role  = \"public_agent\"\n    count = 997\n  }\n}\n");
    std::fs::write(&def, hcl).expect("write definition");
    let opts = LoadOptions::default();
    let core = CoreTarget {
        version: "0.1.0".into(),
    };

    let (load_med, load_min) = time(10, || spec::load(&def, &opts).expect("valid"));
    let spec = spec::load(&def, &opts).expect("valid").spec;
    let nodes: usize = spec.pools.iter().map(|p| p.size.len()).sum();
    let empty = State::new("big", dcform::spec::ProviderKind::Local);
    let (fresh_med, fresh_min) = time(10, || plan::diff(&spec, &empty, &core));
    let fresh = plan::diff(&spec, &empty, &core);
    let mut applied = State::new("big", dcform::spec::ProviderKind::Local);
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
            ssh_host_key: Some("SHA256:x".into()),
            core_version: Some(core.version.clone()),
            config_hash: c.config_hash.clone(),
            status: NodeStatus::Running,
        })
        .collect();
    applied
        .nodes
        .sort_by(|a, b| (&a.pool, a.index).cmp(&(&b.pool, b.index)));
    let (noop_med, noop_min) = time(10, || plan::diff(&spec, &applied, &core));
    assert!(!plan::diff(&spec, &applied, &core).has_changes());
    let (render_med, _) = time(10, || plan::render_human(&fresh, false));
    let state_json = serde_json::to_string_pretty(&applied).expect("encode");
    let (state_med, _) = time(10, || {
        serde_json::from_str::<State>(&state_json).expect("decode")
    });
    let total = load_med + state_med + noop_med.max(fresh_med) + render_med;
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model()
    );
    println!("nodes: {nodes}");
    println!(
        "load HCL:                 median {:>8.2?}  best {:>8.2?}",
        load_med, load_min
    );
    println!(
        "plan vs empty state:      median {:>8.2?}  best {:>8.2?}",
        fresh_med, fresh_min
    );
    println!(
        "plan vs applied (no-op):  median {:>8.2?}  best {:>8.2?}",
        noop_med, noop_min
    );
    println!("render human plan:        median {:>8.2?}", render_med);
    println!(
        "parse 10,000-node state:  median {:>8.2?}  ({} KiB)",
        state_med,
        state_json.len() / 1024
    );
    println!(
        "load + state + plan + render: {:>8.2?}  (target <= 200 ms)",
        total
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}
