//! A loopback TCP proxy that cuts its first connection after N bytes from client to server:
//! a real dropped connection in the middle of an upload, at a point the test chooses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct CuttingProxy {
    pub port: u16,
    cuts: Arc<AtomicU32>,
    _tasks: JoinSet<()>,
}

impl CuttingProxy {
    pub async fn start(upstream: String, cut_after: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cuts = Arc::new(AtomicU32::new(0));
        let mut tasks = JoinSet::new();
        let c = cuts.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            let mut first = true;
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let limit = if first { Some(cut_after) } else { None };
                first = false;
                conns.spawn(pipe(client, server, limit, c.clone()));
            }
        });
        CuttingProxy {
            port,
            cuts,
            _tasks: tasks,
        }
    }

    pub fn cuts(&self) -> u32 {
        self.cuts.load(Ordering::SeqCst)
    }
}

async fn pipe(client: TcpStream, server: TcpStream, limit: Option<usize>, cuts: Arc<AtomicU32>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            sent += n;
            if limit.is_some_and(|l| sent >= l) {
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    // Whichever direction ends first ends the connection: both halves drop, both sockets close.
    tokio::select! { _ = down => {}, _ = up => {} }
}
