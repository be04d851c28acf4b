//! The owner loop on a real one-member Raft group: replies wait for the commit of the batch
//! that holds their changes, and changes made while a batch is in flight form the next batch.

use super::MasterConfig;
use super::command::MasterCommand;
use super::registry::Registry;
use super::replicated::Replicated;
use super::state::State;
use crate::proto::Resources;
use crate::proto::internal::RegisterAgent;
use crate::replica::{HttpLink, PeerLink, Replica, ReplicaConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

fn agent_msg(host: &str) -> RegisterAgent {
    RegisterAgent {
        agent_id: None,
        hostname: host.into(),
        url: format!("http://{host}:9"),
        resources: Resources::new(2.0, 1024.0, 0.0).to_mesos(None, None),
        attributes: vec![],
        public: false,
        tasks: vec![],
        version: "test".into(),
        callback_token: Some("agent-secret".into()),
        task_user: None,
    }
}

/// Hands the owner loop an agent registration (within the current turn); its reply.
fn register(
    s: &mut State,
    host: &str,
) -> oneshot::Receiver<Result<crate::proto::internal::Registered, super::CallError>> {
    let (reply, rx) = oneshot::channel();
    s.handle(
        MasterCommand::RegisterAgent {
            msg: Box::new(agent_msg(host)),
            reply,
        },
        Instant::now(),
    );
    rx
}

/// What [`leading`] gives: the owner loop's state, the channel of its commits, the replica,
/// and the receiving end of the loop's own command channel (kept open for the test).
type Leading = (
    State,
    mpsc::UnboundedReceiver<super::replicated::CommitResult>,
    Arc<Replica>,
    mpsc::Receiver<MasterCommand>,
);

/// A leading owner loop on a real one-member group, its store in `dir`.
async fn leading(dir: &std::path::Path) -> Leading {
    crate::tls::install_default_provider();
    let http = crate::tls::Tls::default()
        .http_client()
        .expect("TLS config")
        .build()
        .expect("client");
    // A group of one: the link is never used.
    let link: Arc<dyn PeerLink> = Arc::new(HttpLink::new(http.clone(), "unused"));
    let url = "http://127.0.0.1:9";
    let replica = Arc::new(
        Replica::start(ReplicaConfig::new(1, url, dir), link)
            .await
            .expect("replica"),
    );
    replica
        .initialize(BTreeMap::from([(1, url.to_string())]))
        .await
        .expect("initialise");
    let mut leadership = replica.leadership();
    tokio::time::timeout(WAIT, leadership.wait_for(|l| l.is_leader))
        .await
        .expect("elected within the deadline")
        .expect("watch");

    let (tx, rx) = mpsc::channel(16);
    let mut s = State::new(MasterConfig::new(dir), Registry::default(), None, tx, http)
        .replicated(Replicated::new(replica.clone(), WAIT));
    let (ctx, commits) = mpsc::unbounded_channel();
    s.repl.as_mut().expect("replicated").set_commits(ctx);
    assert!(s.take_lead().await, "a one-member group's replica leads");
    (s, commits, replica, rx)
}

#[tokio::test]
async fn replies_wait_for_their_batch_and_changes_made_meanwhile_form_the_next_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut s, mut commits, replica, _rx) = leading(dir.path()).await;
    let base = replica.log_position().0.expect("the barrier is in the log");

    let register = |s: &mut State, host: &str| {
        let rx = register(s, host);
        s.end_turn();
        rx
    };
    let mut r1 = register(&mut s, "a1");
    let mut r2 = register(&mut s, "a2");
    let mut r3 = register(&mut s, "a3");
    assert!(r1.try_recv().is_err(), "held until its batch commits");
    assert!(r2.try_recv().is_err() && r3.try_recv().is_err());

    let done = tokio::time::timeout(WAIT, commits.recv())
        .await
        .expect("first batch committed")
        .expect("channel");
    s.committed(done, Instant::now());
    assert!(matches!(r1.try_recv(), Ok(Ok(_))), "released on commit");
    assert!(
        r2.try_recv().is_err() && r3.try_recv().is_err(),
        "the second batch is not committed yet"
    );
    let done = tokio::time::timeout(WAIT, commits.recv())
        .await
        .expect("second batch committed")
        .expect("channel");
    s.committed(done, Instant::now());
    assert!(matches!(r2.try_recv(), Ok(Ok(_))));
    assert!(matches!(r3.try_recv(), Ok(Ok(_))));
    assert_eq!(
        replica.log_position().0,
        Some(base + 2),
        "two log entries: the changes made while the first was in flight went in one batch"
    );
    let committed = replica.with_state(|m| m.image.tables.agents.len());
    assert_eq!(
        committed, 3,
        "every registration is in the committed tables"
    );
}

/// A turn's changes beyond `max_entry_commands` go in the next entries, and the turn's effects
/// wait for the last of them.
#[tokio::test]
async fn a_batch_longer_than_an_entry_holds_is_split_and_its_effects_wait_for_the_last_part() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut s, mut commits, replica, _rx) = leading(dir.path()).await;
    s.repl.as_mut().expect("replicated").max_entry_commands = 1;
    let base = replica.log_position().0.expect("the barrier is in the log");
    let mut replies = Vec::new();
    for host in ["a1", "a2", "a3"] {
        replies.push(register(&mut s, host));
    }
    s.end_turn();
    for part in 1..=3 {
        assert!(
            replies.iter_mut().all(|r| r.try_recv().is_err()),
            "held before part {part} commits"
        );
        let done = tokio::time::timeout(WAIT, commits.recv())
            .await
            .expect("a part committed")
            .expect("channel");
        s.committed(done, Instant::now());
    }
    assert!(
        replies
            .iter_mut()
            .all(|r| matches!(r.try_recv(), Ok(Ok(_)))),
        "released with the last part"
    );
    assert_eq!(
        replica.log_position().0,
        Some(base + 3),
        "one entry per command"
    );
    assert_eq!(replica.with_state(|m| m.image.tables.agents.len()), 3);
}
