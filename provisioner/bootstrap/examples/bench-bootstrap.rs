//! Benchmark: upload a 15 MB file and run an install script on 20 node containers, three ways
//! doing the same work (same file, same destination, same script), in the same run:
//! 1. dcform's SSH engine: all hosts in parallel, one connection each;
//! 2. what an operator would use: `parallel-scp` then `parallel-ssh -I` (Debian package `pssh`)
//!    with the same parallelism (`-p HOSTS`, every host at once);
//! 3. a plain sequential `scp` + `ssh` loop (secondary).
//!
//! Prints, per round and as medians, dcform vs pssh first, then the loop; each round line carries
//! the 1-minute load average read before it, since the machine may be shared. Within a round
//! dcform and pssh run back to back and swap order every round.
//!
//! `cargo run --release -p dcform-bootstrap --example bench-bootstrap [-- --hosts 20 --size-mb 15 --rounds 3 --tmpfs] [--skip-loop|--skip-pssh|--skip-dcform]`
//!
//! `--skip-loop` / `--skip-pssh` / `--skip-dcform` leave one contender out (e.g. for
//! `perf record -a` of one side).
//!
//! Creates its own docker network and containers (label `dcform.bench=bootstrap`) and removes them
//! at the end; connects only to those containers.

use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcform_bootstrap::node_image::{self, NodeImageOptions};
use dcform_bootstrap::ssh::{
    Auth, Command, ConnectOptions, HostKeyPolicy, Session, Target, Upload, UploadSource,
};
use sha2::{Digest, Sha256};

/// The contenders' names in the output.
const PSSH: &str = "parallel-scp+parallel-ssh";
const LOOP: &str = "sequential scp+ssh loop";

