//! An unmodified third-party Marathon client, marathon-python (PyPI `marathon`, installed by
//! .ci/setup-marathon.sh), against the services framework's `/v2` API on an in-process master:
//! it authenticates with `auth_token=` (`Authorization: token=...`), creates an app, lists apps
//! and groups, and reads typed events from `event_stream()`. The library parses every answer
//! into its own classes, which reject fields they do not know, so a shape Marathon would not
//! send fails here.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::*;

/// The client's session: create, list, group, and the first events of the stream, one JSON
/// line per finding. marathon-python 0.13 sends `auth_token` on its API calls but not on the
/// event stream's request, so the stream's session (its `sse_session` parameter) carries the
/// same header.
const SCRIPT: &str = r#"
import json, sys, requests
from marathon import MarathonClient
from marathon.models import MarathonApp
url, token = sys.argv[1], sys.argv[2]
sse = requests.Session()
sse.headers["Authorization"] = "token=" + token
c = MarathonClient(url, auth_token=token, sse_session=sse, timeout=20)
out = lambda **kv: print(json.dumps(kv), flush=True)
events = c.event_stream(event_types=["event_stream_attached", "api_post_event", "deployment_info"])
out(event=type(next(events)).__name__)
app = c.create_app("/compat/web", MarathonApp(cmd="sleep 60", instances=1, cpus=0.1, mem=16))
out(created=app.id, cmd=app.cmd)
out(apps=[a.id for a in c.list_apps()])
out(groups=[g.id for g in c.list_groups()])
g = c.get_group("compat")
out(group=g.id, group_apps=[a.id for a in g.apps])
# The library puts the id after `/v2/groups/` as given: a leading slash makes `//compat`.
out(slashed=c.get_group("/compat").id)
for _ in range(2):
    e = next(events)
    name = type(e).__name__
    if name == "MarathonDeploymentInfo":
        out(event=name, plan_id=e.plan.id, target=[a["id"] for a in e.plan.target.apps])
    else:
        out(event=name, uri=getattr(e, "uri", None))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_python_creates_lists_groups_and_reads_events_with_a_token() {
    let python = match std::env::var("DCFORM_TEST_MARATHON_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            dc_support::testing::missing(
                "DCFORM_TEST_MARATHON_PYTHON (a python with marathon-python, built by .ci/setup-marathon.sh) is not set",
            );
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = fast_master_config(dir.path());
    cfg.services = true;
    let m = Master::start_on(dir.path(), "127.0.0.1:0", cfg).await;
    let url = m.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        dc_support::testing::output_within(
            Duration::from_secs(60),
            std::process::Command::new(python).args(["-c", SCRIPT, &url, TOKEN]),
        )
    })
    .await
    .expect("the client ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "marathon-python failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let find = |key: &str| -> &Value {
        lines
            .iter()
            .find(|l| l.get(key).is_some())
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
    };
    assert_eq!(lines[0]["event"], "MarathonEventStreamAttached", "{stdout}");
    assert_eq!(find("created")["created"], "/compat/web");
    assert_eq!(find("created")["cmd"], "sleep 60");
    assert_eq!(find("apps")["apps"], serde_json::json!(["/compat/web"]));
    assert_eq!(find("groups")["groups"], serde_json::json!(["/compat"]));
    assert_eq!(
        find("group")["group_apps"],
        serde_json::json!(["/compat/web"])
    );
    assert_eq!(find("slashed")["slashed"], "/compat", "{stdout}");
    let events: Vec<&Value> = lines[1..]
        .iter()
        .filter(|l| l.get("event").is_some())
        .collect();
    assert_eq!(events[0]["event"], "MarathonApiPostEvent", "{stdout}");
    assert_eq!(events[0]["uri"], "/v2/apps/compat/web");
    assert_eq!(events[1]["event"], "MarathonDeploymentInfo", "{stdout}");
    assert_eq!(events[1]["target"], serde_json::json!(["/compat/web"]));
    assert!(events[1]["plan_id"].is_string(), "{stdout}");
    m.stop().await;
}
