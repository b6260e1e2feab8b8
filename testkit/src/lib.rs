//! What the workspace's own tests share: where the real engines are, names no other test
//! uses, waits that fail with a message instead of hanging, and a TCP [`Proxy`] that injects
//! network faults between a client and an engine.
//!
//! A dev-dependency of the crates whose tests and benchmarks talk to RabbitMQ, ZooKeeper or
//! Cassandra; not published. [`bench`](mod@bench) reads a benchmark's command line;
//! [`cluster`](mod@cluster) kills and restarts nodes of the three-node clusters.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let queue = kernel_testkit::unique("orders");
//! assert!(queue.starts_with("test.orders."));
//! let answer = kernel_testkit::bounded("the answer", async { 42 }).await;
//! assert_eq!(answer, 42);
//! # }
//! ```

#![doc(test(attr(deny(warnings))))]

pub mod bench;
pub mod cluster;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use cluster::{KilledNode, kill_node};

/// The longest a single wait in a test may take before it fails the test.
pub const BOUND: Duration = Duration::from_secs(20);

/// The address of a real engine: the environment variable `var` if set (as `cargo xtask test`
/// does), else the line `var=…` that `cargo xtask services up` wrote to `.services/env` at the
/// workspace root.
///
/// The root is the one the test runs in ([`workspace_root`]), so a test binary built in another
/// checkout that shares this `CARGO_TARGET_DIR` still reads this checkout's engines; only when
/// no root is found does it fall back to the root this crate was compiled in.
///
/// # Panics
/// If neither is there, naming the command to run: engine tests never skip silently.
pub fn engine_address(var: &str) -> String {
    if let Ok(value) = std::env::var(var) {
        return value;
    }
    let env_file = services_dir().join("env");
    env_file_value(&env_file, var).unwrap_or_else(|| {
        panic!(
            "{var} is not set and {} has no such line: run the tests with \
             `cargo xtask test`, or run `cargo xtask services up` first",
            env_file.display()
        )
    })
}

/// An address of the three-node clusters (`cargo xtask services up --cluster`): the line
/// `var=…` of `.services/cluster.env` at the workspace root, e.g. `KERNEL_AMQP_URL` (the three
/// brokers, comma-separated), `KERNEL_ZK_HOSTS`, `KERNEL_CASSANDRA_HOSTS`, or one node's own
/// `KERNEL_RABBIT_2_URL`, `KERNEL_RABBIT_2_NODENAME`, `KERNEL_ZK_1_HOST`,
/// `KERNEL_CASSANDRA_3_HOST` (docs/services.md, "Cluster mode").
///
/// Read from that file only, never from the environment: `cargo xtask test` sets the same
/// names to the single nodes' addresses, and a cluster test must never get those.
///
/// # Panics
/// If the file or the line is missing, naming the command to run.
pub fn cluster_address(var: &str) -> String {
    let env_file = services_dir().join("cluster.env");
    env_file_value(&env_file, var).unwrap_or_else(|| {
        panic!(
            "{} has no line {var}=…: start the clusters with \
             `cargo xtask services up --cluster` first",
            env_file.display()
        )
    })
}

/// `<root>/.services`, the root found as [`engine_address`] says.
fn services_dir() -> PathBuf {
    workspace_root()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .join(".services")
}

/// The value of the line `var=…` in the `NAME=value` file `env_file`, if both exist.
fn env_file_value(env_file: &Path, var: &str) -> Option<String> {
    let contents = std::fs::read_to_string(env_file).ok()?;
    contents.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == var).then(|| value.trim().to_owned())
    })
}

/// The root of the workspace this process runs in: the nearest directory, from the current
/// one up, whose `Cargo.toml` has a `[workspace]` table. `cargo test` and `cargo bench` run
/// each test and benchmark in its package's directory, so this is the checkout it was run
/// from, whichever checkout compiled it.
pub fn workspace_root() -> Option<PathBuf> {
    find_workspace_root(&std::env::current_dir().ok()?)
}

