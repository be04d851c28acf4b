//! Subcommands about machines rather than plans: `list` and `destroy --cluster` (Docker objects found by
//! label, no state needed), `ssh` and `exec` on a node, `node-image build`.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use dcform_bootstrap::node_image::{self, NodeImageOptions};
use dcform_bootstrap::ssh::{Command as SshCommand, ExitStatus, OutputStream, Target, shell_quote};

use super::args::{DestroyArgs, ListArgs, NodeCmdArgs, NodeImageCommand};
use super::inputs::{confirm, find_node, load_def, read_state};
use super::{CliError, exit, table};
use crate::providers::docker;
use crate::providers::route::{self, Route};
use crate::providers::ssh_remote::{SshConnector, SshRemote, map_error};
use crate::spec::{ProviderKind, Role, SshSpec};
use crate::state::{NodeState, StateFile, StateLock};

/// `dcform destroy --cluster NAME`: removes every Docker object labelled with the cluster, or (with
/// `--provider aws`, or an `aws` definition) every EC2 resource tagged with it.
pub async fn destroy_by_label(a: &DestroyArgs) -> Result<u8, CliError> {
    let cluster = a
        .cluster
        .as_deref()
        .expect("invariant: dispatched here only with --cluster");
    // The definition, when one is given, names the provider and (for aws) its region and endpoint.
    let def = (a.apply.def.path.is_file()
        || a.apply.def.path.join(format!("{cluster}.hcl")).is_file()
        || a.provider.is_none())
    .then(|| load_def(&a.apply.def).ok())
    .flatten();
    let provider = match (a.provider, &def) {
        (Some(p), _) => p,
        (None, Some(spec)) if spec.provider.kind() == ProviderKind::Aws => ProviderKind::Aws,
        _ => ProviderKind::Docker,
    };
    if provider == ProviderKind::Aws {
        let aws = match def.as_ref().map(|d| &d.provider) {
            Some(crate::spec::ProviderSpec::Aws(a)) => (**a).clone(),
            _ => crate::spec::AwsProvider::default(),
        };
        let found = crate::providers::aws::lineages(cluster, &aws)
            .await
            .map_err(|e| CliError::internal(anyhow::Error::new(e)))?;
        let lineage = pick_lineage(cluster, &found, a.lineage.as_deref())?;
        for (l, what) in found
            .iter()
            .filter(|(l, _)| lineage.is_none_or(|p| p == *l))
        {
            println!("lineage {}:", lineage_label(l));
            for w in what {
                println!("  {w}");
            }
        }
        match lineage {
            Some(l) => println!(
                "dcform will remove every EC2 resource tagged dcform:cluster={cluster} and dcform:lineage={l}."
            ),
            None => {
                println!("dcform will remove every EC2 resource tagged dcform:cluster={cluster}.")
            }
        }
        if !a.apply.auto_approve && !confirm(true)? {
            println!("Destroy cancelled.");
            return Ok(exit::USER);
        }
        let r = crate::providers::aws::purge_cluster(cluster, &aws, lineage)
            .await
            .map_err(|e| CliError::internal(anyhow::Error::new(e)))?;
        for l in r.lines() {
            println!("  - {l}");
        }
        println!(
            "\nDestroy complete! Removed {} instance(s) and {} network resource(s) of cluster \"{cluster}\".",
            r.instances.len(),
            r.lines().len() - r.instances.len()
        );
    } else {
        println!(
            "dcform will remove every container, network and volume labelled dcform.cluster={cluster}."
        );
        if !a.apply.auto_approve && !confirm(true)? {
            println!("Destroy cancelled.");
            return Ok(exit::USER);
        }
        let r = docker::purge_cluster(cluster)
            .await
            .map_err(|e| CliError::internal(anyhow::Error::new(e)))?;
        for c in &r.containers {
            println!("  - container {c}");
        }
        for n in &r.networks {
            println!("  - network {n}");
        }
        for v in &r.volumes {
            println!("  - volume {v}");
        }
        println!(
            "\nDestroy complete! Removed {} container(s), {} network(s), {} volume(s) of cluster \"{cluster}\".",
            r.containers.len(),
            r.networks.len(),
            r.volumes.len()
        );
    }
    // A state left where the definition keeps it still lists the removed nodes: the next apply
    // would report "No changes" for a cluster that is gone. Forget them.
    let file = match &a.apply.state {
        Some(p) => StateFile::at(p),
        None => {
            let p = &a.apply.def.path;
            let dir = if p.is_file() {
                p.parent()
                    .unwrap_or(std::path::Path::new("."))
                    .to_path_buf()
            } else {
                p.clone()
            };
            StateFile::default_for(&dir, cluster)
        }
    };
    match forget_nodes(&file, cluster, provider)? {
        Forgot::Nodes(n) => println!("Forgot {n} node(s) in {}.", file.path().display()),
        Forgot::OtherCluster(what) => println!(
            "The state {} is {what}: left as it is.",
            file.path().display()
        ),
        Forgot::NoState => {}
    }
    Ok(exit::OK)
}

