//! Benchmark: upload a 15 MB file and run an install script on 20 node containers, with dcform's
//! SSH engine (all hosts in parallel, one connection each) and with a plain `scp` + `ssh` loop doing
//! the same work. Prints both wall times, the speedup and the machine.
//!
//! `cargo run --release -p dcform-bootstrap --example bench-bootstrap [-- --hosts 20 --size-mb 15 --rounds 3 --tmpfs] [--skip-loop|--skip-dcform]`
//!
//! `--skip-loop` / `--skip-dcform` run one side only (for `perf record -a`).
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

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = Proc::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {kernel}")
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
    println!("machine: {}", machine());
    let storage = docker(&["info", "--format", "{{.Driver}}"]).unwrap_or_default();
    println!(
        "work: {size_mb} MiB upload + install script on {hosts} containers (real sshd), destination on {}",
        if tmpfs {
            "tmpfs".to_string()
        } else {
            format!("the container filesystem ({storage})")
        }
    );
    let script = Arc::new(script);
    let mut loops = Vec::new();
    let mut ours = Vec::new();
    for round in 1..=rounds {
        reset(&ips)?;
        let l = if skip_loop {
            Duration::ZERO
        } else {
            plain_loop(&ips, &key, &file, &script_path)?
        };
        if !skip_loop {
            verify(&ips, &sha)?;
            reset(&ips)?;
        }
        let cpu0 = cpu_secs();
        let d = if skip_dcform {
            Duration::ZERO
        } else {
            dcform_parallel(&ips, &key, &file, script.clone()).await?
        };
        let cpu = cpu_secs() - cpu0;
        if !skip_dcform {
            verify(&ips, &sha)?;
        }
        println!(
            "round {round}: scp+ssh loop {:.2} s, dcform parallel {:.2} s (controller CPU {cpu:.2} s), speedup {:.1}x",
            l.as_secs_f64(),
            d.as_secs_f64(),
            l.as_secs_f64() / d.as_secs_f64()
        );
        loops.push(l.as_secs_f64());
        ours.push(d.as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (l, d) = (med(&mut loops), med(&mut ours));
    println!(
        "median: scp+ssh loop {l:.2} s, dcform parallel {d:.2} s, speedup {:.1}x",
        l / d
    );
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
