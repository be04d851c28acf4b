//! Agents configured with every master of a replicated group find the leader themselves, and
//! follow it when it changes. The masters here are stand-ins at our API boundary
//! (`support/front.rs`: leader = passes calls to a real `dccore` master, follower = 307 to the
//! leader, no leader = 503, or gone), so the agent side is tested against what the interface
//! says a master answers, with a real master behind the leader.

#[path = "support/front.rs"]
mod front;
mod support;

use dccore::agent::registration;
use front::{Front, Mode};
use serde_json::json;
use std::path::Path;
use support::*;

const REGISTER: &str = "/internal/v1/agents/register";
const STATUS: &str = "/internal/v1/agents/status";

/// Waits until the agent's registration file names `master`.
async fn registered_with(work_dir: &Path, master: &str) -> registration::Registration {
    eventually(&format!("agent registered with {master}"), || async {
        registration::read(work_dir)
            .ok()
            .filter(|r| r.master == master)
    })
    .await
}

#[tokio::test]
async fn an_agent_passes_over_a_leaderless_master_follows_a_follower_and_registers_with_the_leader()
{
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let leader = Front::start(Mode::Lead(m.url.clone())).await;
    let follower = Front::start(Mode::Follow(leader.url.clone())).await;
    let leaderless = Front::start(Mode::NoLeader).await;
    let masters = format!("{},{},{}", leaderless.url, follower.url, leader.url);
    let adir = dir.path().join("a");
    let _a = Agent::start(&masters, &adir, AGENT_RES, false).await;

    let reg = registered_with(&adir, &leader.url).await;
    m.wait_agents(1).await;
    assert!(leaderless.count(REGISTER) >= 1, "the 503 master was asked");
    assert!(follower.count(REGISTER) >= 1, "the follower was asked");
    // The redirect was followed with the credential (the leader let the agent in).
    assert!(leader.with_credential() >= 1);
    // Heartbeats go to the leader only: a later acknowledgement came through it.
    let asked = follower.total() + leaderless.total();
    eventually("heartbeats acknowledged by the leader", || async {
        registration::read(&adir)
            .ok()
            .filter(|r| r.acked_unix_ms > reg.acked_unix_ms && r.deactivated.is_some())
    })
    .await;
    assert_eq!(
        follower.total() + leaderless.total(),
        asked,
        "nothing more went to the non-leaders"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_redirect_to_a_host_that_is_not_a_configured_master_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    // A working master, but not one the agent was configured with.
    let elsewhere = Front::start(Mode::Lead(m.url.clone())).await;
    let rogue = Front::start(Mode::Follow(elsewhere.url.clone())).await;
    let leader = Front::start(Mode::Lead(m.url.clone())).await;
    let adir = dir.path().join("a");
    let _a = Agent::start(
        &format!("{},{}", rogue.url, leader.url),
        &adir,
        AGENT_RES,
        false,
    )
    .await;
    registered_with(&adir, &leader.url).await;
    assert!(rogue.count(REGISTER) >= 1, "the rogue master was asked");
    assert_eq!(
        elsewhere.total(),
        0,
        "no request (and no credential) went to the unconfigured host"
    );
    m.stop().await;
}

#[tokio::test]
async fn after_a_failover_the_agent_re_registers_with_the_new_leader_and_keeps_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let one = Front::start(Mode::Lead(m.url.clone())).await;
    let two = Front::start(Mode::Follow(one.url.clone())).await;
    let adir = dir.path().join("a");
    let _a = Agent::start(&format!("{},{}", one.url, two.url), &adir, AGENT_RES, false).await;
    let first = registered_with(&adir, &one.url).await;
    m.wait_agents(1).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("through-failover")).await;
    let offer = fw.offers().await.remove(0);
    fw.launch(&offer, vec![task(&offer, "keep", "sleep 1000")])
        .await;
    fw.wait_state("keep", "TASK_RUNNING").await;

    // The lead moves: the old leader redirects to the new one.
    two.set(Mode::Lead(m.url.clone()));
    one.set(Mode::Follow(two.url.clone()));
    let second = registered_with(&adir, &two.url).await;
    assert_eq!(second.agent_id, first.agent_id, "same agent, re-registered");
    assert!(two.count(REGISTER) >= 1);
    let tasks = m.operator("GET_TASKS").await;
    let tasks = tasks["get_tasks"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tasks.len(), 1, "one task, not lost nor doubled: {tasks:?}");
    assert_eq!(tasks[0]["task_id"]["value"], "keep");
    assert_eq!(tasks[0]["state"], "TASK_RUNNING");
    assert_eq!(m.agent_count().await, 1);

    // The new leader dies (connection refused); the old one leads again.
    one.set(Mode::Lead(m.url.clone()));
    two.stop().await;
    registered_with(&adir, &one.url).await;

    // The task still answers to its framework, and its update comes through the leader.
    let status_before = one.count(STATUS);
    assert_eq!(
        fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "keep"}}}))
            .await,
        202
    );
    fw.wait_state("keep", "TASK_KILLED").await;
    assert!(one.count(STATUS) > status_before);
    m.stop().await;
}

