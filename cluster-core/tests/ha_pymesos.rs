//! An unmodified pymesos scheduler follows the leader of three in-process replicated masters
//! (issue 10).
//!
//! pymesos (0.3.15) without ZooKeeper knows one master address (`host:port`; it does not take a
//! list: `Connection` splits the address at `:` once): it subscribes there, follows a `307`'s
//! `Location` (`urlparse(..).netloc`, so our absolute URL works as Mesos' `//host:port/...`
//! does) and remembers the master it was sent to; on `503` it reconnects to the same address,
//! and when its stream ends it reconnects to the address it remembers, with backoff (2, 4, 8,
//! 15 s). So it finds a new leader through that one address: here the old leader, killed and
//! restarted from its disk as a follower, redirects it. (Given a master that never comes back,
//! pymesos has nothing else to ask: that needs its ZooKeeper detector, which dccore does not
//! offer.)

#[path = "support/agent_view.rs"]
mod agent_view;
#[path = "support/ha.rs"]
mod ha;
mod support;

use agent_view::{LAUNCH_MARKER, Reaper, agents_view};
use ha::{Partition, start_masters, wait_leader};
use serde_json::{Value, json};
use std::path::PathBuf;
use support::{Agent, PRINCIPAL, SECRET, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};

const AGENT_RES: &str = "cpus:2;mem:1024;disk:1000";

/// Launches `first` on its first offer, `second` on an offer after it re-registered; prints
/// what it hears, one line each, for the test to follow.
const SCHEDULER: &str = r#"
import sys
from pymesos import MesosSchedulerDriver, Scheduler
from addict import Dict

def say(*words):
    print(*words, flush=True)

class S(Scheduler):
    def __init__(self, cmd):
        self.cmd = cmd
        self.launched = []
        self.reregistered_ = False
    def registered(self, driver, framework_id, master):
        say("registered", framework_id.value, "%s:%s" % (master.hostname, master.port))
    def reregistered(self, driver, master):
        self.reregistered_ = True
        say("reregistered", driver.framework_id, "%s:%s" % (master.hostname, master.port))
    def resourceOffers(self, driver, offers):
        for o in offers:
            want = None
            if "first" not in self.launched:
                want = "first"
            elif self.reregistered_ and "second" not in self.launched:
                want = "second"
            if want is None:
                driver.declineOffer(o.id, Dict(refuse_seconds=1))
                continue
            t = Dict()
            t.task_id.value = want
            t.agent_id.value = o.agent_id.value
            t.name = want
            t.command.value = self.cmd
            t.command.shell = True
            t.resources = [dict(name="cpus", type="SCALAR", scalar={"value": 0.1}),
                           dict(name="mem", type="SCALAR", scalar={"value": 32})]
            driver.launchTasks(o.id, [t])
            self.launched.append(want)
            say("launched", want)
    def statusUpdate(self, driver, update):
        say("update", update.task_id.value, update.state)

fw = Dict(user="root", name="pymesos-ha", hostname="localhost", failover_timeout=3600.0)
driver = MesosSchedulerDriver(S(sys.argv[4]), fw, sys.argv[1], use_addict=True,
                              principal=sys.argv[2], secret=sys.argv[3])
driver.start()
sys.stdin.read()  # until the test is done
"#;

/// The next line the scheduler prints that starts with `prefix`; the lines on the way are kept.
async fn line_starting(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    prefix: &str,
    stderr: &std::path::Path,
) -> String {
    let wait = async {
        loop {
            match lines.next_line().await.expect("read pymesos stdout") {
                Some(l) => {
                    seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return Some(l);
                    }
                }
                None => return None,
            }
        }
    };
    match tokio::time::timeout(support::WAIT, wait).await {
        Ok(Some(l)) => l,
        outcome => panic!(
            "pymesos {} before printing {prefix:?}; it printed {seen:?}; its stderr:\n{}",
            if outcome.is_ok() {
                "exited"
            } else {
                "waited 30 s"
            },
            std::fs::read_to_string(stderr).unwrap_or_default()
        ),
    }
}

/// Waits until `m`'s `/metrics` count no status update awaiting acknowledgement.
async fn unacknowledged_none(m: &ha::HaMaster) {
    eventually("the leader has every update acknowledged", || async {
        let text = support::http()
            .get(format!("{}/metrics", m.url))
            .header("authorization", support::bearer())
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .any(|l| l == "dccore_status_updates_unacknowledged 0")
            .then_some(())
    })
    .await
}

