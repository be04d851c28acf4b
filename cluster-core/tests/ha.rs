//! Replicated masters (issue 10): three in-process `dccore` masters on 127.0.0.1 with Raft over
//! HTTP, a real agent and a framework over the real HTTP API. Every wait has a deadline.

#[path = "support/ha.rs"]
mod ha;
mod support;

use ha::{HaMaster, Partition, no_redirects, start_masters, wait_leader};
use serde_json::{Value, json};
use support::{Agent, Framework, basic, eventually, framework_info, task, within};

const AGENT_RES: &str = "cpus:4;mem:4096;disk:1000";

/// One cluster at a time: three masters per test on a shared 2-core machine are enough load;
/// eighteen make heartbeats late and leaders change for no reason but the machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Subscribes a framework at the leader among `among`, again if leadership moved meanwhile
/// (the subscription is refused there with 307 or 503).
async fn subscribe_at_leader(
    masters: &[HaMaster],
    among: &[usize],
    framework_id: Option<&str>,
) -> (usize, Framework) {
    within("a framework subscribed at the leader", async {
        loop {
            let l = wait_leader(masters, among).await;
            let url = masters[l].url.clone();
            let id = framework_id.map(str::to_string);
            let sub = tokio::spawn(async move {
                Framework::subscribe_with(&url, framework_info("ha"), id.as_deref()).await
            });
            if let Ok(fw) = sub.await {
                return (l, fw);
            }
        }
    })
    .await
}

fn others(masters: &[HaMaster], but: usize) -> Vec<usize> {
    (0..masters.len()).filter(|i| *i != but).collect()
}

/// Subscribing at `url` without following redirects: status and `Location`.
async fn subscribe_status(url: &str) -> (reqwest::StatusCode, Option<String>) {
    let r = within(
        "subscribe request",
        no_redirects()
            .post(format!("{url}/api/v1/scheduler"))
            .header("authorization", basic())
            .json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info("ha")}}))
            .send(),
    )
    .await
    .expect("subscribe request");
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status(), loc)
}

