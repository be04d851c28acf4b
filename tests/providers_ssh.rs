//! Provider `ssh` end to end: containers from the node image stand in for existing on-prem hosts (started by
//! the test on a network it owns, reached only at their container IPs). `examples/onprem.hcl` installs the
//! cluster over real OpenSSH, a task runs, a second apply changes nothing, destroy leaves the hosts as they were.
//! A host replaced at the same address is refused for its new host key; a wrong key is an auth error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use common::{ok, text};
use std::path::{Path, PathBuf};
use support::providers::{
    Env, agents_healthy, dcform, docker_ok as docker, kill_core, plan_sees_and_apply_mends, unique,
};

const LABEL: &str = "dcform.test=providers-ssh";

/// "Existing hosts": a network of the test's own with node-image containers; all removed on drop.
struct Hosts {
    net: String,
    prefix: String,
    names: Vec<String>,
    image: String,
    key: PathBuf,
    public: String,
}

impl Hosts {
    fn new(env: &Env, dir: &Path, tag: &str) -> Hosts {
        let net = unique(&format!("dcform-{tag}"));
        // --ip needs a subnet of our choosing; try a few until one is free on this machine.
        let seed = std::process::id() as usize;
        let mut prefix = None;
        for i in 0..40 {
            let p = format!("10.252.{}", (seed + i * 7) % 250 + 1);
            let o = support::providers::docker(&[
                "network",
                "create",
                "--label",
                LABEL,
                "--subnet",
                &format!("{p}.0/24"),
                &net,
            ]);
            if o.status.success() {
                prefix = Some(p);
                break;
            }
        }
        let prefix = prefix.expect("no free 10.252.x.0/24 subnet for the test network");
        let k = dcform_bootstrap::ssh::generate_ed25519("providers-ssh").expect("key");
        let key = dir.join("id_test");
        std::fs::write(&key, &k.private_openssh).expect("write key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        Hosts {
            net,
            prefix,
            names: Vec::new(),
            image: env.image.clone(),
            key,
            public: k.public_line,
        }
    }

