//! Scripted fakes of [`Provider`], [`Remote`] and [`Installer`] for executor tests: a fake "world" of
//! machines that can be told to fail at a given operation, be slow, or lose a host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;

/// A fault to inject: from the `nth` (1-based; 0 counts as 1) time `op` happens on `node` (any node if
/// `None`), fail — `times` times in a row (transient faults) or forever (`times == u32::MAX`).
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub node: Option<String>,
    pub op: String,
    pub transient: bool,
    pub times: u32,
    pub nth: u32,
    /// Matching operations seen so far (the fault's own count, for `nth`).
    pub seen: u32,
}

impl Fault {
    /// `op` on `node` fails `times` times (`transient`: the executor may retry it).
    pub fn on(node: &str, op: &str, transient: bool, times: u32) -> Fault {
        Fault {
            node: Some(node.into()),
            ..Fault::any(op, transient, times)
        }
    }

    /// `op` on any node fails `times` times.
    pub fn any(op: &str, transient: bool, times: u32) -> Fault {
        Fault {
            op: op.into(),
            transient,
            times,
            ..Fault::default()
        }
    }

    /// Only from the `n`-th matching operation on (1 = the first).
    pub fn starting_at(self, n: u32) -> Fault {
        Fault { nth: n, ..self }
    }
}

#[derive(Debug, Default)]
pub struct World {
    /// Machines that exist, by node name -> provider id.
    pub machines: BTreeMap<String, String>,
    /// Every operation in order: `create agents-1`, `run agents-1 install`...
    pub log: Vec<String>,
    pub faults: Vec<Fault>,
    /// Hosts that never answer.
    pub lost: BTreeSet<String>,
    /// Machines that are stopped (they do not answer until the provider starts them).
    pub stopped: BTreeSet<String>,
    /// Delay of every remote run.
    pub slow: Duration,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub prepared: u32,
    pub torn_down: u32,
    pub creates: u32,
    /// Cancel this token after this many operations (simulates Ctrl-C / a kill mid-apply).
    pub cancel_after: Option<(usize, CancellationToken)>,
}

impl World {
    fn op(&mut self, node: &str, op: &str) -> Option<bool> {
        self.log.push(format!("{op} {node}"));
        if let Some((n, token)) = &self.cancel_after
            && self.log.len() >= *n
        {
            token.cancel();
        }
        for f in self.faults.iter_mut() {
            if f.op != op || f.node.as_deref().is_some_and(|n| n != node) {
                continue;
            }
            f.seen += 1;
            if f.seen >= f.nth.max(1) && f.times > 0 {
                if f.times != u32::MAX {
                    f.times -= 1;
                }
                return Some(f.transient);
            }
        }
        None
    }
}

pub type SharedWorld = Arc<Mutex<World>>;

pub fn world() -> SharedWorld {
    Arc::new(Mutex::new(World::default()))
}

pub struct FakeProvider(pub SharedWorld);

impl Provider for FakeProvider {
    type Remote = FakeRemote;

    async fn prepare(
        &self,
        _spec: &ClusterSpec,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut w = self.0.lock().unwrap();
        w.prepared += 1;
        let mut r = resources.clone();
        r.entry("network".into()).or_insert_with(|| "net-1".into());
        Ok(r)
    }

    async fn create(&self, req: &NodeRequest) -> Result<Machine, ProviderError> {
        let mut w = self.0.lock().unwrap();
        if let Some(transient) = w.op(&req.name, "create") {
            return Err(ProviderError {
                node: req.name.clone(),
                message: "injected create failure".into(),
                transient,
                source: None,
            });
        }
        // Idempotent like a real provider: an interrupted create is found again, not duplicated.
        if !w.machines.contains_key(&req.name) {
            w.creates += 1;
            let id = format!("m-{}", w.creates);
            w.machines.insert(req.name.clone(), id);
        }
        let id = w.machines[&req.name].clone();
        Ok(Machine {
            provider_id: id,
            addresses: vec![format!("10.0.0.{}", req.index)],
            private_address: None,
        })
    }

    async fn start(&self, node: &NodeState) -> Result<Machine, ProviderError> {
        let mut w = self.0.lock().unwrap();
        w.log.push(format!("start-machine {}", node.name));
        w.stopped.remove(&node.name);
        let id = w
            .machines
            .get(&node.name)
            .cloned()
            .ok_or_else(|| ProviderError::permanent(&node.name, "no such machine"))?;
        Ok(Machine {
            provider_id: id,
            addresses: vec![format!("10.0.0.{}", node.index)],
            private_address: None,
        })
    }

    async fn connect(&self, node: &NodeState) -> Result<FakeRemote, RemoteError> {
        let mut w = self.0.lock().unwrap();
        w.log.push(format!("connect {}", node.name));
        if w.lost.contains(&node.name) || w.stopped.contains(&node.name) {
            return Err(RemoteError::Unreachable {
                host: node.name.clone(),
                message: "no route to host".into(),
            });
        }
        if !w.machines.contains_key(&node.name) {
            return Err(RemoteError::Refused {
                host: node.name.clone(),
                message: "no such machine".into(),
            });
        }
        Ok(FakeRemote {
            node: node.name.clone(),
            world: self.0.clone(),
        })
    }

