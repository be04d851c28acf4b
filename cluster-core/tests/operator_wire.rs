//! The typed operator API of `dccore-api` against what a real master puts on the wire: every
//! answer is read into [`Response`] and written back, and must come out as the master sent it, so
//! no field dccore writes is missing from (or misnamed in) the types dcform builds on. The
//! cluster is shaped so that every list and optional field of the answers is filled: attributes,
//! a public agent, a deactivated one, a drained one, an unreachable one, running, finished and
//! unreachable tasks, a torn-down framework, and after a restart recovered agents and frameworks.
//! The maintenance calls go through the typed [`Call`] and [`OperatorClient`].

mod support;

use dccore_api::client::OperatorClient;
use dccore_api::operator::{
    Call, DrainState, GetAgents, GetFrameworks, GetTasks, Response, Teardown,
};
use dccore_api::proto::{Id, TaskState, parse_attributes};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use support::*;

/// The query calls, each with the answer it must get.
const QUERIES: [Call; 5] = [
    Call::GetHealth,
    Call::GetAgents,
    Call::GetFrameworks,
    Call::GetTasks,
    Call::GetState,
];

/// `call`'s raw answer from the master, read into the typed [`Response`]; fails the test unless
/// writing it back gives the raw JSON again.
async fn typed_answer(m: &Master, call: &Call) -> Response {
    let raw = m.operator(call.name()).await;
    let typed: Response = serde_json::from_value(raw.clone()).unwrap_or_else(|e| {
        panic!(
            "{} does not read as the typed answer: {e}\n{raw:#}",
            call.name()
        )
    });
    assert_eq!(typed.name(), call.name(), "answer of another call");
    let back = serde_json::to_value(&typed).expect("serialize the typed answer");
    assert_eq!(
        back,
        raw,
        "{}: the typed answer loses or changes a field\n typed: {back:#}\n raw: {raw:#}",
        call.name()
    );
    typed
}

/// Every query's typed answer (each checked against the raw JSON).
async fn all_answers(m: &Master) -> HashMap<&'static str, Response> {
    let mut out = HashMap::new();
    for call in &QUERIES {
        out.insert(call.name(), typed_answer(m, call).await);
    }
    out
}

fn agents_of<'a>(answers: &'a HashMap<&'static str, Response>) -> &'a GetAgents {
    match &answers["GET_AGENTS"] {
        Response::GetAgents { get_agents } => get_agents,
        other => panic!("GET_AGENTS answered {}", other.name()),
    }
}

fn tasks_of<'a>(answers: &'a HashMap<&'static str, Response>) -> &'a GetTasks {
    match &answers["GET_TASKS"] {
        Response::GetTasks { get_tasks } => get_tasks,
        other => panic!("GET_TASKS answered {}", other.name()),
    }
}

fn frameworks_of<'a>(answers: &'a HashMap<&'static str, Response>) -> &'a GetFrameworks {
    match &answers["GET_FRAMEWORKS"] {
        Response::GetFrameworks { get_frameworks } => get_frameworks,
        other => panic!("GET_FRAMEWORKS answered {}", other.name()),
    }
}

/// The agent id registered with `url`.
async fn id_of(m: &Master, url: &str) -> String {
    let a = m.agent_by_url(url).await.expect("agent listed");
    a["agent_info"]["id"]["value"]
        .as_str()
        .expect("agent id")
        .to_string()
}

/// One offer on each agent of `ids`, from the framework's next OFFERS events.
async fn offers_on(fw: &mut Framework, ids: &[&str]) -> HashMap<String, Value> {
    within("offers on every agent", async {
        let mut got = HashMap::new();
        while got.len() < ids.len() {
            for o in fw.offers().await {
                let agent = o["agent_id"]["value"].as_str().unwrap_or("").to_string();
                if ids.contains(&agent.as_str()) {
                    got.entry(agent).or_insert(o);
                } else {
                    fw.decline(&o, 0.0).await;
                }
            }
        }
        got
    })
    .await
}