fn tasks_named(tasks: &Value, id: &str) -> Vec<Value> {
    tasks["get_tasks"]["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["task_id"]["value"] == id)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_masters_elect_one_leader_and_a_task_survives_its_death() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let all: Vec<usize> = (0..3).collect();
    let l = wait_leader(&masters, &all).await;
    let leader_url = masters[l].url.clone();

    // Every master names the leader on /redirect; followers send callers there, same path.
    for m in &masters {
        let loc = eventually("/redirect names the leader", || async {
            m.redirect()
                .await
                .filter(|u| *u == format!("{leader_url}/"))
        })
        .await;
        assert_eq!(loc, format!("{leader_url}/"));
    }
    let f = others(&masters, l)[0];
    let (status, loc) = subscribe_status(&masters[f].url).await;
    assert_eq!(status, 307, "a follower redirects scheduler calls");
    let loc = loc.expect("Location");
    assert_eq!(loc, format!("{leader_url}/api/v1/scheduler"));
    let (status, _, _) = masters[f].operator_call(json!({"type": "GET_TASKS"})).await;
    assert_eq!(status, 307, "a follower redirects operator calls");

    // The framework follows the Location to the leader and launches a task there.
    let base = loc.trim_end_matches("/api/v1/scheduler").to_string();
    let _agent = Agent::start(&leader_url, &root.path().join("a1"), AGENT_RES, false).await;
    let mut fw = Framework::subscribe(&base, framework_info("ha")).await;
    let offers = fw.offers().await;
    fw.launch(&offers[0], vec![task(&offers[0], "t1", "sleep 600")])
        .await;
    fw.wait_state("t1", "TASK_RUNNING").await;

    // Every master's log has the task (GET /replica: the followers applied what the leader did).
    let leader_applied = masters[l].replica().await.expect("replica")["applied_index"]
        .as_u64()
        .expect("applied");
    for &i in &others(&masters, l) {
        eventually("the followers applied the leader's log", || async {
            let r = masters[i].replica().await?;
            (r["applied_index"].as_u64()? >= leader_applied).then_some(())
        })
        .await;
    }

    // Kill the leader: the other two elect a new one, which knows the task, running, once.
    masters[l].kill().await;
    let rest = others(&masters, l);
    let n = wait_leader(&masters, &rest).await;
    assert_ne!(n, l);
    let tasks = eventually("the new leader answers GET_TASKS", || async {
        let (status, _, text) = masters[n].operator_call(json!({"type": "GET_TASKS"})).await;
        (status == 200).then(|| serde_json::from_str::<Value>(&text).expect("JSON"))
    })
    .await;
    let t1 = tasks_named(&tasks, "t1");
    assert_eq!(t1.len(), 1, "the task is known once: {tasks}");
    assert_eq!(t1[0]["state"], "TASK_RUNNING");

    // The remaining follower now redirects to the new leader; the framework fails over to it.
    let f2 = rest.iter().copied().find(|i| *i != n).expect("a follower");
    let new_url = masters[n].url.clone();
    eventually("the follower redirects to the new leader", || async {
        let (status, loc) = subscribe_status(&masters[f2].url).await;
        (status == 307 && loc == Some(format!("{new_url}/api/v1/scheduler"))).then_some(())
    })
    .await;
    let (_, fw2) = subscribe_at_leader(&masters, &rest, Some(&fw.id)).await;
    assert_eq!(
        fw2.id, fw.id,
        "the new leader knows the framework from the log"
    );
    for i in rest {
        masters[i].kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_stops_leading_and_follows_after_healing() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let all: Vec<usize> = (0..3).collect();
    let (l, mut fw) = subscribe_at_leader(&masters, &all, None).await;
    let _agent = Agent::start(&masters[l].url, &root.path().join("a1"), AGENT_RES, false).await;
    let offers = fw.offers().await;
    assert!(!offers.is_empty());

    partition.cut(masters[l].id);
    // The cut-off leader stops acting as leader: /replica says so, scheduler calls are no
    // longer accepted there.
    eventually("the cut-off leader steps down", || async {
        let r = masters[l].replica().await?;
        (r["is_leader"] == false).then_some(())
    })
    .await;
    let (status, _) = subscribe_status(&masters[l].url).await;
    assert!(
        status == 307 || status == 503,
        "a cut-off master takes no scheduler calls (got {status})"
    );
    let rest = others(&masters, l);
    let n = wait_leader(&masters, &rest).await;

    // Heal: the old leader follows the new one and catches up with its log.
    partition.heal();
    let new_id = masters[n].id;
    eventually("the old leader follows the new one", || async {
        let leader = masters[n].replica().await?;
        let old = masters[l].replica().await?;
        let caught_up = old["applied_index"].as_u64()? >= leader["applied_index"].as_u64()?;
        (old["leader"]["id"] == new_id && old["is_leader"] == false && caught_up).then_some(())
    })
    .await;
    let loc = masters[l].redirect().await;
    assert_eq!(loc, Some(format!("{}/", masters[n].url)));
    for m in masters.iter_mut() {
        m.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_master_makes_a_fourth_voter_and_remove_master_takes_it_out_but_never_the_leader() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let l = wait_leader(&masters, &[0, 1, 2]).await;
    let joiner = ha::start_joiner(root.path(), 4, &masters, &partition).await;
    let add = json!({"type": "ADD_MASTER", "add_master": {"id": 4, "url": joiner.url}});
    let (status, _, text) = masters[l].operator_call(add.clone()).await;
    assert_eq!(status, 200, "ADD_MASTER: {text}");
    let r = masters[l].replica().await.expect("replica");
    assert_eq!(r["voters"], json!([1, 2, 3, 4]), "{r}");
    let leader_id = masters[l].id;
    eventually("the new master follows the leader", || async {
        let j = joiner.replica().await?;
        (j["leader"]["id"] == leader_id).then_some(())
    })
    .await;
    // Adding it again is done already; a follower redirects the call to the leader.
    let (status, _, _) = masters[l].operator_call(add).await;
    assert_eq!(status, 200);
    let f = others(&masters, l)[0];
    let (status, loc, _) = masters[f]
        .operator_call(json!({"type": "REMOVE_MASTER", "remove_master": {"id": 4}}))
        .await;
    assert_eq!(status, 307);
    assert_eq!(loc, Some(format!("{}/api/v1", masters[l].url)));

    let remove = json!({"type": "REMOVE_MASTER", "remove_master": {"id": 4}});
    let (status, _, text) = masters[l].operator_call(remove.clone()).await;
    assert_eq!(status, 200, "REMOVE_MASTER: {text}");
    let r = masters[l].replica().await.expect("replica");
    assert_eq!(r["voters"], json!([1, 2, 3]), "{r}");
    let (status, _, _) = masters[l].operator_call(remove).await;
    assert_eq!(status, 200, "removing a non-member is done already");
    let (status, _, text) = masters[l]
        .operator_call(json!({"type": "REMOVE_MASTER", "remove_master": {"id": leader_id}}))
        .await;
    assert_eq!(status, 409, "the leader is never removed: {text}");
    let mut joiner = joiner;
    joiner.kill().await;
    for m in masters.iter_mut() {
        m.kill().await;
    }
}

#[tokio::test]
async fn a_secret_file_others_can_read_is_refused_naming_it() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let secret = root.path().join("replica.secret");
    std::fs::write(&secret, "s3cret").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut cfg = support::fast_master_config(root.path());
    cfg.replica = dccore::replica::ReplicaSettings::parse(
        Some(1),
        Some(&[format!("1={url}")]),
        Some(secret.clone()),
    )
    .expect("settings");
    let auth = dccore::auth::Authenticator::new(support::TOKEN);
    let err = within(
        "the master refuses to start",
        dccore::api::serve(listener, cfg, auth, Default::default()),
    )
    .await
    .expect_err("a 0644 secret is refused");
    let text = dc_support::error::chain(&err);
    assert!(
        text.contains(&secret.display().to_string()) && text.contains("0600"),
        "{text}"
    );
}

/// "Act after commit": a launch the cut-off leader could not commit never reaches the agent, its
/// caller hears "not the leader", and the new leader has no such task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_that_is_not_committed_is_never_pushed_to_the_agent() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let (l, mut fw) = subscribe_at_leader(&masters, &[0, 1, 2], None).await;
    let _agent = Agent::start(&masters[l].url, &root.path().join("a1"), AGENT_RES, false).await;
    // Markers in a folder any task user may write (tasks may run as `nobody`): found, the
    // marker of the uncommitted launch went to the root-only temp folder, where no task could
    // ever write it, so its absence proved nothing. A committed launch's marker shows first
    // that a task which runs does leave one.
    let markers = root.path().join("markers");
    std::fs::create_dir(&markers).expect("markers folder");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&markers, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let offers = fw.offers().await;
    let ran = markers.join("t0-ran");
    let cmd = format!("touch {}; sleep 600", ran.display());
    let status = fw
        .call(json!({"type": "ACCEPT", "accept": {
            "offer_ids": [offers[0]["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task(&offers[0], "t0", &cmd)]}}],
            "filters": {"refuse_seconds": 0.0}}}))
        .await;
    assert_eq!(status, 202, "the committed launch");
    eventually("the committed task leaves its marker", || async {
        ran.exists().then_some(())
    })
    .await;
    let offers = fw.offers().await;
    let marker = markers.join("t1-ran");

    partition.cut(masters[l].id);
    let cmd = format!("touch {}; sleep 600", marker.display());
    let status = fw
        .call(json!({"type": "ACCEPT", "accept": {
            "offer_ids": [offers[0]["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task(&offers[0], "t1", &cmd)]}}],
            "filters": {"refuse_seconds": 0.0}}}))
        .await;
    // 503: its batch was not committed; 307: it had already stepped down.
    assert!(
        status == 503 || status == 307,
        "the ACCEPT was not committed: not the leader (got {status})"
    );
    // Stepped down: its held pushes were dropped, so nothing can reach the agent any more.
    eventually("the cut-off leader steps down", || async {
        let r = masters[l].replica().await?;
        (r["is_leader"] == false).then_some(())
    })
    .await;
    assert!(
        !marker.exists(),
        "the agent ran a task that was never committed"
    );
    let n = wait_leader(&masters, &others(&masters, l)).await;
    let tasks = eventually("the new leader answers GET_TASKS", || async {
        let (status, _, text) = masters[n].operator_call(json!({"type": "GET_TASKS"})).await;
        (status == 200).then(|| serde_json::from_str::<Value>(&text).expect("JSON"))
    })
    .await;
    assert!(tasks_named(&tasks, "t1").is_empty(), "{tasks}");
    partition.heal();
    for m in masters.iter_mut() {
        m.kill().await;
    }
}

/// A master restarted from its disk rejoins as a follower and catches up with what was
/// committed while it was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_restarted_from_its_disk_follows_and_catches_up() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let l0 = wait_leader(&masters, &[0, 1, 2]).await;
    let f = others(&masters, l0)[0];
    masters[f].kill().await;
    // A change committed by the two others while it is down: a framework subscribes.
    let (l, fw) = subscribe_at_leader(&masters, &others(&masters, f), None).await;
    let leader_applied = masters[l].replica().await.expect("replica")["applied_index"]
        .as_u64()
        .expect("applied");
    masters[f].restart().await;
    eventually("the restarted master follows and catches up", || async {
        let r = masters[f].replica().await?;
        let caught_up = r["applied_index"].as_u64()? >= leader_applied;
        (r["leader"]["id"].is_u64() && caught_up).then_some(())
    })
    .await;
    // It now knows the framework: kill the leader, and if the restarted master is elected, it
    // takes the framework's failover.
    masters[l].kill().await;
    let rest = others(&masters, l);
    let (_, again) = subscribe_at_leader(&masters, &rest, Some(&fw.id)).await;
    assert_eq!(again.id, fw.id);
    for m in masters.iter_mut() {
        m.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_masters_dns_answers_from_the_committed_log_not_only_the_leaders() {
    use hickory_server::proto::op::ResponseCode;
    use hickory_server::proto::rr::RecordType;
    use support::dns::{a_records, dns_address, udp};
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let masters = ha::start_masters_with(root.path(), 3, &partition, |c| {
        c.discovery.dns_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let all: Vec<usize> = (0..3).collect();
    let l = wait_leader(&masters, &all).await;
    let mut dns = Vec::new();
    for m in &masters {
        dns.push(dns_address(&m.dir).await);
    }
    let _agent = Agent::start(&masters[l].url, &root.path().join("a1"), AGENT_RES, false).await;
    let (_, mut fw) = subscribe_at_leader(&masters, &all, None).await;
    let offers = fw.offers().await;
    let mut t = task(&offers[0], "t1", "sleep 600");
    t["name"] = json!("web");
    fw.launch(&offers[0], vec![t]).await;
    fw.wait_state("t1", "TASK_RUNNING").await;
    // Followers answer too (nodes list every master in resolv.conf and ask the first).
    for (i, d) in dns.iter().enumerate() {
        let a = eventually("the task's A record from every master", || async {
            let r = a_records(&udp(*d, "web.ha.dccore.", RecordType::A).await);
            (!r.is_empty()).then_some(r)
        })
        .await;
        assert_eq!(a, ["127.0.0.1"], "master {i}");
    }
    fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "t1"}}}))
        .await;
    fw.wait_state("t1", "TASK_KILLED").await;
    for d in &dns {
        eventually("the A record gone from every master", || async {
            let r = udp(*d, "web.ha.dccore.", RecordType::A).await;
            (r.response_code() == ResponseCode::NXDomain).then_some(())
        })
        .await;
    }
}

/// The log does not grow without bound on running masters: with a snapshot every 20 entries
/// (5 kept behind it), a burst of changes makes every live master snapshot and purge, and a
/// follower that was down for all of it — behind the leader's purge point, so the log alone
/// cannot catch it up — comes back from its disk, installs the leader's snapshot and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_purges_bound_the_log_and_a_follower_behind_them_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = ha::start_masters_with(root.path(), 3, &partition, |c| {
        c.replica_snapshot_entries = 20;
        c.replica_keep_entries = 5;
    })
    .await;
    let l0 = wait_leader(&masters, &[0, 1, 2]).await;
    let f = others(&masters, l0)[0];
    let before = masters[f].replica().await.expect("replica")["last_log_index"]
        .as_u64()
        .expect("a log index");
    masters[f].kill().await;
    // The burst: 60 frameworks subscribing one after the other. Each is answered once its change
    // is committed, so each makes at least one log entry (found in CI: ten at a time, group
    // commit put each ten in one or two entries on a loaded machine, too few for a snapshot).
    let up = others(&masters, f);
    let mut frameworks = Vec::new();
    for _ in 0..60 {
        frameworks.push(subscribe_at_leader(&masters, &up, None).await);
    }
    let (l, first) = (frameworks[0].0, frameworks[0].1.id.clone());
    let (applied, purged) =
        eventually("every live master snapshots and purges its log", || async {
            let mut at_leader = None;
            for &i in &up {
                let r = masters[i].replica().await?;
                let (snap, purged) = (r["snapshot_index"].as_u64()?, r["purged_index"].as_u64()?);
                if snap == 0 || purged == 0 {
                    return None;
                }
                if i == l {
                    at_leader = Some((r["applied_index"].as_u64()?, purged));
                }
            }
            at_leader
        })
        .await;
    assert!(
        purged > before,
        "the leader purged past the follower's last entry ({purged} <= {before}): the test would not need a snapshot"
    );
    masters[f].restart().await;
    eventually(
        "the follower catches up from the leader's snapshot",
        || async {
            let r = masters[f].replica().await?;
            let caught_up = r["applied_index"].as_u64()? >= applied;
            let installed = r["snapshot_index"].as_u64()? > before;
            (r["leader"]["id"].is_u64() && caught_up && installed).then_some(())
        },
    )
    .await;
    // The state came with it: kill the leader; whichever master leads now takes the first
    // framework's failover by its id.
    masters[l].kill().await;
    let rest = others(&masters, l);
    let (_, again) = subscribe_at_leader(&masters, &rest, Some(&first)).await;
    assert_eq!(again.id, first);
    drop(frameworks);
    for m in masters.iter_mut() {
        m.kill().await;
    }
}