/// What [`forget_nodes`] did.
#[derive(Debug, PartialEq, Eq)]
enum Forgot {
    NoState,
    /// The state belongs to another cluster or provider (named).
    OtherCluster(String),
    Nodes(usize),
}

/// Empties the nodes, outputs and provider records of a `provider` state of `cluster` (under its
/// lock), after its containers were removed by label. Any other state is left untouched.
fn forget_nodes(
    file: &StateFile,
    cluster: &str,
    provider: ProviderKind,
) -> Result<Forgot, CliError> {
    if !file.path().exists() {
        return Ok(Forgot::NoState);
    }
    let _lock = StateLock::acquire(file, "destroy --cluster")?;
    let Some(mut state) = file.load()? else {
        return Ok(Forgot::NoState);
    };
    if state.cluster != cluster || state.provider != provider {
        return Ok(Forgot::OtherCluster(format!(
            "of the {} cluster \"{}\"",
            state.provider, state.cluster
        )));
    }
    let n = state.nodes.len();
    state.nodes.clear();
    state.outputs.clear();
    state.resources.clear();
    file.save(&mut state)?;
    Ok(Forgot::Nodes(n))
}

/// `dcform list`: the Docker clusters on this machine.
pub async fn list(a: &ListArgs) -> Result<u8, CliError> {
    let clusters = docker::list_clusters()
        .await
        .map_err(|e| CliError::internal(anyhow::Error::new(e)))?;
    if a.json {
        let v: Vec<serde_json::Value> = clusters
            .iter()
            .map(|c| {
                serde_json::json!({
                    "cluster": c.name,
                    "provider": ProviderKind::Docker.as_str(),
                    "networks": c.networks,
                    "nodes": c.nodes.iter().map(|n| serde_json::json!({
                        "name": n.node, "pool": n.pool, "role": n.role, "state": n.state, "container": n.container,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(exit::OK);
    }
    if clusters.is_empty() {
        println!("No dcform clusters found in Docker.");
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = clusters
        .iter()
        .map(|c| {
            let running = c.nodes.iter().filter(|n| n.state == "running").count();
            vec![
                c.name.clone(),
                ProviderKind::Docker.to_string(),
                c.nodes.len().to_string(),
                running.to_string(),
                c.networks.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["CLUSTER", "PROVIDER", "NODES", "RUNNING", "NETWORK"],
            &rows
        )
    );
    Ok(exit::OK)
}

/// The node and an SSH connector for it, from the state (and the definition's `ssh {}` block when it loads).
/// A node as `ssh`/`exec` reach it: the node, the connector, the state file, and the route the
/// provider itself takes (a private agent through the first master, as `apply` reached it).
struct NodeTarget {
    node: NodeState,
    connector: SshConnector,
    file: StateFile,
    route: Route,
    /// The jump master's pinned host key, for a route through a master.
    jump_key: Option<String>,
}

fn node_target(a: &NodeCmdArgs) -> Result<NodeTarget, CliError> {
    let (file, state) = read_state(&a.target)?;
    let node = find_node(&state, &a.node)?;
    if state.provider == ProviderKind::Local {
        return Err(CliError::user(anyhow!(
            "{} is a local sandbox, not a machine: its files are in {}",
            node.name,
            node.provider_id.as_deref().unwrap_or("the state folder")
        )));
    }
    // With `--state` alone the definition may not load; the docker provider's defaults then apply.
    let ssh = load_def(&a.target.def)
        .map(|s| s.ssh)
        .unwrap_or_else(|_| SshSpec::default());
    let key = state.resources.get("ssh_key").map(PathBuf::from);
    let masters: Vec<NodeState> = state
        .nodes
        .iter()
        .filter(|n| n.role == Role::Master)
        .cloned()
        .collect();
    let route = route::choose(&node, ssh.bastion.as_ref(), &masters, ssh.port)
        .map_err(|e| CliError::user(anyhow::Error::new(e)))?;
    let jump_key = match &route {
        Route::ViaMaster { master, .. } => masters
            .iter()
            .find(|m| &m.name == master)
            .and_then(|m| m.ssh_host_key.clone()),
        Route::Direct { .. } => None,
    };
    let connector = SshConnector::from_spec(&ssh, key, file.dir().join("logs"), false);
    connector.pin_recorded(&state.resources);
    Ok(NodeTarget {
        node,
        connector,
        file,
        route,
        jump_key,
    })
}

fn lineage_label(l: &str) -> &str {
    if l.is_empty() {
        "(none: tagged before lineages were)"
    } else {
        l
    }
}

/// Which lineage `destroy --cluster` removes: the one asked for (it must be among those found), else
/// the only one found (`None`: by name alone, for resources tagged before lineages were, or when
/// nothing is found). Several clusters of one name and no `--lineage`: an error listing them.
fn pick_lineage<'a>(
    cluster: &str,
    found: &'a std::collections::BTreeMap<String, Vec<String>>,
    asked: Option<&'a str>,
) -> Result<Option<&'a str>, CliError> {
    let list = || {
        found
            .iter()
            .map(|(l, what)| {
                format!(
                    "\n  --lineage {}  ({} resource(s): {})",
                    lineage_label(l),
                    what.len(),
                    what.join(", ")
                )
            })
            .collect::<String>()
    };
    match asked {
        Some(l) if found.contains_key(l) && !l.is_empty() => Ok(Some(l)),
        Some(l) => Err(CliError::user(anyhow!(
            "no EC2 resource of cluster \"{cluster}\" carries dcform:lineage={l}; found:{}",
            if found.is_empty() {
                " nothing".to_string()
            } else {
                list()
            }
        ))),
        None if found.len() <= 1 => Ok(found
            .keys()
            .next()
            .map(String::as_str)
            .filter(|l| !l.is_empty())),
        None => Err(CliError::user(anyhow!(
            "{} clusters named \"{cluster}\" share this account and region (one per state lineage); \
             nothing was removed. Say which with --lineage (the `lineage` in its state.json):{}",
            found.len(),
            list()
        ))),
    }
}

impl NodeTarget {
    async fn connect(&self) -> Result<SshRemote, CliError> {
        let c = &self.connector;
        let r = match &self.route {
            Route::Direct { .. } => c.connect(&self.node).await,
            Route::ViaMaster { bastion, host, .. } => {
                let policy = c.policy_for(&self.node);
                c.connect_through(&self.node, host, bastion, self.jump_key.clone(), policy)
                    .await
            }
        };
        r.map_err(|e| CliError::internal(anyhow::Error::new(e)))
    }

    /// The address SSH connects to (behind the jump host, if any).
    fn host(&self) -> String {
        match &self.route {
            Route::Direct { .. } => SshConnector::host_of(&self.node).unwrap_or_default(),
            Route::ViaMaster { host, .. } => host.clone(),
        }
    }

    /// The jump host: the definition's bastion, or the master a private agent is reached through.
    fn jump(&self) -> Option<Target> {
        match &self.route {
            Route::Direct { .. } => self.connector.bastion_target(),
            Route::ViaMaster { bastion, .. } => {
                let mut t =
                    Target::new(bastion.host.clone(), bastion.user_or(&self.connector.user));
                t.port = bastion.port;
                Some(t)
            }
        }
    }
}

/// `dcform ssh NODE`: checks the host key with the pinned fingerprint, then hands the terminal to the
/// system `ssh` with exactly that host key trusted.
pub async fn ssh(a: &NodeCmdArgs) -> Result<u8, CliError> {
    let t = node_target(a)?;
    let remote = t.connect().await?;
    let host_key = remote.session().host_key().openssh.clone();
    let bastion_key = remote.session().jump_host_key().map(|k| k.openssh.clone());
    let host = t.host();
    drop(remote);
    let (node, c, file) = (&t.node, &t.connector, &t.file);
    let known = |host: &str, port: u16, key: &str| {
        if port == 22 {
            format!("{host} {key}\n")
        } else {
            format!("[{host}]:{port} {key}\n")
        }
    };
    // A known_hosts holding only the verified keys (the node's and its bastion's, both just checked
    // against the state): the system ssh then refuses anything else.
    let kh = file.dir().join("known_hosts.ssh");
    let mut lines = known(&host, c.port, &host_key);
    let bastion = t.jump().zip(bastion_key);
    if let Some((b, key)) = &bastion {
        lines.push_str(&known(&b.host, b.port, key));
    }
    std::fs::write(&kh, lines)
        .with_context(|| format!("cannot write {}", kh.display()))
        .map_err(CliError::internal)?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("-o")
        .arg("StrictHostKeyChecking=yes")
        .arg("-p")
        .arg(c.port.to_string())
        .arg("-l")
        .arg(&c.user);
    for k in &c.key_files {
        cmd.arg("-i").arg(k);
    }
    if let Some((b, _)) = &bastion {
        // Not `-J`: options on the command line do not reach the jump connection, which would then
        // check the bastion against the user's own known_hosts (or ask), not the key dcform pinned.
        // The ProxyCommand runs in the user's shell after `%` expansion: quote, then escape `%`.
        let arg = |s: &str| shell_quote(s).replace('%', "%%");
        let mut proxy = vec![
            "ssh".to_string(),
            "-o".into(),
            arg(&format!("UserKnownHostsFile={}", kh.display())),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
        ];
        for k in &c.key_files {
            proxy.push("-i".into());
            proxy.push(arg(&k.display().to_string()));
        }
        proxy.extend([
            "-p".into(),
            b.port.to_string(),
            "-l".into(),
            arg(&b.user),
            "-W".into(),
            "%h:%p".into(),
            arg(&b.host),
        ]);
        cmd.arg("-o")
            .arg(format!("ProxyCommand={}", proxy.join(" ")));
    }
    if a.command.is_empty() {
        cmd.arg("-t");
    }
    cmd.arg(&host);
    if !a.command.is_empty() {
        cmd.arg("--").args(&a.command);
    }
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(CliError::user(anyhow!(
        "cannot run the system `ssh` ({err}); install openssh-client, or use `dcform exec {} -- CMD`",
        node.name
    )))
}

/// `dcform exec NODE -- CMD`: runs CMD over dcform's own SSH engine (host key pinned), streams its output and
/// exits with its exit code.
pub async fn exec(a: &NodeCmdArgs) -> Result<u8, CliError> {
    if a.command.is_empty() {
        return Err(CliError::user(anyhow!(
            "nothing to run: put the command after `--`, e.g. dcform exec {} -- uptime",
            a.node
        )));
    }
    let t = node_target(a)?;
    let remote = t.connect().await?;
    let script = a
        .command
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<dcform_bootstrap::ssh::OutputLine>();
    let printer = tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            match l.stream {
                OutputStream::Stdout => println!("{}", l.line),
                OutputStream::Stderr => eprintln!("{}", l.line),
            }
        }
    });
    let cmd = SshCommand::new("exec", script)
        .timeout(std::time::Duration::from_secs(24 * 3600))
        .sink(Some(tx));
    let res = remote.session().exec(&cmd).await;
    drop(cmd);
    let _ = printer.await;
    let host = t.host();
    let out = res.map_err(|e| CliError::internal(anyhow::Error::new(map_error(&host, e))))?;
    Ok(match out.status {
        ExitStatus::Code(c) => u8::try_from(c).unwrap_or(255),
        ExitStatus::Signal(_) | ExitStatus::Unknown => 255,
    })
}

/// `dcform node-image build`.
pub async fn node_image(c: &NodeImageCommand) -> Result<u8, CliError> {
    let NodeImageCommand::Build(a) = c;
    let opts = NodeImageOptions {
        tag: a.tag.clone(),
        ..NodeImageOptions::default()
    };
    let if_missing = a.if_missing;
    let info = tokio::task::spawn_blocking(move || {
        let mut progress = |line: &str| eprintln!("  {line}");
        if if_missing {
            node_image::ensure(&opts, &mut progress)
        } else {
            node_image::build(&opts, &mut progress)
        }
    })
    .await
    .map_err(|e| CliError::internal(anyhow!("node image build task failed: {e}")))?
    .map_err(|e| CliError::internal(anyhow::Error::new(e)))?;
    let id = info.id.trim_start_matches("sha256:");
    println!(
        "Node image {} ({}) ready: {}.",
        info.tag,
        id.get(..12).unwrap_or(id),
        info.path
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod forget_tests {
    use super::*;
    use crate::state::State;

    fn state_with_a_node(
        dir: &std::path::Path,
        cluster: &str,
        provider: ProviderKind,
    ) -> StateFile {
        let file = StateFile::default_for(dir, cluster);
        let mut s = State::new(cluster, provider);
        s.upsert_node(NodeState {
            name: "masters-1".into(),
            pool: crate::spec::PoolName::new("masters").expect("valid pool name"),
            index: 1,
            role: crate::spec::Role::Master,
            host: None,
            provider_id: Some("c0ffee".into()),
            addresses: vec!["172.18.0.2".into()],
            private_address: None,
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: crate::state::NodeStatus::Running,
            replica_id: None,
            replica_member: false,
        });
        s.outputs.insert(
            "master_url".into(),
            serde_json::json!("http://172.18.0.2:5050"),
        );
        file.save(&mut s).unwrap();
        file
    }

    #[test]
    fn a_docker_state_of_the_purged_cluster_forgets_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let file = state_with_a_node(dir.path(), "demo", ProviderKind::Docker);
        let serial = file.load().unwrap().unwrap().serial;
        assert_eq!(
            forget_nodes(&file, "demo", ProviderKind::Docker).unwrap(),
            Forgot::Nodes(1)
        );
        let after = file.load().unwrap().unwrap();
        assert!(after.nodes.is_empty() && after.outputs.is_empty());
        assert!(
            after.serial > serial,
            "a new serial: saved plans from before are stale"
        );
        assert!(
            file.backup_path().exists(),
            "the previous state is kept as backup"
        );
    }

    #[test]
    fn another_providers_or_clusters_state_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let file = state_with_a_node(dir.path(), "demo", ProviderKind::Local);
        let before = std::fs::read(file.path()).unwrap();
        assert!(matches!(
            forget_nodes(&file, "demo", ProviderKind::Docker).unwrap(),
            Forgot::OtherCluster(_)
        ));
        assert_eq!(std::fs::read(file.path()).unwrap(), before);
        let none = StateFile::default_for(dir.path(), "other");
        assert_eq!(
            forget_nodes(&none, "other", ProviderKind::Docker).unwrap(),
            Forgot::NoState
        );
    }
}