/// `GET_TASKS` on the leader among `among`, asked again while a new leader takes over.
async fn leader_tasks(masters: &[ha::HaMaster], among: &[usize]) -> Vec<Value> {
    eventually("the leader answers GET_TASKS", || async {
        let l = wait_leader(masters, among).await;
        let (status, _, text) = masters[l].operator_call(json!({"type": "GET_TASKS"})).await;
        let v: Value = serde_json::from_str(&text).ok()?;
        (status == 200).then(|| {
            v["get_tasks"]["tasks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unmodified_pymesos_scheduler_follows_the_new_leader_and_keeps_its_framework_and_task() {
    let python = match std::env::var("DCFORM_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            dc_support::testing::missing(
                "DCFORM_TEST_PYTHON (a python with pymesos, built by .ci/setup-python.sh) is not set",
            );
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().to_path_buf();
    let partition = Partition::default();
    let mut masters = start_masters(&root, 3, &partition).await;
    let all = [0, 1, 2];
    let l = wait_leader(&masters, &all).await;
    let list = masters
        .iter()
        .map(|m| m.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let dirs: Vec<PathBuf> = (0..2).map(|i| root.join(format!("a{i}"))).collect();
    let _reaper = Reaper(dirs.clone());
    let mut agents = Vec::new();
    for d in &dirs {
        agents.push(Agent::start(&list, d, AGENT_RES, false).await);
    }

    // pymesos is given the leader's address (one `host:port`, as it takes it).
    let script = root.join("scheduler.py");
    std::fs::write(&script, SCHEDULER).expect("write the scheduler");
    let stderr = root.join("pymesos.stderr");
    let leader_addr = masters[l].url.trim_start_matches("http://").to_string();
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .args([&leader_addr, PRINCIPAL, SECRET])
        .arg(format!("{LAUNCH_MARKER}; sleep 600"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start python");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let registered = line_starting(&mut lines, &mut seen, "registered ", &stderr).await;
    let fid = registered
        .split(' ')
        .nth(1)
        .expect("a framework id")
        .to_string();
    line_starting(&mut lines, &mut seen, "update first TASK_RUNNING", &stderr).await;
    // pymesos prints the update before it acknowledges it, and its calls are synchronous: one
    // that fails (a master going down answers 503, or resets the connection) ends its driver,
    // in front of Mesos too. So the leader is killed once it has the acknowledgement.
    unacknowledged_none(&masters[l]).await;

    // The leader dies; the other two elect one. The old leader comes back from its disk as a
    // follower, and the address pymesos knows now redirects it to the new leader.
    masters[l].kill().await;
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != l).collect();
    let n = wait_leader(&masters, &rest).await;
    masters[l].restart().await;
    let again = line_starting(&mut lines, &mut seen, "reregistered ", &stderr).await;
    let new_addr = masters[n].url.trim_start_matches("http://");
    assert_eq!(
        again,
        format!("reregistered {fid} {new_addr}"),
        "the same framework, at the new leader"
    );
    line_starting(&mut lines, &mut seen, "update second TASK_RUNNING", &stderr).await;

    // The new leader has both tasks running, once each; the first was not launched again.
    let tasks = leader_tasks(&masters, &all).await;
    let ours: Vec<(String, String)> = tasks
        .iter()
        .filter(|t| t["framework_id"]["value"] == fid.as_str())
        .map(|t| {
            (
                t["task_id"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut sorted = ours.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("first".to_string(), "TASK_RUNNING".to_string()),
            ("second".to_string(), "TASK_RUNNING".to_string())
        ],
        "{tasks:?}"
    );
    let on_agents = agents_view(&dirs, &fid);
    for id in ["first", "second"] {
        let seen_on = on_agents.get(id).cloned().unwrap_or_default();
        assert_eq!(seen_on.len(), 1, "{id} is on one agent: {seen_on:?}");
        assert_eq!(seen_on[0].launches, 1, "{id} started once: {seen_on:?}");
        assert!(seen_on[0].live, "{id} runs: {seen_on:?}");
    }
    let first_states: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with("update first "))
        .collect();
    assert!(
        first_states.iter().all(|l| l.ends_with("TASK_RUNNING")),
        "the first task only ever ran: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("launched ")).count(),
        2,
        "two launches in all: {seen:?}"
    );

    drop(child.stdin.take());
    let _ = child.kill().await;
    for a in agents {
        a.stop().await;
    }
    for m in masters.iter_mut() {
        m.kill().await;
    }
}