/// Across a failover the new leader delivers again the update the framework had not
/// acknowledged, and none it had: an acknowledgement answered 202 is committed. The proof that
/// the acknowledged one is not pending: updates of one task are delivered in order, so had it
/// been, it would come before that task's `TASK_KILLED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_failover_unacknowledged_updates_are_delivered_again_and_acknowledged_ones_not() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let all: Vec<usize> = (0..3).collect();
    let (l, mut fw) = subscribe_at_leader(&masters, &all, None).await;
    let list = masters
        .iter()
        .map(|m| m.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let agent = Agent::start(&list, &root.path().join("a1"), AGENT_RES, false).await;
    let offers = fw.offers().await;
    fw.launch(
        &offers[0],
        vec![
            task(&offers[0], "acked", "sleep 600"),
            task(&offers[0], "unacked", "sleep 600"),
        ],
    )
    .await;
    // "acked"'s TASK_RUNNING is acknowledged (202: committed); "unacked"'s is not.
    let mut unacked_uuid = None;
    within("both tasks running", async {
        let mut acked = false;
        while !(acked && unacked_uuid.is_some()) {
            let st = fw.update().await;
            match (st["task_id"]["value"].as_str(), st["state"].as_str()) {
                (Some("acked"), Some("TASK_RUNNING")) => {
                    fw.ack(&st).await;
                    acked = true;
                }
                (Some("unacked"), Some("TASK_RUNNING")) => unacked_uuid = Some(st["uuid"].clone()),
                _ => {}
            }
        }
    })
    .await;

    masters[l].kill().await;
    let rest = others(&masters, l);
    let (_, mut fw2) = subscribe_at_leader(&masters, &rest, Some(&fw.id)).await;
    drop(fw);
    let again = within("the unacknowledged update again", async {
        loop {
            let st = fw2.update().await;
            assert!(
                !(st["task_id"]["value"] == "acked" && st["state"] == "TASK_RUNNING"),
                "an acknowledged update was delivered again: {st}"
            );
            if st["task_id"]["value"] == "unacked" && st["state"] == "TASK_RUNNING" {
                return st;
            }
        }
    })
    .await;
    assert_eq!(Some(again["uuid"].clone()), unacked_uuid, "the same update");
    fw2.ack(&again).await;
    // Killed through the new leader (the agent follows it): its TASK_KILLED comes, and no
    // TASK_RUNNING of "acked" before it.
    assert_eq!(
        fw2.call(json!({"type": "KILL", "kill": {"task_id": {"value": "acked"}}}))
            .await,
        202
    );
    within("acked's TASK_KILLED", async {
        loop {
            let st = fw2.update_acked().await;
            if st["task_id"]["value"] != "acked" {
                continue;
            }
            assert_ne!(
                st["state"], "TASK_RUNNING",
                "the acknowledged TASK_RUNNING came again: {st}"
            );
            if st["state"] == "TASK_KILLED" {
                return;
            }
        }
    })
    .await;
    fw2.call(json!({"type": "KILL", "kill": {"task_id": {"value": "unacked"}}}))
        .await;
    fw2.wait_state("unacked", "TASK_KILLED").await;
    agent.stop().await;
    for i in rest {
        masters[i].kill().await;
    }
}

