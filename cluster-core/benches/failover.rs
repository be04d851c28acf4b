//! **Failover**: the leader killed (SIGKILL) → the first write the group accepts again, median and
//! worst of N rounds, for dccore's replicated masters and, side by side in the same run, for etcd.
//!
//! * dccore: three real `dccore master` processes on 127.0.0.1 (default Raft timings: heartbeat
//!   100 ms, elections after 400–800 ms), configured by their config files as dcform configures
//!   them. The write is a scheduler `SUBSCRIBE` (a framework added, answered only once committed)
//!   sent to the surviving masters in turn until one answers 200.
//! * etcd: Debian's `etcd-server` (3.4), three members on 127.0.0.1, default settings. The write is
//!   a `put` over its HTTP gateway (`POST /v3/kv/put`) to the surviving members in turn until one
//!   answers 200.
//!
//! Each round: find the leader, kill it, time until a write is accepted, start the killed member
//! again from its disk and wait until it follows and has caught up with the leader. Every request has a 300 ms timeout, so a member
//! still waiting for an election is passed over quickly.
//!
//! ```text
//! cargo bench --workspace --bench failover                 # 10 rounds each
//! cargo bench --workspace --bench failover -- --rounds 3
//! ```

mod common;
#[path = "common/masters.rs"]
mod masters;

use masters::{Masters, Member, free_ports};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

const TOKEN: &str = "failover-bench-token";
const REQUEST: Duration = Duration::from_millis(300);
/// A round that has not recovered by then is reported as such, not waited for.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST)
        .build()
        .expect("client")
}

/// What differs between dccore and etcd: who leads, and one write.
trait Group {
    fn members(&mut self) -> &mut Vec<Member>;
    /// The index of the member that leads, as the members themselves say (all who answer agree).
    async fn leader(&self) -> Option<usize>;
    /// One write at member `i`: accepted or not.
    async fn write(&self, i: usize, round: usize) -> bool;
    /// Member `i` (restarted) follows a leader again and has applied what the leader had
    /// applied (a round starts from a whole group: a member still catching up cannot win an
    /// election, so killing the leader then measures a two-member group's luck).
    async fn follows(&self, i: usize) -> bool;
}

struct Dccore {
    members: Vec<Member>,
    http: reqwest::Client,
}

impl Dccore {
    fn start(dir: &Path) -> Dccore {
        let mut members = Masters {
            dir,
            count: 3,
            token: TOKEN,
            scheme: "http",
            config: json!({"services": false}),
            args: vec![],
            env: vec![],
        }
        .members();
        for m in &mut members {
            m.start();
        }
        Dccore {
            members,
            http: client(),
        }
    }

    async fn replica(&self, i: usize) -> Option<Value> {
        masters::replica(&self.http, &self.members[i].url, TOKEN).await
    }
}

impl Group for Dccore {
    fn members(&mut self) -> &mut Vec<Member> {
        &mut self.members
    }

    async fn leader(&self) -> Option<usize> {
        let urls: Vec<&str> = self.members.iter().map(|m| m.url.as_str()).collect();
        masters::leader(&self.http, &urls, TOKEN).await
    }

    async fn write(&self, i: usize, round: usize) -> bool {
        let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": "nobody", "name": format!("failover-{round}")}}});
        // The answer's status comes before its (endless) event stream; dropping it closes that.
        matches!(
            self.http
                .post(format!("{}/api/v1/scheduler", self.members[i].url))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await,
            Ok(r) if r.status() == 200
        )
    }

    async fn follows(&self, i: usize) -> bool {
        let Some(l) = self.leader().await.filter(|l| *l != i) else {
            return false;
        };
        let (Some(me), Some(lead)) = (self.replica(i).await, self.replica(l).await) else {
            return false;
        };
        me["leader"]["id"].is_u64()
            && me["is_leader"] == false
            && caught_up(&me["applied_index"], &lead["applied_index"])
    }
}

struct Etcd {
    members: Vec<Member>,
    http: reqwest::Client,
}

impl Etcd {
    fn start(dir: &Path, etcd: PathBuf) -> Etcd {
        std::fs::create_dir_all(dir).expect("dir");
        let ports = free_ports(6);
        let (clients, peers) = ports.split_at(3);
        let cluster: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        for i in 0..3 {
            let client = format!("http://127.0.0.1:{}", clients[i]);
            let peer = format!("http://127.0.0.1:{}", peers[i]);
            let mut m = Member {
                program: etcd.clone(),
                args: vec![
                    "--name".into(),
                    format!("e{i}"),
                    "--data-dir".into(),
                    dir.join(format!("e{i}")).display().to_string(),
                    "--listen-client-urls".into(),
                    client.clone(),
                    "--advertise-client-urls".into(),
                    client.clone(),
                    "--listen-peer-urls".into(),
                    peer.clone(),
                    "--initial-advertise-peer-urls".into(),
                    peer,
                    "--initial-cluster".into(),
                    cluster.join(","),
                    "--initial-cluster-token".into(),
                    "failover-bench".into(),
                ],
                url: client,
                env: vec![],
                child: None,
            };
            m.start();
            members.push(m);
        }
        Etcd {
            members,
            http: client(),
        }
    }