/// The nearest of `start` and its ancestors that holds a workspace manifest.
fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| {
                text.lines().any(|line| {
                    let line = line.trim_start();
                    line.starts_with("[workspace]") || line.starts_with("[workspace.")
                })
            })
        })
        .map(Path::to_path_buf)
}

/// A name no other test, and no other run of the tests on the same engine, uses:
/// `test.<prefix>.<pid>.<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("test.{prefix}.{}.{nanos}", std::process::id())
}

/// Awaits `future` for at most [`BOUND`].
///
/// # Panics
/// If it takes longer, saying that `what` did not happen.
pub async fn bounded<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {BOUND:?}"))
}

/// A TCP proxy on a free loopback port in front of one upstream address, for fault tests.
///
/// * [`cut`](Proxy::cut) black-holes every connection, open and new: bytes are read and
///   dropped, nothing is answered, nothing is closed, as a network partition looks to both
///   ends. [`restore`](Proxy::restore) lets new connections through again (the black-holed
///   ones stay dead).
/// * [`reset`](Proxy::reset) closes every open connection at once, black-holed ones too, as
///   a broker restart or a dropped link looks to the client; new connections go through
///   (unless cut).
/// * [`refuse`](Proxy::refuse) closes every new connection as soon as it is accepted, as a
///   stopped broker looks to a client that reconnects; [`restore`](Proxy::restore) ends it.
///
/// Dropping the last clone closes the listener and every connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let proxy = kernel_testkit::Proxy::start(&upstream.local_addr().unwrap().to_string()).await;
/// let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
/// let (mut server, _) = upstream.accept().await.unwrap();
/// client.write_all(b"ping").await.unwrap();
/// let mut got = [0; 4];
/// server.read_exact(&mut got).await.unwrap();
/// assert_eq!(&got, b"ping");
///
/// proxy.reset();
/// assert_eq!(client.read(&mut got).await.unwrap(), 0, "closed by the reset");
/// assert_eq!(proxy.accepted(), 1);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<ProxyState>>,
    accepted: Arc<AtomicUsize>,
}