    async fn destroy(&self, node: &NodeState) -> Result<(), ProviderError> {
        let mut w = self.0.lock().unwrap();
        if let Some(transient) = w.op(&node.name, "destroy") {
            return Err(ProviderError {
                node: node.name.clone(),
                message: "injected destroy failure".into(),
                transient,
                source: None,
            });
        }
        w.machines.remove(&node.name);
        Ok(())
    }

    async fn teardown(&self, _resources: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        self.0.lock().unwrap().torn_down += 1;
        Ok(())
    }
}

pub struct FakeRemote {
    node: String,
    world: SharedWorld,
}

impl Remote for FakeRemote {
    async fn run(&self, script: &str, _timeout: Duration) -> Result<CmdOutput, RemoteError> {
        let slow = {
            let mut w = self.world.lock().unwrap();
            w.in_flight += 1;
            w.max_in_flight = w.max_in_flight.max(w.in_flight);
            w.slow
        };
        tokio::time::sleep(slow).await;
        let mut w = self.world.lock().unwrap();
        w.in_flight -= 1;
        let fault = w.op(&self.node, &format!("run:{script}"));
        match fault {
            Some(_) => Ok(CmdOutput {
                code: Some(3),
                stdout: "line 1\nline 2".into(),
                stderr: format!("{script} broke"),
            }),
            None => Ok(CmdOutput {
                code: Some(0),
                ..Default::default()
            }),
        }
    }

    async fn upload(
        &self,
        contents: Arc<Vec<u8>>,
        dest: &str,
        _mode: u32,
    ) -> Result<(), RemoteError> {
        let mut w = self.world.lock().unwrap();
        w.op(&self.node, &format!("upload:{dest}:{}", contents.len()));
        Ok(())
    }

    fn host_key(&self) -> Option<String> {
        Some(format!("SHA256:key-of-{}", self.node))
    }
}

/// Renders each step as one named script (plus uploads for install), so tests can read the log.
pub struct FakeInstaller;

impl Installer for FakeInstaller {
    fn ops(&self, step: Step, ctx: &NodeContext) -> Result<Vec<RemoteOp>, InstallError> {
        let run = |s: &str| RemoteOp::Run {
            label: s.into(),
            script: s.into(),
            timeout: Duration::from_secs(5),
            until_ok: None,
        };
        Ok(match step {
            Step::Install => vec![
                RemoteOp::Write {
                    contents: Arc::new(b"core".to_vec()),
                    dest: "/usr/local/bin/dccore".into(),
                    mode: 0o755,
                },
                run(if ctx.node.role == crate::spec::Role::Master {
                    "install-master"
                } else {
                    "install-agent"
                }),
            ],
            Step::WaitHealthy => vec![RemoteOp::Run {
                label: "health".into(),
                script: "health".into(),
                timeout: Duration::from_secs(5),
                until_ok: Some(
                    Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).attempts(5),
                ),
            }],
            other => vec![run(other.name())],
        })
    }
}

/// The masters' group as a log: `join masters-2 #2 via masters-1`, `leave #5`, `member masters-2`.
/// A join or leave may be told to fail (`op` `join` / `leave` in the world's faults); `leader`
/// names the id that leads (a leave of it answers [`Left::IsLeader`] until its machine is gone).
pub struct FakeMembership(pub SharedWorld, pub Mutex<Option<u64>>);

impl FakeMembership {
    pub fn new(world: SharedWorld) -> FakeMembership {
        FakeMembership(world, Mutex::new(None))
    }
}

impl Membership for FakeMembership {
    fn join<'a>(&'a self, masters: &'a [NodeState], node: &'a NodeState) -> GroupFuture<'a, ()> {
        Box::pin(async move {
            let via: Vec<&str> = masters.iter().map(|m| m.name.as_str()).collect();
            let mut w = self.0.lock().expect("world");
            let entry = format!(
                "{} #{} via {}",
                node.name,
                node.replica_id.unwrap_or(0),
                via.join(",")
            );
            match w.op(&entry, "join") {
                Some(_) => Err(format!("injected join failure of {}", node.name)),
                None => Ok(()),
            }
        })
    }

    fn leave<'a>(&'a self, _masters: &'a [NodeState], id: u64) -> GroupFuture<'a, Left> {
        Box::pin(async move {
            let leader = *self.1.lock().expect("leader");
            let mut w = self.0.lock().expect("world");
            if leader == Some(id) {
                // It leads while its machine exists.
                let gone = !w.log.iter().any(|l| l.starts_with("create "))
                    || w.log.iter().rev().any(|l| l.starts_with("destroy "));
                if !gone {
                    w.log.push(format!("leave #{id} refused: leader"));
                    return Ok(Left::IsLeader);
                }
            }
            match w.op(&format!("#{id}"), "leave") {
                Some(_) => Err(format!("injected leave failure of {id}")),
                None => Ok(Left::Removed),
            }
        })
    }

    fn leader<'a>(&'a self, _masters: &'a [NodeState]) -> GroupFuture<'a, Option<u64>> {
        Box::pin(async move { Ok(*self.1.lock().expect("leader")) })
    }

    fn wait_member<'a>(&'a self, node: &'a NodeState) -> GroupFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .lock()
                .expect("world")
                .log
                .push(format!("member {}", node.name));
            Ok(())
        })
    }
}