/// A master with an empty disk is added to a running group (`ADD_MASTER`: learner, caught up,
/// voter) and has what was committed before it came. Then a follower is removed and the leader
/// killed: of the three voters two remain, the new master one of them, so nothing commits
/// without it; the group still knows the framework and takes its failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_with_an_empty_disk_joins_through_add_master_and_catches_up() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let all: Vec<usize> = (0..3).collect();
    // Committed before the new master exists: a framework.
    let (l, fw) = subscribe_at_leader(&masters, &all, None).await;
    let joiner = ha::start_joiner(root.path(), 4, &masters, &partition).await;
    let (status, _, text) = masters[l]
        .operator_call(json!({"type": "ADD_MASTER", "add_master": {"id": 4, "url": joiner.url}}))
        .await;
    assert_eq!(status, 200, "ADD_MASTER: {text}");
    let leader_applied = masters[l].replica().await.expect("replica")["applied_index"]
        .as_u64()
        .expect("applied");
    eventually("the new master catches up", || async {
        let r = joiner.replica().await?;
        (r["applied_index"].as_u64()? >= leader_applied).then_some(())
    })
    .await;
    masters.push(joiner);
    let f = others(&masters, l)[0];
    let (status, _, text) = masters[l]
        .operator_call(json!({"type": "REMOVE_MASTER", "remove_master": {"id": masters[f].id}}))
        .await;
    assert_eq!(status, 200, "REMOVE_MASTER: {text}");
    masters[f].kill().await;
    masters[l].kill().await;
    let rest: Vec<usize> = (0..4).filter(|i| *i != l && *i != f).collect();
    assert!(rest.contains(&3), "the new master is one of the two left");
    let (_, again) = subscribe_at_leader(&masters, &rest, Some(&fw.id)).await;
    assert_eq!(again.id, fw.id, "the framework is known to the group");
    let r = masters[3].replica().await.expect("replica");
    assert_eq!(r["voters"].as_array().map(Vec::len), Some(3), "{r}");
    assert!(
        r["voters"].as_array().expect("voters").contains(&json!(4)),
        "{r}"
    );
    for m in masters.iter_mut() {
        m.kill().await;
    }
}