const DEST: &str = "/usr/local/bin/dccore-bench";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn docker(args: &[&str]) -> Result<String, BoxError> {
    let out = Proc::new("docker").args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes the bench network and containers on drop, also on error.
struct Cleanup {
    net: String,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = Proc::new("docker").args(&args).output();
        }
        // The engine may still be detaching the removed containers' endpoints: retry briefly.
        for _ in 0..10 {
            let removed = Proc::new("docker")
                .args(["network", "rm", &self.net])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if removed {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn install_script(sha: &str) -> String {
    format!(
        "set -e\n\
         f={DEST}\n\
         [ \"$(sha256sum \"$f\" | cut -c1-64)\" = {sha} ] || {{ echo \"bad hash\" >&2; exit 1; }}\n\
         chmod 0755 \"$f\"\n\
         mkdir -p /etc/dcform-bench /var/lib/dcform-bench\n\
         printf 'node = \"%s\"\\n' \"$(hostname)\" > /etc/dcform-bench/node.toml\n\
         echo installed\n"
    )
}

/// `"dcform vs NAME X.XXx (dcform A s, NAME B s)"`: how many times faster dcform was than the
/// other contender (below 1: slower), or which one did not run.
fn compare(name: &str, dcform: Option<f64>, other: Option<f64>) -> String {
    match (dcform, other) {
        (Some(d), Some(o)) => format!(
            "dcform vs {name} {:.2}x (dcform {d:.2} s, {name} {o:.2} s)",
            o / d
        ),
        (None, Some(o)) => format!("{name} {o:.2} s (dcform skipped)"),
        (Some(d), None) => format!("dcform {d:.2} s ({name} skipped)"),
        (None, None) => format!("dcform and {name} skipped"),
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn reset(ips: &[(String, String)]) -> Result<(), BoxError> {
    for (name, _) in ips {
        docker(&[
            "exec",
            name,
            "rm",
            "-rf",
            DEST,
            "/etc/dcform-bench",
            "/var/lib/dcform-bench",
        ])?;
    }
    Ok(())
}

fn verify(ips: &[(String, String)], sha: &str) -> Result<(), BoxError> {
    for (name, _) in ips {
        let got = docker(&[
            "exec",
            name,
            "sh",
            "-c",
            &format!("sha256sum {DEST} | cut -c1-64; cat /etc/dcform-bench/node.toml"),
        ])?;
        if !got.starts_with(sha) {
            return Err(format!("{name}: file not installed intact: {got}").into());
        }
    }
    Ok(())
}

fn ssh_opts(key: &Path) -> Vec<String> {
    vec![
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ]
}

/// The 1-minute load average (`/proc/loadavg`).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The first of `names` found on `PATH` (Debian calls pssh's tools `parallel-scp` /
/// `parallel-ssh`, other distributions `pscp.pssh` / `pssh`).
fn find_tool(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .find(|n| std::env::split_paths(&path).any(|d| d.join(n).is_file()))
        .map(|n| n.to_string())
}

/// pssh's tools: (parallel-scp, parallel-ssh).
struct Pssh {
    scp: String,
    ssh: String,
}

impl Pssh {
    fn find() -> Result<Pssh, BoxError> {
        match (
            find_tool(&["parallel-scp", "pscp.pssh", "pscp"]),
            find_tool(&["parallel-ssh", "pssh"]),
        ) {
            (Some(scp), Some(ssh)) => Ok(Pssh { scp, ssh }),
            _ => Err("parallel-scp/parallel-ssh not found: install them (`apt-get install -y pssh`) or pass --skip-pssh".into()),
        }
    }
}

/// Runs one pssh tool; on failure returns its output (pssh prints one `[FAILURE]` line per host).
fn run_pssh(cmd: &mut Proc, what: &str) -> Result<(), BoxError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// `parallel-scp FILE DEST` to every host, then `parallel-ssh -I 'sh -s' < install.sh`, both with
/// parallelism = number of hosts (what dcform uses) and the loop's ssh options.
fn pssh_parallel(
    tools: &Pssh,
    hosts_file: &Path,
    hosts: usize,
    key: &Path,
    file: &Path,
    script: &Path,
) -> Result<Duration, BoxError> {
    let common = |cmd: &mut Proc| {
        cmd.arg("-h")
            .arg(hosts_file)
            .args(["-l", "root", "-p", &hosts.to_string(), "-t", "600"]);
        // pssh passes `-O` options and `-x` arguments through to ssh/scp.
        for o in ssh_opts(key).chunks(2) {
            match o {
                [flag, v] if flag == "-o" => {
                    cmd.args(["-O", v]);
                }
                [flag, v] if flag == "-i" => {
                    cmd.args(["-O", &format!("IdentityFile={v}")]);
                }
                other => unreachable!("ssh_opts gives -o/-i pairs, not {other:?}"),
            }
        }
    };
    let start = Instant::now();
    let mut scp = Proc::new(&tools.scp);
    common(&mut scp);
    scp.arg(file).arg(DEST);
    run_pssh(&mut scp, "parallel-scp")?;
    let mut ssh = Proc::new(&tools.ssh);
    common(&mut ssh);
    ssh.arg("-I")
        .arg("sh -s")
        .stdin(std::fs::File::open(script)?);
    run_pssh(&mut ssh, "parallel-ssh")?;
    Ok(start.elapsed())
}

fn plain_loop(
    ips: &[(String, String)],
    key: &Path,
    file: &Path,
    script: &Path,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    for (_, ip) in ips {
        let st = Proc::new("scp")
            .arg("-q")
            .args(ssh_opts(key))
            .arg(file)
            .arg(format!("root@{ip}:{DEST}"))
            .status()?;
        if !st.success() {
            return Err(format!("scp to {ip} failed").into());
        }
        let st = Proc::new("ssh")
            .args(ssh_opts(key))
            .arg(format!("root@{ip}"))
            .arg("sh -s")
            .stdin(std::fs::File::open(script)?)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            return Err(format!("ssh install on {ip} failed").into());
        }
    }
    Ok(start.elapsed())
}

async fn dcform_parallel(
    ips: &[(String, String)],
    key: &Path,
    file: &Path,
    script: Arc<String>,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (_, ip) in ips {
        let (ip, key, file, script) = (
            ip.clone(),
            key.to_path_buf(),
            file.to_path_buf(),
            script.clone(),
        );
        set.spawn(async move {
            let t0 = Instant::now();
            let trace = std::env::var_os("BENCH_TRACE").is_some();
            let s = Session::connect(
                Target::new(&ip, "root"),
                Auth {
                    key_files: vec![key],
                    ..Auth::default()
                },
                HostKeyPolicy::TrustOnFirstUse,
                ConnectOptions::default(),
            )
            .await?;
            let t1 = Instant::now();
            s.upload(&Upload::new(
                "upload",
                UploadSource::File(file),
                DEST,
                0o755,
            ))
            .await?;
            let t2 = Instant::now();
            s.run(&Command::new("install", "sh -s").stdin(script.as_bytes().to_vec()))
                .await?;
            let t3 = Instant::now();
            s.close().await;
            if trace {
                eprintln!(
                    "{ip}: connect {:?} upload {:?} install {:?}",
                    t1 - t0,
                    t2 - t1,
                    t3 - t2
                );
            }
            Ok::<_, dcform_bootstrap::ssh::SshError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut hosts = 20usize;
    let mut size_mb = 15usize;
    let mut rounds = 3usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The test substrate's container filesystem may be fuse-overlayfs, whose user-space writes
    // cap every upload far below the link; `--tmpfs` puts the destination directory on tmpfs
    // (for both contenders) to measure the transfer engines instead of the storage driver.
    let tmpfs = args.iter().any(|a| a == "--tmpfs");
    // For profiling the dcform side alone (e.g. under `perf record -a`): no loop, no speedup.
    let skip_loop = args.iter().any(|a| a == "--skip-loop");
    let skip_dcform = args.iter().any(|a| a == "--skip-dcform");
    for w in args.windows(2) {
        match w[0].as_str() {
            "--hosts" => hosts = w[1].parse()?,
            "--size-mb" => size_mb = w[1].parse()?,
            "--rounds" => rounds = w[1].parse()?,
            _ => {}
        }
    }
    let skip_pssh = args.iter().any(|a| a == "--skip-pssh");
    // Found before any container starts, so a missing pssh fails at once.
    let pssh = if skip_pssh { None } else { Some(Pssh::find()?) };
    let img = node_image::ensure(&NodeImageOptions::default(), &mut |l| eprintln!("{l}"))?;
    let dir = std::env::temp_dir().join(format!("dcform-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key: PathBuf = dir.join("id");
    let st = Proc::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()?;
    if !st.success() {
        return Err("ssh-keygen failed".into());
    }
    let pubkey = std::fs::read_to_string(dir.join("id.pub"))?;
    // Incompressible content, like a stripped binary.
    let mut data = vec![0u8; size_mb << 20];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let sha = hex::encode(Sha256::digest(&data));
    let file = dir.join("payload.bin");
    std::fs::write(&file, &data)?;
    let script = install_script(&sha);
    let script_path = dir.join("install.sh");
    std::fs::write(&script_path, &script)?;

    let net = format!("dcform-bench-{}", std::process::id());
    docker(&[
        "network",
        "create",
        "--label",
        "dcform.bench=bootstrap",
        &net,
    ])?;
    let mut cleanup = Cleanup {
        net: net.clone(),
        containers: Vec::new(),
    };
    let env = format!("DCFORM_AUTHORIZED_KEYS={}", pubkey.trim());
    let mut ips = Vec::new();
    for i in 0..hosts {
        let name = format!("{net}-{i}");
        let mut run = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            &name,
            "--network",
            &net,
            "--label",
            "dcform.bench=bootstrap",
            "-e",
            &env,
        ];
        if tmpfs {
            run.extend(["--tmpfs", "/usr/local/bin:rw,exec,size=64m"]);
        }
        run.push(&img.tag);
        docker(&run)?;
        cleanup.containers.push(name.clone());
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &name,
        ])?;
        ips.push((name, ip));
    }
    // Wait until every sshd answers (not timed).
    for (_, ip) in &ips {
        Session::connect(
            Target::new(ip, "root"),
            Auth {
                key_files: vec![key.clone()],
                ..Auth::default()
            },
            HostKeyPolicy::TrustOnFirstUse,
            ConnectOptions::default(),
        )
        .await?
        .close()
        .await;
    }
    println!("machine: {}", dc_support::testing::machine());
    let storage = docker(&["info", "--format", "{{.Driver}}"]).unwrap_or_default();
    println!(
        "work: {size_mb} MiB upload + install script on {hosts} containers (real sshd), destination on {}",
        if tmpfs {
            "tmpfs".to_string()
        } else {
            format!("the container filesystem ({storage})")
        }
    );
    let hosts_file = dir.join("hosts");
    let list: String = ips.iter().map(|(_, ip)| format!("{ip}\n")).collect();
    std::fs::write(&hosts_file, list)?;
    let script = Arc::new(script);
    // Seconds per round of each contender that ran.
    let (mut ours, mut theirs, mut loops) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pssh_ratios, mut loop_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let load_before = load();
        let mut d = None;
        let mut p = None;
        let mut cpu = 0.0;
        // dcform and pssh back to back, the order swapped every round so neither always runs
        // on a machine the other just warmed (or loaded).
        let dcform_first = round % 2 == 1;
        for turn in [dcform_first, !dcform_first] {
            reset(&ips)?;
            if turn && !skip_dcform {
                let cpu0 = cpu_secs();
                d = Some(dcform_parallel(&ips, &key, &file, script.clone()).await?);
                cpu = cpu_secs() - cpu0;
            } else if !turn && let Some(tools) = &pssh {
                p = Some(pssh_parallel(
                    tools,
                    &hosts_file,
                    ips.len(),
                    &key,
                    &file,
                    &script_path,
                )?);
            } else {
                continue;
            }
            verify(&ips, &sha)?;
        }
        let l = if skip_loop {
            None
        } else {
            reset(&ips)?;
            let l = plain_loop(&ips, &key, &file, &script_path)?;
            verify(&ips, &sha)?;
            Some(l)
        };
        let (d, p, l) = (
            d.map(|v| v.as_secs_f64()),
            p.map(|v| v.as_secs_f64()),
            l.map(|v| v.as_secs_f64()),
        );
        println!(
            "round {round} (load {load_before}, {} first): {}, controller CPU {cpu:.2} s; secondary: {}",
            if dcform_first { "dcform" } else { "pssh" },
            compare(PSSH, d, p),
            compare(LOOP, d, l),
        );
        // Ratios of the same round: the fairest comparison on a machine whose load drifts.
        if let (Some(d), Some(p)) = (d, p) {
            pssh_ratios.push(p / d);
        }
        if let (Some(d), Some(l)) = (d, l) {
            loop_ratios.push(l / d);
        }
        ours.extend(d);
        theirs.extend(p);
        loops.extend(l);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied()
    };
    let ratio = |r: Option<f64>| r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into());
    println!(
        "median of the per-round ratios: dcform vs {PSSH} {}; secondary: dcform vs {LOOP} {}",
        ratio(med(pssh_ratios)),
        ratio(med(loop_ratios)),
    );
    let (d, p, l) = (med(ours), med(theirs), med(loops));
    println!(
        "median times of {rounds} rounds (load {} after): {}; secondary: {}",
        load(),
        compare(PSSH, d, p),
        compare(LOOP, d, l),
    );
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
