//! How the nodes of a `local` cluster stay apart while they share one host.
//!
//! - **Addresses.** Every node gets a loopback address of its own, derived from its API port:
//!   `127.1.(port / 256).(port % 256)` ([`loopback_for`]). Linux routes all of 127.0.0.0/8 to `lo`, so
//!   nothing needs configuring, and since the cluster's API ports are unique (see `local.rs`) so are
//!   its addresses; they are stable because the port is kept for good. The agents' hostnames are
//!   these addresses (step_ops/sandbox_agent.rs), so that `hostname` constraints tell them apart. A
//!   host that cannot bind the address (a system whose loopback is 127.0.0.1 alone) gets
//!   127.0.0.1, as before.
//! - **Ports.** API ports are picked here ([`port_from`], [`system_port`]) so that the agents' task
//!   port ranges, also derived from the API port (step_ops/sandbox_agent.rs), never overlap within
//!   the cluster and never hold a node's API port.
//! - **Task users.** An agent running as root runs tasks as `nobody` (or the definition's task
//!   user), and that user must be able to search every folder above its sandbox. When dcform runs
//!   as root, [`open_for_task_users`] adds o+x (search, never read or write) to the folders above
//!   the sandboxes that lack it, and says which.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::step_ops::sandbox_agent::{task_ports, task_range_index};

/// The loopback address of the local node whose API port is `port`: `127.1.HI.LO` with the port's
/// two bytes. Never 127.0.0.1, which other programs on the host listen on.
pub fn loopback_for(port: u16) -> Ipv4Addr {
    let [hi, lo] = port.to_be_bytes();
    Ipv4Addr::new(127, 1, hi, lo)
}

/// The address a new local node with API port `port` is recorded with (`IP:PORT`): its own
/// [`loopback_for`] where this host can bind it, else 127.0.0.1.
pub fn node_address(port: u16) -> String {
    let ip = loopback_for(port);
    let ip = if can_bind(ip) {
        ip
    } else {
        Ipv4Addr::LOCALHOST
    };
    format!("{ip}:{port}")
}

/// Whether a listener can bind `ip` on this host (any port).
fn can_bind(ip: Ipv4Addr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}

/// A free TCP port on loopback (the OS picks it; the node keeps it for good).
pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether API port `p` keeps the cluster's task port ranges apart (step_ops/sandbox_agent.rs)
/// from the nodes that hold `taken`: its range is none of theirs and holds neither `p` nor one of
/// their API ports, and `p` lies in none of their ranges.
fn keeps_ranges_apart(p: u16, taken: &[u16]) -> bool {
    let own = task_ports(p);
    !own.contains(&p)
        && taken.iter().all(|&t| {
            task_range_index(t) != task_range_index(p)
                && !own.contains(&t)
                && !task_ports(t).contains(&p)
        })
}

/// Free on loopback now.
fn is_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// The lowest port from `base` up that is not in `taken`, [keeps the task ranges
/// apart](keeps_ranges_apart) and is free on loopback now; once every range is taken (127 nodes),
/// the lowest that is only free.
pub(super) fn port_from(base: u16, taken: &[u16]) -> std::io::Result<u16> {
    let candidates = || (base..=u16::MAX).filter(|p| !taken.contains(p));
    candidates()
        .filter(|p| keeps_ranges_apart(*p, taken))
        .find(|p| is_free(*p))
        .or_else(|| candidates().find(|p| is_free(*p)))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free port from base_port {base} up"),
            )
        })
}

/// How many system-picked ports [`system_port`] tries for one that keeps the ranges apart.
const SYSTEM_PORT_TRIES: usize = 500;

/// A port the system picks that is not in `taken` and [keeps the task ranges
/// apart](keeps_ranges_apart), else (after [`SYSTEM_PORT_TRIES`]) the last one it picked.
pub(super) fn system_port(taken: &[u16]) -> std::io::Result<u16> {
    let mut last = free_port()?;
    for _ in 0..SYSTEM_PORT_TRIES {
        if !taken.contains(&last) && keeps_ranges_apart(last, taken) {
            return Ok(last);
        }
        last = free_port()?;
    }
    Ok(last)
}