/// Regression (`tests/ha_faults.rs`): a master killed and restarted at once opens its store
/// again. Its replica's store was still open for a moment after the master stopped (a proposal
/// task, then openraft's state machine worker still held it): `DatabaseAlreadyOpen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_and_restarted_at_once_opens_its_store_again() {
    let _serial = SERIAL.lock().await;
    // RUST_LOG=dccore=warn says what still held the store.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let root = tempfile::tempdir().expect("tmp");
    let partition = Partition::default();
    let mut masters = start_masters(root.path(), 3, &partition).await;
    let all: Vec<usize> = (0..3).collect();
    for round in 0..4 {
        // The leader has something to commit while it is killed: a framework subscribing.
        let l = wait_leader(&masters, &all).await;
        let url = masters[l].url.clone();
        let sub = tokio::spawn(async move {
            let _ = no_redirects()
                .post(format!("{url}/api/v1/scheduler"))
                .header("authorization", basic())
                .json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info("ha")}}))
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await;
        });
        masters[l].kill().await;
        masters[l].restart().await;
        let _ = sub.await;
        eventually(
            &format!("round {round}: the restarted master follows"),
            || async {
                let r = masters[l].replica().await?;
                r["leader"]["id"].is_u64().then_some(())
            },
        )
        .await;
    }
    for m in masters.iter_mut() {
        m.kill().await;
    }
}