    /// Starts host number `n` at `<prefix>.<10+n>` (again, if it was removed: a new machine, new host key).
    fn start(&mut self, n: usize) -> String {
        let ip = format!("{}.{}", self.prefix, 10 + n);
        let name = format!("{}-h{n}", self.net);
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            LABEL,
            "--network",
            &self.net,
            "--ip",
            &ip,
            "--init",
            "-e",
            &format!("DCFORM_AUTHORIZED_KEYS={}", self.public),
            &self.image,
        ]);
        if !self.names.contains(&name) {
            self.names.push(name);
        }
        ip
    }

    /// Host `n`'s `/etc/resolv.conf`.
    fn resolv_conf(&self, n: usize) -> String {
        docker(&[
            "exec",
            &format!("{}-h{n}", self.net),
            "cat",
            "/etc/resolv.conf",
        ])
    }

    fn remove(&self, n: usize) {
        docker(&["rm", "-f", &format!("{}-h{n}", self.net)]);
    }

    /// What dcform's install leaves on host `n`: dccore processes and installed paths (empty = clean).
    fn residue(&self, n: usize) -> String {
        let out = support::providers::docker(&[
            "exec",
            &format!("{}-h{n}", self.net),
            "sh",
            "-c",
            "pgrep -a dccore; ls -d /usr/local/bin/dccore /etc/dcform /var/lib/dcform /var/log/dcform \
             /run/dcform /etc/systemd/system/dcform-* 2>/dev/null; true",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Never a panic here: this may run while a failed test unwinds.
        let docker = |args: &[&str]| {
            let _ = dc_support::testing::try_output_within(
                support::providers::DOCKER_LIMIT,
                std::process::Command::new("docker").args(args),
            );
        };
        for n in &self.names {
            docker(&["rm", "-f", n]);
        }
        docker(&["network", "rm", &self.net]);
    }
}

/// `examples/onprem.hcl` pointed at the test's hosts.
fn onprem(dir: &Path, cluster: &str, ips: &[String]) -> String {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/onprem.hcl"),
    )
    .expect("examples/onprem.hcl");
    let mut s = src.replace("cluster \"onprem\"", &format!("cluster \"{cluster}\""));
    for (placeholder, ip) in ["192.0.2.10", "192.0.2.20", "192.0.2.21", "192.0.2.30"]
        .iter()
        .zip(ips)
    {
        assert!(s.contains(placeholder), "example changed shape");
        s = s.replace(placeholder, ip);
    }
    std::fs::write(dir.join("onprem.hcl"), s).expect("write definition");
    "onprem.hcl".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onprem_example_installs_runs_a_task_and_destroy_leaves_the_hosts_clean() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hosts = Hosts::new(&env, dir.path(), "onprem");
    let ips: Vec<String> = (0..4).map(|n| hosts.start(n)).collect();
    let cluster = unique("op");
    let def = onprem(dir.path(), &cluster, &ips);
    let key_var = format!("ssh_key={}", hosts.key.display());
    let resolv_before: Vec<String> = (0..4).map(|n| hosts.resolv_conf(n)).collect();

    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", &key_var, &def],
    )
    .await;
    let t = ok(&o, "apply over ssh");
    assert!(t.contains("Apply complete! Nodes: 4 added"), "{t}");
    // Every host resolves through the master (host 0), which relays the rest to what they had.
    for n in 0..4 {
        let r = hosts.resolv_conf(n);
        let ns: Vec<&str> = r
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver "))
            .collect();
        assert_eq!(ns, [ips[0].as_str()], "host {n}: {r}");
    }
    assert!(
        !hosts.residue(1).is_empty(),
        "nothing installed on agents-1"
    );
    let log = dir
        .path()
        .join(format!(".dcform/{cluster}/logs/masters-1.log"));
    assert!(log.is_file(), "no session log at {}", log.display());

    let (healthy, agents, status) = agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (3, 3), "{status}");
    let marker = format!("hello-{cluster}");
    assert_eq!(
        support::providers::marker_task(&status, dir.path(), &cluster, &marker)
            .await
            .trim(),
        marker
    );

    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", &key_var, &def],
    )
    .await;
    assert!(
        ok(&o, "second apply").contains("No changes"),
        "{}",
        text(&o)
    );

    // A core killed on a host: the refresh asks the host over SSH, the plan starts it again.
    let vars = ["-var", key_var.as_str()];
    kill_core(
        &env,
        dir.path(),
        "agents-1",
        &[&vars[..], &[def.as_str()]].concat(),
    )
    .await;
    let expect = ["dccore is not running on agents-1"];
    plan_sees_and_apply_mends(&env, dir.path(), &def, &vars, &expect, 3, "the core died").await;

    let o = dcform(
        &env,
        dir.path(),
        &["destroy", "--auto-approve", "-var", &key_var, &def],
    )
    .await;
    ok(&o, "destroy");
    for (n, before) in resolv_before.iter().enumerate() {
        assert_eq!(hosts.residue(n), "", "host {n} not clean after destroy");
        assert_eq!(
            &hosts.resolv_conf(n),
            before,
            "host {n}: destroy restores its resolv.conf"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_host_is_refused_for_its_host_key_and_a_wrong_key_is_an_auth_error() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hosts = Hosts::new(&env, dir.path(), "hostkey");
    let ip = hosts.start(0);
    let cluster = unique("hk");
    let body = |key: &Path| {
        format!(
            "cluster \"{cluster}\" {{\n  provider \"ssh\" {{}}\n  ssh {{\n    user = \"root\"\n    private_key = \"{}\"\n  }}\n  pool \"masters\" {{\n    role = \"master\"\n    hosts = [\"{ip}\"]\n  }}\n}}\n",
            key.display()
        )
    };
    std::fs::write(dir.path().join("one.hcl"), body(&hosts.key)).expect("write");
    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", "one.hcl"]).await;
    ok(&o, "apply");
    let state = std::fs::read_to_string(dir.path().join(format!(".dcform/{cluster}/state.json")))
        .expect("state");
    assert!(
        state.contains("\"ssh_host_key\": \"SHA256:"),
        "host key not pinned: {state}"
    );

    // Same address, new machine: nothing may run there.
    hosts.remove(0);
    hosts.start(0);
    let o = dcform(&env, dir.path(), &["destroy", "--auto-approve", "one.hcl"]).await;
    assert_ne!(
        o.status.code(),
        Some(0),
        "destroy ran on a replaced host:\n{}",
        text(&o)
    );
    let t = text(&o);
    assert!(
        t.contains("host key") && t.matches("SHA256:").count() >= 2,
        "{t}"
    );
    // The escape hatch for throwaway clusters works, and says what it costs.
    let o = dcform(
        &env,
        dir.path(),
        &[
            "destroy",
            "--auto-approve",
            "--insecure-skip-host-key",
            "one.hcl",
        ],
    )
    .await;
    assert!(ok(&o, "insecure destroy").contains("Warning: --insecure-skip-host-key"));

    // A key the host does not know: an authentication failure naming user and host, not a timeout.
    let wrong = dcform_bootstrap::ssh::generate_ed25519("wrong").expect("key");
    let wrong_path = dir.path().join("id_wrong");
    std::fs::write(&wrong_path, &wrong.private_openssh).expect("write");
    std::fs::write(dir.path().join("wrong.hcl"), body(&wrong_path)).expect("write");
    let o = dcform(
        &env,
        dir.path(),
        &[
            "apply",
            "--auto-approve",
            "--state",
            "wrong-state.json",
            "wrong.hcl",
        ],
    )
    .await;
    assert_ne!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(t.contains("authentication failed for root@"), "{t}");
}

/// Logins sshd accepted on host `n` (sshd logs to stderr, which `docker logs` passes on as its own).
fn logins(hosts: &Hosts, n: usize) -> usize {
    let out = support::providers::docker(&["logs", &format!("{}-h{n}", hosts.net)]);
    String::from_utf8_lossy(&out.stderr)
        .matches("Accepted publickey")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_bastion_is_refused_for_its_host_key_and_nothing_runs_behind_it() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hosts = Hosts::new(&env, dir.path(), "bastion");
    let bastion = hosts.start(0);
    let ip = hosts.start(1);
    let cluster = unique("bk");
    let key = hosts.key.clone();
    let body = |config: &str| {
        format!(
            "cluster \"{cluster}\" {{\n  provider \"ssh\" {{}}\n  ssh {{\n    user = \"root\"\n    private_key = \"{}\"\n    bastion = \"root@{bastion}\"\n  }}\n  core {{\n    config = {{ {config} }}\n  }}\n  pool \"masters\" {{\n    role = \"master\"\n    hosts = [\"{ip}\"]\n  }}\n}}\n",
            key.display()
        )
    };
    std::fs::write(dir.path().join("b.hcl"), body("offer_timeout = \"30s\"")).expect("write");
    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", "b.hcl"]).await;
    ok(&o, "apply through the bastion");
    let state_path = dir.path().join(format!(".dcform/{cluster}/state.json"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("json");
    let recorded = state["resources"]["ssh_bastion_host_key"]
        .as_str()
        .unwrap_or_else(|| panic!("bastion host key not recorded: {state}"))
        .to_string();
    assert!(recorded.starts_with("SHA256:"), "{recorded}");
    assert_ne!(
        Some(recorded.as_str()),
        state["nodes"][0]["ssh_host_key"].as_str(),
        "the node's key was recorded as the bastion's"
    );
    let installed = hosts.residue(1);
    assert!(
        !installed.is_empty(),
        "nothing installed behind the bastion"
    );
    // `dcform ssh` through the bastion trusts exactly the pinned keys (the user's known_hosts has none).
    let o = dcform(
        &env,
        dir.path(),
        &["ssh", "masters-1", "b.hcl", "--", "hostname"],
    )
    .await;
    ok(&o, "dcform ssh through the bastion");

    // Same address, another machine as the bastion: neither an apply that changes something nor a
    // destroy may get through it.
    hosts.remove(0);
    hosts.start(0);
    let before = logins(&hosts, 1);
    std::fs::write(dir.path().join("b.hcl"), body("offer_timeout = \"31s\"")).expect("write");
    for args in [
        ["apply", "--auto-approve", "b.hcl"],
        ["destroy", "--auto-approve", "b.hcl"],
    ] {
        let o = dcform(&env, dir.path(), &args).await;
        let t = text(&o);
        assert_ne!(
            o.status.code(),
            Some(0),
            "{} got through a replaced bastion:\n{t}",
            args[0]
        );
        assert!(
            t.contains("host key of the bastion")
                && t.contains(&recorded)
                && t.contains("ssh_bastion_host_key"),
            "{}: the refusal does not say which key changed and how to proceed:\n{t}",
            args[0]
        );
    }
    let o = dcform(
        &env,
        dir.path(),
        &["ssh", "masters-1", "b.hcl", "--", "true"],
    )
    .await;
    assert_ne!(
        o.status.code(),
        Some(0),
        "dcform ssh got through a replaced bastion"
    );
    assert!(text(&o).contains("host key of the bastion"), "{}", text(&o));
    assert_eq!(
        logins(&hosts, 1),
        before,
        "a login reached the host behind the bastion"
    );
    assert_eq!(
        hosts.residue(1),
        installed,
        "the host behind the bastion was changed"
    );
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("json");
    assert_eq!(
        after["resources"]["ssh_bastion_host_key"].as_str(),
        Some(recorded.as_str()),
        "the refused key replaced the recorded one"
    );

    // --insecure-skip-host-key still skips every check, the bastion's too.
    let o = dcform(
        &env,
        dir.path(),
        &[
            "destroy",
            "--auto-approve",
            "--insecure-skip-host-key",
            "b.hcl",
        ],
    )
    .await;
    ok(&o, "insecure destroy");
    assert_eq!(hosts.residue(1), "", "host not clean after destroy");
}

/// A node with no public address (an AWS private agent) is reached the way `apply` reaches it:
/// through the first master. `dcform exec` and `dcform ssh` both jump through the master's sshd
/// (the state has nothing else to go by), and reach the node behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_ssh_to_a_node_without_a_public_address_jump_through_the_first_master() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hosts = Hosts::new(&env, dir.path(), "route");
    let master = hosts.start(0);
    let agent = hosts.start(1);
    let cluster = unique("rt");
    let def = format!(
        "cluster \"{cluster}\" {{\n  provider \"ssh\" {{}}\n  ssh {{\n    user = \"root\"\n    private_key = \"{}\"\n  }}\n  pool \"masters\" {{\n    role = \"master\"\n    hosts = [\"{master}\"]\n  }}\n  pool \"agents\" {{\n    role = \"agent\"\n    hosts = [\"{agent}\"]\n  }}\n}}\n",
        hosts.key.display()
    );
    std::fs::write(dir.path().join("r.hcl"), def).expect("write");
    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--infra-only", "--auto-approve", "r.hcl"],
    )
    .await;
    ok(&o, "apply --infra-only");
    // Make agents-1 a private-only machine: its one address is the private one.
    let state_path = dir.path().join(format!(".dcform/{cluster}/state.json"));
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("json");
    let nodes = state["nodes"].as_array_mut().expect("nodes");
    let node = nodes
        .iter_mut()
        .find(|n| n["name"] == "agents-1")
        .unwrap_or_else(|| panic!("no agents-1 in the state: {state_path:?}"));
    node["addresses"] = serde_json::json!([]);
    node["private_address"] = serde_json::json!(agent);
    std::fs::write(
        &state_path,
        serde_json::to_vec_pretty(&state).expect("json"),
    )
    .expect("write");

    let expected = {
        let o = support::providers::docker(&["exec", &format!("{}-h1", hosts.net), "hostname"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert!(!expected.is_empty());
    for cmd in ["exec", "ssh"] {
        let through_master = logins(&hosts, 0);
        let o = dcform(
            &env,
            dir.path(),
            &[cmd, "agents-1", "r.hcl", "--", "hostname"],
        )
        .await;
        ok(&o, &format!("dcform {cmd} to the private-only agent"));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            expected,
            "dcform {cmd} reached another machine:\n{}",
            text(&o)
        );
        assert!(
            logins(&hosts, 0) > through_master,
            "dcform {cmd} did not jump through the master"
        );
    }
}
