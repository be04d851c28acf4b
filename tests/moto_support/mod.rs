//! Test support for the aws provider: a real moto server on 127.0.0.1 (PyPI `moto[server]`, set up by
//! `.ci/setup-moto.sh`), one per test binary, reset between tests, and a small fault-injecting HTTP
//! proxy of our own to put in front of it (throttling answers, held responses).
//!
//! moto's instances are not machines: nothing here (or in the tests using it) ever connects to an
//! instance address. Only moto's own port on loopback is spoken to.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    // The wrapper shell: moto is killed when its stdin (held here) closes, i.e. when the test
    // process exits, however it exits.
    _wrapper: Mutex<Child>,
}

/// Where `moto_server` is: `DCFORM_TEST_MOTO`, the CI cache, the acceptance check's venv, or PATH.
pub fn moto_server_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DCFORM_TEST_MOTO") {
        return Some(PathBuf::from(p));
    }
    let cache =
        std::env::var("DCFORM_CI_CACHE").unwrap_or_else(|_| "/var/tmp/dcform-ci-cache".into());
    [
        PathBuf::from(format!("{cache}/moto-5.2.5-venv/bin/moto_server")),
        PathBuf::from("/tmp/dcform-acceptance-moto/bin/moto_server"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("moto_server"))
                .find(|p| p.is_file())
        })
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Moto {
    /// Starts moto on a free port and waits (deadline 30 s) until it answers. Without moto the test
    /// fails, unless skips are allowed (`DCFORM_TEST_ALLOW_SKIP=1`): then `None`, with a note.
    pub fn start() -> Option<Moto> {
        let Some(bin) = moto_server_path() else {
            dc_support::testing::missing(
                "moto_server not found (run `. .ci/setup-moto.sh` or set DCFORM_TEST_MOTO)",
            );
            return None;
        };
        // A port taken between our probe and moto's bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut wrapper = Command::new("bash")
                .arg("-c")
                .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & m=$!; cat >/dev/null; kill $m 2>/dev/null; wait $m"#)
                .arg(&bin)
                .arg(port.to_string())
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn moto_server");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = wrapper.try_wait() {
                    break;
                }
                if http(addr, "GET", "/moto-api/", "").is_ok_and(|(s, _)| s < 500) {
                    return Some(Moto {
                        url: format!("http://127.0.0.1:{port}"),
                        addr,
                        _wrapper: Mutex::new(wrapper),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = wrapper.kill();
            let _ = wrapper.wait();
        }
        panic!(
            "moto_server at {} did not answer within 30 s",
            bin.display()
        );
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let (status, body) = http(self.addr, "POST", "/moto-api/reset", "").expect("moto reset");
        assert_eq!(status, 200, "moto reset answered {status}: {body}");
    }

    /// An EC2 Query API call straight to moto (independent of dcform's client): the XML answer.
    pub fn ec2(&self, params: &str) -> String {
        // moto routes an unsigned Query API call to S3: a SigV4-shaped header naming `ec2` in its
        // credential scope sends it to EC2 (moto checks no signature).
        let (status, body) = http_with(
            self.addr,
            "POST",
            "/",
            &format!("Version=2016-11-15&{params}"),
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n",
        )
        .expect("moto ec2 call");
        assert_eq!(status, 200, "{params}: {body}");
        body
    }

    /// How many `<tag>` elements moto's answer to `params` has.
    pub fn count(&self, params: &str, tag: &str) -> usize {
        self.ec2(params).matches(&format!("<{tag}>")).count()
    }

    /// How many distinct `<elem>` values moto's answer to `action` lists for resources tagged
    /// `dcform:cluster = cluster` (an id may repeat inside its own resource, e.g. a route table's in
    /// its associations).
    pub fn tagged(&self, action: &str, cluster: &str, elem: &str) -> usize {
        self.tagged_with(action, "dcform:cluster", cluster, elem)
    }

    /// As [`Moto::tagged`], for resources tagged `key = value`.
    pub fn tagged_with(&self, action: &str, key: &str, value: &str, elem: &str) -> usize {
        let xml = self.ec2(&format!(
            "Action={action}&Filter.1.Name=tag:{key}&Filter.1.Value.1={value}"
        ));
        let open = format!("<{elem}>");
        let mut ids: Vec<&str> = xml
            .split(&open)
            .skip(1)
            .filter_map(|c| c.split('<').next())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    /// The network resources (everything but instances) still tagged with `cluster`, as
    /// (Describe action, how many); empty when the cluster's network is gone.
    pub fn network_left(&self, cluster: &str) -> Vec<(&'static str, usize)> {
        NETWORK_RESOURCES
            .iter()
            .map(|(action, elem)| (*action, self.tagged(action, cluster, elem)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// What dcform makes and tags for a cluster's network, as (Describe action, id element).
pub const NETWORK_RESOURCES: [(&str, &str); 6] = [
    ("DescribeVpcs", "vpcId"),
    ("DescribeSubnets", "subnetId"),
    ("DescribeSecurityGroups", "groupId"),
    ("DescribeInternetGateways", "internetGatewayId"),
    ("DescribeRouteTables", "routeTableId"),
    ("DescribeKeyPairs", "keyName"),
];

/// The test binary's moto (started on first use), or `None` if not installed and not in CI.
pub fn shared() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(Moto::start).as_ref()
}

/// Serializes tests on the shared moto: the guard resets it first.
pub async fn session() -> Option<(tokio::sync::MutexGuard<'static, ()>, &'static Moto)> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let moto = shared()?;
    let guard = SERIAL.lock().await;
    moto.reset();
    Some((guard, moto))
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    http_with(addr, method, path, body, "")
}

/// [`http`] with extra header lines (each ending in `\r\n`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// What the proxy does to requests of one EC2 action.
#[derive(Debug, Clone)]
pub struct Fault {
    /// EC2 action, e.g. `RunInstances`.
    pub action: String,
    /// Answer this many of them with `code` (HTTP 503) instead of forwarding.
    pub fail: usize,
    /// The error code, e.g. `RequestLimitExceeded` (EC2 sends it with HTTP 503) or
    /// `InstanceLimitExceeded` (HTTP 400).
    pub code: String,
    /// Hold each forwarded answer this long before passing it on.
    pub hold: Duration,
}

/// A fault-injecting HTTP proxy in front of moto. Counts what it did.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Faulty answers sent.
    pub injected: Arc<AtomicUsize>,
    /// Requests of the fault's action that moto answered (before any hold).
    pub forwarded: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, applying `fault`.
    pub fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let injected = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (inj, fwd, st) = (injected.clone(), forwarded.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (inj, fwd, fault) = (inj.clone(), fwd.clone(), fault.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &fault, &inj, &fwd);
                });
            }
        });
        FaultProxy {
            url: format!("http://{addr}"),
            injected,
            forwarded,
            stop,
            addr,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Reads one request (head + Content-Length body); `None` at EOF.
fn read_request(c: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("request head too long"));
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: &Fault,
    injected: &AtomicUsize,
    forwarded: &AtomicUsize,
) -> std::io::Result<()> {
    while let Some((head, body)) = read_request(&mut client)? {
        let is_action =
            String::from_utf8_lossy(&body).contains(&format!("Action={}", fault.action));
        // One atomic step: parallel nodes call at once, and a load-then-add lets two
        // of them both see "one fault left".
        if is_action
            && injected
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < fault.fail).then_some(n + 1)
                })
                .is_ok()
        {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{} (injected by the test proxy).</Message></Error></Errors><RequestID>dcform-test</RequestID></Response>",
                fault.code, fault.code
            );
            let status = if fault.code == "RequestLimitExceeded" {
                "503 Service Unavailable"
            } else {
                "400 Bad Request"
            };
            write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{xml}",
                xml.len()
            )?;
            continue;
        }
        // Forward with `Connection: close` so moto's answer ends at EOF.
        let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))?;
        let mut new_head: String = head
            .trim_end_matches("\r\n")
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        new_head.push_str("Connection: close\r\n\r\n");
        up.write_all(new_head.as_bytes())?;
        up.write_all(&body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        if is_action {
            forwarded.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(fault.hold);
        }
        // An answer that says `Connection: close` ends this connection for the client too.
        client.write_all(&answer)?;
        if String::from_utf8_lossy(&answer[..answer.len().min(2048)])
            .to_ascii_lowercase()
            .contains("connection: close")
        {
            return Ok(());
        }
    }
    Ok(())
}
