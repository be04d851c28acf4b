//! Service discovery against a real master and agent on 127.0.0.1: a framework launches a task
//! named `web.prod` with a host port; real DNS queries (UDP and TCP, messages encoded with
//! hickory's protocol crate) get its `A` and `SRV` records; `/v1/services` lists it; killing the
//! task removes them.

mod support;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::RecordType;
use serde_json::{Value, json};
use support::dns::*;
use support::*;

async fn get(m: &Master, path: &str, auth: Option<&str>) -> (reqwest::StatusCode, Value) {
    let mut req = m.http.get(format!("{}{path}", m.url));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = within("a /v1/services answer", req.send())
        .await
        .expect("GET");
    let code = r.status();
    let body = within("its body", r.text()).await.expect("body");
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn port_task(offer: &Value, id: &str, name: &str, port: u64) -> Value {
    let mut t = task(offer, id, "sleep 60");
    t["name"] = json!(name);
    t["resources"]
        .as_array_mut()
        .expect("task resources")
        .push(json!({"name": "ports", "type": "RANGES",
                     "ranges": {"range": [{"begin": port, "end": port}]}}));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_v1_services_follow_a_task_from_running_to_killed() {
    let mdir = tempfile::tempdir().expect("tempdir");
    let adir = tempfile::tempdir().expect("tempdir");
    let mut cfg = fast_master_config(mdir.path());
    cfg.discovery.dns_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let m = Master::start_on(mdir.path(), "127.0.0.1:0", cfg).await;
    let dns = dns_address(mdir.path()).await;
    let agent = Agent::start(&m.url, adir.path(), AGENT_RES, false).await;
    m.wait_agents(1).await;

    // The masters are in the zone before any task runs.
    let leader = udp(dns, "leader.dccore.", RecordType::A).await;
    assert_eq!(a_records(&leader), ["127.0.0.1"], "{leader:?}");
    assert!(leader.authoritative());

    let mut fw = Framework::subscribe(&m.url, framework_info("marathon")).await;
    let offers = fw.offers().await;
    fw.launch(
        &offers[0],
        vec![port_task(&offers[0], "web-1", "web.prod", 31005)],
    )
    .await;
    fw.wait_state("web-1", "TASK_RUNNING").await;

    let a = eventually("the A record of web.prod.marathon.dccore", || async {
        let r = udp(dns, "web.prod.marathon.dccore.", RecordType::A).await;
        (!r.answers().is_empty()).then_some(r)
    })
    .await;
    assert_eq!(a.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&a), ["127.0.0.1"]);
    assert_eq!(a.answers()[0].ttl(), dccore::discovery::DEFAULT_TTL);

    let srv = tcp(dns, "_web.prod._tcp.marathon.dccore.", RecordType::SRV).await;
    let srvs = srv_records(&srv);
    assert_eq!(srvs.len(), 1, "{srv:?}");
    assert_eq!(srvs[0].0, 31005);
    assert!(
        srvs[0].1.ends_with(".slave.dccore."),
        "the target is the agent's name: {srvs:?}"
    );
    let target = tcp(dns, &srvs[0].1, RecordType::A).await;
    assert_eq!(a_records(&target), ["127.0.0.1"]);
    assert!(
        srv.additionals()
            .iter()
            .any(|r| r.record_type() == RecordType::A),
        "the SRV answer carries its target's address: {srv:?}"
    );

    let nx = udp(dns, "nothing.marathon.dccore.", RecordType::A).await;
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert!(
        nx.name_servers()
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "a negative answer carries the zone's SOA: {nx:?}"
    );
    let other = udp(dns, "example.com.", RecordType::A).await;
    assert_eq!(other.response_code(), ResponseCode::Refused);

    let (code, all) = get(&m, "/v1/services", Some(&bearer())).await;
    assert_eq!(code, 200, "{all}");
    let svc = all["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "web.prod.marathon")
        .cloned()
        .unwrap_or_else(|| panic!("web.prod.marathon listed: {all}"));
    let inst = &svc["instances"][0];
    assert_eq!(inst["task_id"], "web-1");
    assert_eq!(inst["ports"], json!([31005]));
    assert_eq!(inst["ip"], "127.0.0.1");
    assert!(inst["host"].is_string(), "{inst}");
    let (code, one) = get(&m, "/v1/services/web.prod.marathon.dccore", Some(&bearer())).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["srv"], "_web.prod._tcp.marathon.dccore");
    let (code, missing) = get(&m, "/v1/services/nope.marathon", Some(&bearer())).await;
    assert_eq!(code, 404);
    assert!(
        missing["message"]
            .as_str()
            .is_some_and(|s| s.contains("nope")),
        "{missing}"
    );
    let (code, _) = get(&m, "/v1/services", None).await;
    assert_eq!(code, 401, "the HTTP view needs credentials");
    // The framework's own principal sees its own service.
    let (code, mine) = get(&m, "/v1/services/web.prod.marathon", Some(&basic())).await;
    assert_eq!(code, 200, "{mine}");

    let code = fw
        .call(json!({"type": "KILL", "kill": {"task_id": {"value": "web-1"}}}))
        .await;
    assert_eq!(code, 202);
    fw.wait_state("web-1", "TASK_KILLED").await;
    eventually("the A record to go after the kill", || async {
        let r = udp(dns, "web.prod.marathon.dccore.", RecordType::A).await;
        (r.response_code() == ResponseCode::NXDomain).then_some(())
    })
    .await;
    let srv = tcp(dns, "_web.prod._tcp.marathon.dccore.", RecordType::SRV).await;
    assert!(srv_records(&srv).is_empty(), "{srv:?}");
    let (_, all) = get(&m, "/v1/services", Some(&bearer())).await;
    assert_eq!(all["services"], json!([]), "{all}");

    drop(fw);
    agent.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn the_binary_refuses_a_bad_dns_listen_address_or_domain_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = ["master", "--listen", "127.0.0.1:0", "--work-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(dir.path().join("m").display().to_string());
        args.push("--token-file".into());
        args.push(token.display().to_string());
        args.extend(extra);
        std::process::Command::new(BIN)
            .args(&args)
            .output()
            .expect("run dccore")
    };
    let out = run(vec!["--dns-listen".into(), "nowhere".into()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--dns-listen") && err.contains("IP:PORT"),
        "{err}"
    );

    let cfg = dir.path().join("master.json");
    std::fs::write(&cfg, r#"{"dns_domain": "bad_domain"}"#).expect("config");
    let out = run(vec!["--config".into(), cfg.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dns_domain"), "{err}");
}