/// Whether this process runs as root: the owner of `/proc/self` is the process's effective
/// user (no unsafe `geteuid` call and no new dependency). Without procfs: not root, so nothing
/// is changed.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Makes `dir` and every folder above it searchable by others (adds o+x, never r or w) where it
/// is not, and returns those it changed, `dir` first. Every ancestor up to `/` is checked, not
/// only up to the first that is already searchable: a task user stopped by `/root` (0700) above
/// an open `/root/project` could not reach its sandbox either.
pub fn open_for_task_users(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::fs::canonicalize(dir)?;
    let mut changed = Vec::new();
    for d in dir.ancestors() {
        let mode = std::fs::metadata(d)?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode((mode & 0o7777) | 0o001))?;
            changed.push(d.to_path_buf());
        }
    }
    Ok(changed)
}

/// When dcform runs as root: [`open_for_task_users`] on the sandboxes folder `root`, and a line on
/// stderr naming the folders it changed (none on later runs, which find them open). Errors are
/// reported the same way and do not stop the apply: the tasks would fail, not the cluster.
pub fn prepare_for_task_users(root: &Path) {
    if !running_as_root() {
        return;
    }
    match open_for_task_users(root) {
        Ok(changed) if changed.is_empty() => {}
        Ok(changed) => {
            let list = changed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            eprintln!(
                "dcform runs as root and the local agents run tasks as other users: \
                 made searchable by others (o+x, no read or write) so that they reach their sandboxes: {list}"
            );
        }
        Err(e) => eprintln!(
            "warning: cannot make the folders above {} searchable by the task users ({e}): \
             tasks that run as another user (default nobody) will fail to start",
            root.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn addresses_come_from_the_port_and_are_unique_and_never_127_0_0_1() {
        assert_eq!(loopback_for(5050), Ipv4Addr::new(127, 1, 19, 186));
        assert_eq!(loopback_for(0x3aca), Ipv4Addr::new(127, 1, 0x3a, 0xca));
        let all: std::collections::BTreeSet<_> = (1..=u16::MAX).map(loopback_for).collect();
        assert_eq!(all.len(), usize::from(u16::MAX));
        assert!(!all.contains(&Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn a_node_address_is_its_own_loopback_where_the_host_has_it() {
        // Linux (this project's hosts) has all of 127/8 on lo.
        assert_eq!(node_address(40001), "127.1.156.65:40001");
        std::net::TcpListener::bind("127.1.156.65:0").expect("bind the node's address");
    }

    #[test]
    fn picked_ports_keep_the_task_ranges_apart() {
        // 15177 has the range of 15050 (both 64 mod 127): skipped.
        let p = port_from(15177, &[15050]).unwrap();
        assert!(p > 15177 && keeps_ranges_apart(p, &[15050]), "{p}");
        // A base port inside 15050's task ports (26400-26499): none of them is handed out.
        let p = port_from(26400, &[15050]).unwrap();
        assert!(p >= 26500 && keeps_ranges_apart(p, &[15050]), "{p}");
        let p = system_port(&[15050, p]).unwrap();
        assert!(keeps_ranges_apart(p, &[15050]), "{p}");
    }

    #[test]
    fn closed_folders_above_get_o_x_and_open_ones_are_left_alone() {
        let top = tempfile::tempdir().unwrap();
        let closed = top.path().join("closed");
        let open = closed.join("open");
        let nodes = open.join("nodes");
        std::fs::create_dir_all(&nodes).unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o710)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&nodes, std::fs::Permissions::from_mode(0o700)).unwrap();
        let changed = open_for_task_users(&nodes).unwrap();
        let top = std::fs::canonicalize(top.path()).unwrap();
        assert_eq!(
            changed,
            vec![
                top.join("closed/open/nodes"),
                top.join("closed"),
                top.clone()
            ]
        );
        assert_eq!(mode(&top), 0o701);
        assert_eq!(mode(&top.join("closed")), 0o711);
        assert_eq!(
            mode(&top.join("closed/open")),
            0o755,
            "already open: untouched"
        );
        assert_eq!(mode(&top.join("closed/open/nodes")), 0o701);
        // A second run finds nothing to do (and so says nothing).
        assert_eq!(open_for_task_users(&nodes).unwrap(), Vec::<PathBuf>::new());
    }
}