/// Whether a task checkpoint under the agent's work dir records `TASK_KILLED`.
fn killed_checkpoint(dir: &std::path::Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json")
                && std::fs::read_to_string(&p).is_ok_and(|t| t.contains("TASK_KILLED"))
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn a_status_update_queued_while_no_master_leads_reaches_the_next_leader() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let one = Front::start(Mode::Lead(m.url.clone())).await;
    let two = Front::start(Mode::Follow(one.url.clone())).await;
    let adir = dir.path().join("a");
    let _a = Agent::start(&format!("{},{}", one.url, two.url), &adir, AGENT_RES, false).await;
    registered_with(&adir, &one.url).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("queued")).await;
    let offer = fw.offers().await.remove(0);
    fw.launch(&offer, vec![task(&offer, "t", "sleep 1000")])
        .await;
    fw.wait_state("t", "TASK_RUNNING").await;

    // An election: nobody leads. The master (reaching the agent directly) kills the task; the
    // agent cannot report it anywhere yet.
    one.set(Mode::NoLeader);
    two.set(Mode::NoLeader);
    assert_eq!(
        fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "t"}}}))
            .await,
        202
    );
    // The agent has the update (its checkpoint says so) while nobody leads. Whether it tried to
    // send it to master one first depends on whether a heartbeat's 503 came before: either way
    // it stays queued, so the checkpoint is what is waited for.
    eventually("the agent killed the task and checkpointed it", || async {
        killed_checkpoint(&adir).then_some(())
    })
    .await;

    // Master two is elected: the agent finds it, re-registers and delivers the queued update.
    two.set(Mode::Lead(m.url.clone()));
    one.set(Mode::Follow(two.url.clone()));
    registered_with(&adir, &two.url).await;
    let killed = fw.wait_state("t", "TASK_KILLED").await;
    assert_eq!(killed["task_id"]["value"], "t");
    assert!(two.count(STATUS) >= 1, "delivered through the new leader");
    m.stop().await;
}

#[tokio::test]
async fn the_agent_binary_refuses_to_start_without_a_master() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = within(
        "dccore agent exits",
        tokio::process::Command::new(BIN)
            .args(["agent", "--listen", "127.0.0.1:0", "--work-dir"])
            .arg(dir.path().join("w"))
            .arg("--token-file")
            .arg(&token)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run dccore");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--master"), "{err}");
}

fn no_redirects() -> reqwest::Client {
    dccore::tls::install_default_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_operator_client_follows_a_follower_to_the_leader_with_its_token() {
    use dccore_api::client::OperatorClient;
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let leader = Front::start(Mode::Lead(m.url.clone())).await;
    let follower = Front::start(Mode::Follow(leader.url.clone())).await;
    // reqwest's own redirect policy (which drops the token across hosts) or none: both work.
    for http in [no_redirects(), support::http()] {
        let c = OperatorClient::with_masters(http, &[&follower.url, &leader.url], TOKEN);
        within("GET_HEALTH", c.get_health())
            .await
            .expect("answered by the leader");
        assert_eq!(c.master(), leader.url, "the leader is remembered");
        let asked = follower.total();
        within("GET_AGENTS", c.get_agents())
            .await
            .expect("answered by the leader");
        assert_eq!(follower.total(), asked, "the next call went to the leader");
    }
    assert!(follower.count("/api/v1") >= 2);
    assert!(leader.with_credential() >= 2);
    m.stop().await;
}

#[tokio::test]
async fn the_operator_client_sends_its_token_only_to_masters_it_was_given() {
    use dccore_api::client::{ClientError, MAX_HOPS, OperatorClient};
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let leader = Front::start(Mode::Lead(m.url.clone())).await;
    let follower = Front::start(Mode::Follow(leader.url.clone())).await;
    let c = OperatorClient::with_http(no_redirects(), &follower.url, TOKEN);
    let e = within("GET_HEALTH", c.get_health()).await.unwrap_err();
    assert!(matches!(e, ClientError::Redirect { .. }), "{e}");
    assert!(e.to_string().contains("not one of the masters"), "{e}");
    assert_eq!(leader.total(), 0, "nothing went to the unnamed host");

    // Two masters naming each other (an election in flux): bounded, and says so.
    let a = Front::start(Mode::NoLeader).await;
    let b = Front::start(Mode::Follow(a.url.clone())).await;
    a.set(Mode::Follow(b.url.clone()));
    let c = OperatorClient::with_masters(no_redirects(), &[&a.url, &b.url], TOKEN);
    let e = within("GET_HEALTH", c.get_health()).await.unwrap_err();
    assert!(matches!(e, ClientError::TooManyRedirects { .. }), "{e}");
    assert_eq!(
        a.total() + b.total(),
        MAX_HOPS + 1,
        "one call, bounded hops"
    );

    // With nobody leading (503) on one master, the other is asked.
    a.set(Mode::NoLeader);
    let c = OperatorClient::with_masters(no_redirects(), &[&a.url, &leader.url], TOKEN);
    within("GET_HEALTH", c.get_health())
        .await
        .expect("answered by the master that leads");
    m.stop().await;
}