#[tokio::test]
async fn every_operator_answer_reads_into_the_typed_api_and_writes_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let m = Master::start(&mdir).await;
    let client = OperatorClient::with_http(m.http.clone(), &m.url, TOKEN);
    let racked = Agent::start_with(&m.url, &dir.path().join("a1"), AGENT_RES, false, |c| {
        c.attributes = parse_attributes("rack:r1;zone:a").expect("attributes");
    })
    .await;
    let public = Agent::start(&m.url, &dir.path().join("a2"), AGENT_RES, true).await;
    let leaving = Agent::start(&m.url, &dir.path().join("a3"), AGENT_RES, false).await;
    let drained = Agent::start(&m.url, &dir.path().join("a4"), AGENT_RES, false).await;
    m.wait_agents(4).await;
    let (racked_id, public_id, leaving_id, drained_id) = (
        id_of(&m, &racked.url).await,
        id_of(&m, &public.url).await,
        id_of(&m, &leaving.url).await,
        id_of(&m, &drained.url).await,
    );

    // Fields dccore does not read must come back too.
    let mut info = framework_info("wire");
    info["capabilities"] = json!([{"type": "PARTITION_AWARE"}]);
    info["labels"] = json!({"labels": [{"key": "team", "value": "ops"}]});
    info["webui_url"] = json!("http://127.0.0.1:9/ui");
    let mut fw = Framework::subscribe(&m.url, info).await;
    let offers = offers_on(&mut fw, &[&racked_id, &leaving_id]).await;
    let on_racked = &offers[&racked_id];
    fw.launch(
        on_racked,
        vec![
            task(on_racked, "long", "sleep 1000"),
            task(on_racked, "short", "true"),
        ],
    )
    .await;
    let on_leaving = &offers[&leaving_id];
    fw.launch(on_leaving, vec![task(on_leaving, "far", "sleep 60")])
        .await;
    let mut seen: HashMap<String, String> = HashMap::new();
    within("long and far running, short finished", async {
        while seen.get("long").map(String::as_str) != Some("TASK_RUNNING")
            || seen.get("far").map(String::as_str) != Some("TASK_RUNNING")
            || seen.get("short").map(String::as_str) != Some("TASK_FINISHED")
        {
            let st = fw.update_acked().await;
            seen.insert(
                st["task_id"]["value"].as_str().unwrap_or("").to_string(),
                st["state"].as_str().unwrap_or("").to_string(),
            );
        }
    })
    .await;

    // A framework that is torn down (typed TEARDOWN) lands in completed_frameworks.
    let gone = Framework::subscribe(&m.url, framework_info("gone")).await;
    within(
        "TEARDOWN",
        client.execute(&Call::Teardown {
            teardown: Teardown {
                framework_id: Id::new(gone.id.clone()),
            },
        }),
    )
    .await
    .expect("TEARDOWN");
    // Typed maintenance calls: one agent deactivated, one drained (no task: DRAINED at once).
    within(
        "DEACTIVATE_AGENT",
        client.execute(&Call::deactivate_agent(&public_id)),
    )
    .await
    .expect("DEACTIVATE_AGENT");
    let drain = Call::drain_agent(&drained_id, Some(Duration::from_secs(1)), false);
    within("DRAIN_AGENT", client.execute(&drain))
        .await
        .expect("DRAIN_AGENT");
    // An agent that stops heartbeating: it and its task become unreachable.
    leaving.stop().await;
    eventually("the stopped agent and its task unreachable", || async {
        let t = client.get_tasks().await.ok()?;
        let a = client.get_agents().await.ok()?;
        let drained_now = a.agents.iter().any(|x| {
            x.id() == drained_id
                && x.drain_info.as_ref().map(|d| d.state) == Some(DrainState::Drained)
        });
        (drained_now
            && t.unreachable_tasks.iter().any(|x| x.task_id.value == "far")
            && a.unreachable_agents.iter().any(|x| x.id() == leaving_id))
        .then_some(())
    })
    .await;

    let answers = all_answers(&m).await;
    let agents = agents_of(&answers);
    let find = |id: &str| agents.agents.iter().find(|a| a.id() == id).expect("listed");
    assert_eq!(find(&racked_id).agent_info.attributes.len(), 2);
    assert!(find(&racked_id).active);
    let p = find(&public_id);
    assert!(p.public && p.deactivated && !p.active && p.drain_info.is_none());
    let d = find(&drained_id).drain_info.as_ref().expect("drain info");
    assert!(d.config.max_grace_period.is_some() && !d.config.mark_gone);
    let tasks = tasks_of(&answers);
    let state_of = |list: &[dccore_api::operator::Task], id: &str| {
        list.iter().find(|t| t.task_id.value == id).map(|t| t.state)
    };
    assert_eq!(state_of(&tasks.tasks, "long"), Some(TaskState::Running));
    assert_eq!(
        state_of(&tasks.completed_tasks, "short"),
        Some(TaskState::Finished)
    );
    assert_eq!(
        state_of(&tasks.unreachable_tasks, "far"),
        Some(TaskState::Unreachable)
    );
    assert!(
        tasks
            .tasks
            .iter()
            .all(|t| t.command.is_some() && !t.statuses.is_empty())
    );
    let frameworks = frameworks_of(&answers);
    let wire = frameworks
        .frameworks
        .iter()
        .find(|f| f.name == "wire")
        .expect("framework wire listed");
    assert!(wire.active && wire.connected && !wire.recovered);
    assert_eq!(wire.framework_info.id, Some(Id::new(fw.id.clone())));
    assert!(wire.framework_info.other.contains_key("capabilities"));
    assert!(
        frameworks
            .completed_frameworks
            .iter()
            .any(|f| f.framework_info.id == Some(Id::new(gone.id.clone())))
    );
    assert_eq!(
        within("typed GET_HEALTH", client.get_health())
            .await
            .expect("GET_HEALTH"),
        dccore_api::operator::GetHealth { healthy: true }
    );

    // REACTIVATE_AGENT (typed) gives the public agent back.
    within(
        "REACTIVATE_AGENT",
        client.execute(&Call::reactivate_agent(&public_id)),
    )
    .await
    .expect("REACTIVATE_AGENT");
    let a = within("typed GET_AGENTS", client.get_agents())
        .await
        .expect("GET_AGENTS");
    let p = a
        .agents
        .iter()
        .find(|x| x.id() == public_id)
        .expect("listed");
    assert!(p.active && !p.deactivated);

    // Kill the long task with its framework, then restart the master on another port: the
    // agents do not find it, so they are recovered agents, and the framework a recovered one.
    within(
        "TEARDOWN of wire",
        client.execute(&Call::Teardown {
            teardown: Teardown {
                framework_id: Id::new(fw.id.clone()),
            },
        }),
    )
    .await
    .expect("TEARDOWN");
    eventually("the long task killed", || async {
        let t = client.get_tasks().await.ok()?;
        t.tasks
            .iter()
            .all(|x| x.task_id.value != "long")
            .then_some(())
    })
    .await;
    drop(fw);
    m.stop().await;
    let m = Master::start(&mdir).await;
    let answers = all_answers(&m).await;
    let agents = agents_of(&answers);
    assert!(
        agents.recovered_agents.len() >= 3,
        "recovered: {:?}",
        agents.recovered_agents
    );
    racked.stop().await;
    public.stop().await;
    drained.stop().await;
    m.stop().await;
}

/// The typed calls are the JSON the master's own tests send by hand.
#[test]
fn typed_calls_are_the_json_operators_send() {
    let wire = |c: &Call| serde_json::to_value(c).expect("serialize");
    assert_eq!(
        wire(&Call::drain_agent(
            "S1",
            Some(Duration::from_secs(1)),
            false
        )),
        json!({"type": "DRAIN_AGENT", "drain_agent": {
            "agent_id": {"value": "S1"}, "max_grace_period": {"nanoseconds": 1_000_000_000i64},
            "mark_gone": false}})
    );
    assert_eq!(
        wire(&Call::Teardown {
            teardown: Teardown {
                framework_id: Id::new("F1")
            }
        }),
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "F1"}}})
    );
}
