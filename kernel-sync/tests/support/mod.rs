//! Fixtures for the engine tests: where `cargo xtask services up` put the engines, unique
//! names, and a TCP proxy that can black-hole a client's traffic.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) use kernel_testkit::engine_address;

/// A name no other test run uses, for namespaces, lock ids and keyspaces (underscores: a
/// keyspace name may not contain dots).
pub(crate) fn unique_name(prefix: &str) -> String {
    kernel_testkit::unique(prefix).replace('.', "_")
}

/// Waits for `future` at most `limit`, failing with a message naming what was awaited.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// The mutual-exclusion check every backend passes: eight tasks spread over `sessions` each
/// take the lock fifty times and increment a shared counter with a read-sleep-write. The count
/// must come out exact and the fencing tokens seen inside the critical section must strictly
/// increase.
pub(crate) async fn eight_tasks_increment_a_counter<B>(
    sessions: [B; 2],
    wait_for: Duration,
    bound: Duration,
) where
    B: kernel_sync::LockBackend + Clone,
{
    use kernel_sync::{FencingToken, LockBackendExt};

    let counter = Arc::new(std::sync::Mutex::new(0_u64));
    let tokens = Arc::new(std::sync::Mutex::new(Vec::<FencingToken>::new()));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let backend = sessions[task % 2].clone();
        let (counter, tokens) = (counter.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let guard = backend
                    .lock("counter")
                    .wait_for(wait_for)
                    .acquire()
                    .await
                    .unwrap();
                tokens.lock().unwrap().push(guard.fencing_token());
                let read = *counter.lock().unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                *counter.lock().unwrap() = read + 1;
                guard.unlock().await.unwrap();
            }
        }));
    }
    for task in tasks {
        within(bound, "400 lock cycles", task).await.unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 400);
    let tokens = tokens.lock().unwrap();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// A TCP proxy in front of one upstream address. [`cut`](Proxy::cut) black-holes every
/// connection, open and new: bytes are read and dropped, nothing is answered, nothing is
/// closed, as a network partition looks to both ends. [`restore`](Proxy::restore) lets new
/// connections through again (the black-holed ones stay dead).
#[derive(Clone, Debug)]
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port.
    pub(crate) async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let upstream = upstream.to_owned();
        let accepting = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = accepting.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if *cut.borrow() {
                        black_hole(client).await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    forward(client, server, cut).await;
                });
            }
        });
        Proxy { addr, cut }
    }

    /// `127.0.0.1:<port>` for a client's connect string.
    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub(crate) fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// Copies both ways until cut; then reads and drops everything, holding both sockets open.
async fn forward(client: TcpStream, server: TcpStream, mut cut: watch::Receiver<bool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let pump = async {
        let mut up = [0_u8; 8192];
        let mut down = [0_u8; 8192];
        loop {
            tokio::select! {
                read = client_read.read(&mut up) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if server_write.write_all(&up[..n]).await.is_err() { return },
                },
                read = server_read.read(&mut down) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if client_write.write_all(&down[..n]).await.is_err() { return },
                },
            }
        }
    };
    tokio::select! {
        () = pump => return,
        _ = cut.wait_for(|cut| *cut) => {}
    }
    let (mut up, mut down) = ([0_u8; 8192], [0_u8; 8192]);
    loop {
        tokio::select! {
            read = client_read.read(&mut up) => if matches!(read, Ok(0) | Err(_)) { break },
            read = server_read.read(&mut down) => if matches!(read, Ok(0) | Err(_)) { break },
        }
    }
    // Keep the write halves (and so the connections) open until both ends give up.
    drop((client_write, server_write));
}

/// Accepts bytes and never answers.
async fn black_hole(mut client: TcpStream) {
    let mut sink = [0_u8; 8192];
    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
}