#[derive(Clone, Copy, Debug, Default)]
struct ProxyState {
    cut: bool,
    refuse: bool,
    /// Bumped by every reset: connections accepted under an older generation close.
    generation: u64,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`) on `127.0.0.1`, on a free port, serving
    /// from tasks on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime, or if no loopback port can be bound.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(watch::Sender::new(ProxyState::default()));
        let upstream = upstream.to_owned();
        let mut states = state.subscribe();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counting = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => return,
                    },
                    // Every clone of the proxy is gone: stop listening.
                    closed = states.changed() => match closed {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                };
                counting.fetch_add(1, Ordering::SeqCst);
                let at_accept = *states.borrow();
                let state = states.clone();
                let upstream = upstream.clone();
                if at_accept.refuse {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    if at_accept.cut {
                        black_hole(client, state, at_accept.generation).await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    forward(client, server, state, at_accept.generation).await;
                });
            }
        });
        Proxy {
            addr,
            state,
            accepted,
        }
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, for a client's connect string.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// How many connections the proxy has accepted so far (open or closed).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Black-holes every connection, open and new.
    pub fn cut(&self) {
        self.state.send_modify(|state| state.cut = true);
    }

    /// Closes every new connection at once, as a stopped broker does (open ones are kept;
    /// [`reset`](Self::reset) them too for a broker that goes away).
    pub fn refuse(&self) {
        self.state.send_modify(|state| state.refuse = true);
    }

    /// Lets new connections through again (after [`cut`](Self::cut) or
    /// [`refuse`](Self::refuse)).
    pub fn restore(&self) {
        self.state.send_modify(|state| {
            state.cut = false;
            state.refuse = false;
        });
    }

    /// Closes every open connection now; new ones go through (unless cut).
    pub fn reset(&self) {
        self.state.send_modify(|state| state.generation += 1);
    }
}

/// Whether the connection of `generation` must close: reset since, or the proxy is gone.
async fn closing(state: &mut watch::Receiver<ProxyState>, generation: u64) {
    let _ = state.wait_for(|state| state.generation != generation).await;
}

/// Copies both ways until cut (then reads and drops everything, holding both sockets open) or
/// reset (then closes both).
async fn forward(
    client: TcpStream,
    server: TcpStream,
    mut state: watch::Receiver<ProxyState>,
    generation: u64,
) {
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
    let fault = state.wait_for(|state| state.cut || state.generation != generation);
    let cut = tokio::select! {
        () = pump => return,
        fault = fault => fault.map(|state| state.cut && state.generation == generation),
    };
    if !matches!(cut, Ok(true)) {
        return; // reset (or the proxy is gone): dropping the halves closes both connections
    }
    // Cut: read and drop both ways, keeping the write halves (and so the connections) open
    // until both ends give up or a reset closes them.
    let swallow = async {
        let (mut up, mut down) = ([0_u8; 8192], [0_u8; 8192]);
        loop {
            tokio::select! {
                read = client_read.read(&mut up) => if matches!(read, Ok(0) | Err(_)) { break },
                read = server_read.read(&mut down) => if matches!(read, Ok(0) | Err(_)) { break },
            }
        }
    };
    tokio::select! {
        () = swallow => {}
        () = closing(&mut state, generation) => {}
    }
    drop((client_write, server_write));
}

/// Accepts bytes and never answers, until the client closes or a reset closes it.
async fn black_hole(
    mut client: TcpStream,
    mut state: watch::Receiver<ProxyState>,
    generation: u64,
) {
    let swallow = async {
        let mut sink = [0_u8; 8192];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = swallow => {}
        () = closing(&mut state, generation) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn workspace_root_is_the_nearest_workspace_manifest_above_a_package() {
        let tmp = std::env::temp_dir().join(format!("testkit-root-{}", std::process::id()));
        let checkout = tmp.join("checkout");
        let benches = checkout.join("kernel-sync").join("benches");
        fs::create_dir_all(&benches).unwrap();
        fs::write(
            checkout.join("Cargo.toml"),
            "[workspace]\nmembers = [\"kernel-sync\"]\n",
        )
        .unwrap();
        fs::write(
            checkout.join("kernel-sync").join("Cargo.toml"),
            "[package]\nname = \"kernel-sync\"\n\n[lints]\nworkspace = true\n",
        )
        .unwrap();

        assert_eq!(find_workspace_root(&benches), Some(checkout.clone()));
        assert_eq!(
            find_workspace_root(&checkout.join("kernel-sync")),
            Some(checkout)
        );
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn an_env_file_line_is_found_by_its_exact_name() {
        let dir = std::env::temp_dir().join(format!("testkit-env-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster.env");
        fs::write(
            &file,
            "KERNEL_ZK_HOSTS=127.0.0.1:2291,127.0.0.1:2292\nKERNEL_ZK_1_HOST=127.0.0.1:2291\n",
        )
        .unwrap();
        assert_eq!(
            env_file_value(&file, "KERNEL_ZK_HOSTS").as_deref(),
            Some("127.0.0.1:2291,127.0.0.1:2292")
        );
        assert_eq!(
            env_file_value(&file, "KERNEL_ZK_1_HOST").as_deref(),
            Some("127.0.0.1:2291")
        );
        assert_eq!(env_file_value(&file, "KERNEL_ZK"), None);
        assert_eq!(
            env_file_value(&dir.join("missing.env"), "KERNEL_ZK_HOSTS"),
            None
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_test_finds_the_checkout_it_runs_in() {
        // `cargo test` runs this in testkit/, whose parent is the workspace root.
        let package = std::env::current_dir().unwrap();
        assert_eq!(workspace_root().as_deref(), package.parent());
    }
}