    async fn status(&self, i: usize) -> Option<Value> {
        self.http
            .post(format!("{}/v3/maintenance/status", self.members[i].url))
            .json(&json!({}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
}

impl Group for Etcd {
    fn members(&mut self) -> &mut Vec<Member> {
        &mut self.members
    }

    async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if let Some(s) = self.status(i).await
                && s["leader"].is_string()
                && s["leader"] == s["header"]["member_id"]
            {
                return Some(i);
            }
        }
        None
    }

    async fn write(&self, i: usize, _round: usize) -> bool {
        // key "key", value "value", base64 as the gateway wants them.
        matches!(
            self.http
                .post(format!("{}/v3/kv/put", self.members[i].url))
                .json(&json!({"key": "a2V5", "value": "dmFsdWU="}))
                .send()
                .await,
            Ok(r) if r.status() == 200
        )
    }

    async fn follows(&self, i: usize) -> bool {
        let Some(l) = self.leader().await.filter(|l| *l != i) else {
            return false;
        };
        let (Some(me), Some(lead)) = (self.status(i).await, self.status(l).await) else {
            return false;
        };
        me["leader"].is_string()
            && me["leader"] != me["header"]["member_id"]
            && caught_up(&me["raftAppliedIndex"], &lead["raftAppliedIndex"])
    }
}

/// `mine` ≥ `leaders`, both log indexes given as numbers or (etcd's JSON gateway) strings.
fn caught_up(mine: &Value, leaders: &Value) -> bool {
    let n = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
    matches!((n(mine), n(leaders)), (Some(m), Some(l)) if m >= l)
}

/// Polls `f` every 20 ms until it gives a value or `limit` passes.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The failover times of `rounds` rounds (None: not recovered within the round limit).
async fn rounds<G: Group>(g: &mut G, rounds: usize) -> Vec<Option<Duration>> {
    let mut out = Vec::new();
    for round in 0..rounds {
        let Some(l) = poll(ROUND_LIMIT, || g.leader()).await else {
            out.push(None);
            continue;
        };
        // A write before the kill: the group is serving.
        poll(ROUND_LIMIT, || async {
            g.write(l, round).await.then_some(())
        })
        .await;
        let started = Instant::now();
        g.members()[l].kill().await;
        let rest: Vec<usize> = (0..3).filter(|i| *i != l).collect();
        let elected = std::cell::Cell::new(None);
        let took = poll(ROUND_LIMIT, || async {
            if elected.get().is_none() && g.leader().await.is_some_and(|n| n != l) {
                elected.set(Some(started.elapsed()));
            }
            for &i in &rest {
                if g.write(i, round).await {
                    return Some(started.elapsed());
                }
            }
            None
        })
        .await;
        if std::env::var_os("FAILOVER_VERBOSE").is_some() {
            eprintln!(
                "round {round}: a new leader said so after {:?}, a write after {took:?}",
                elected.get()
            );
        }
        out.push(took);
        g.members()[l].start();
        poll(ROUND_LIMIT, || async { g.follows(l).await.then_some(()) }).await;
    }
    out
}

fn summary(name: &str, times: &[Option<Duration>]) {
    let mut ok: Vec<f64> = times.iter().flatten().map(Duration::as_secs_f64).collect();
    ok.sort_by(f64::total_cmp);
    let failed = times.len() - ok.len();
    let median = ok.get(ok.len() / 2).copied().unwrap_or(f64::NAN);
    let worst = ok.last().copied().unwrap_or(f64::NAN);
    let all: Vec<String> = ok.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "{name:<8} median {median:.2} s, worst {worst:.2} s over {} rounds{} [{}]",
        ok.len(),
        if failed > 0 {
            format!(
                ", {failed} not recovered within {} s",
                ROUND_LIMIT.as_secs()
            )
        } else {
            String::new()
        },
        all.join(", ")
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // `cargo test --benches` runs every bench once: keep that cheap.
    if !args.iter().any(|a| a == "--bench") {
        println!("failover: run with `cargo bench --workspace --bench failover`");
        return;
    }
    dccore::tls::install_default_provider();
    println!("machine: {}", common::describe());
    let etcd = which("etcd");
    let dir = tempfile::tempdir().expect("tmp");
    let mut d = Dccore::start(&dir.path().join("dccore"));
    let dt = rounds(&mut d, n).await;
    for m in d.members() {
        m.kill().await;
    }
    summary("dccore", &dt);
    match etcd {
        Some(bin) => {
            let version = tokio::time::timeout(
                Duration::from_secs(10),
                Command::new(&bin)
                    .arg("--version")
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|o| {
                let out = String::from_utf8_lossy(&o.stdout);
                out.lines().next().unwrap_or("").to_string()
            })
            .unwrap_or_default();
            let mut e = Etcd::start(&dir.path().join("etcd"), bin);
            let et = rounds(&mut e, n).await;
            for m in e.members() {
                m.kill().await;
            }
            summary("etcd", &et);
            println!("({version})");
        }
        None => println!("etcd: not installed (apt-get install etcd-server): no anchor this run"),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
