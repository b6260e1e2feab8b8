//! `cargo xtask services up | down | status`: a real RabbitMQ, ZooKeeper and Cassandra on
//! loopback for the tests, installed and started by the project itself.
//!
//! | engine | comes from | tests connect to |
//! |---|---|---|
//! | RabbitMQ | Debian `rabbitmq-server` | `amqp://guest:guest@127.0.0.1:5682/%2f`, and over TLS `amqps://guest:guest@localhost:5683/%2f` |
//! | ZooKeeper | Debian `zookeeper` (jars, run with `java -cp`) | `127.0.0.1:2191` |
//! | Cassandra | `cassandra-all` 5.0.8 jars from Maven Central, on JDK 17 | `127.0.0.1:19042` |
//!
//! Everything is private to the checkout, so it never disturbs another broker on the machine:
//! state lives under `<root>/.services/<engine>/`, every engine listens on 127.0.0.1 only and on
//! ports that are not the engines' defaults, and `down` stops only the processes whose pid files
//! `up` wrote. A fresh start is a fresh engine: the previous run's data is wiped, downloads kept.
//!
//! RabbitMQ's TLS listener presents a certificate from a throwaway CA that `up` makes under
//! `.services/tls/` ([`tls`]); the tests trust that CA through `KERNEL_AMQP_CA`.
//!
//! RabbitMQ also gets two test users besides `guest`, `kernel.test.alpha` and
//! `kernel.test.beta` (test-only passwords in [`rabbitmq::TEST_USERS`]), for tests of the
//! broker-verified sender identity; `up` creates them on a running node that lacks them.
//!
//! `up` prints `KERNEL_AMQP_URL=…`, `KERNEL_AMQPS_URL=…`, `KERNEL_AMQP_CA=…`,
//! `KERNEL_AMQP_URL_ALPHA=…`, `KERNEL_AMQP_URL_BETA=…`, `KERNEL_ZK_HOSTS=…`
//! and `KERNEL_CASSANDRA_HOSTS=…` on stdout and writes the same lines to `.services/env`;
//! progress goes to stderr. In a shell:
//! `set -a; eval "$(cargo xtask services up)"; set +a`. Recipes, timings and pitfalls are in
//! `docs/services.md`.
//!
//! `up --cluster` starts, beside the single nodes, three RabbitMQ nodes in one cluster, a
//! three-server ZooKeeper ensemble and a three-node Cassandra ring ([`cluster`]), and writes
//! their addresses to `.services/cluster.env`; `kill NODE` and `start NODE` take one of their
//! nodes away and bring it back, for fault tests. `down` stops the single nodes and the cluster,
//! `down --cluster` the cluster only.

mod cassandra;
mod cluster;
mod engine;
mod install;
mod probe;
mod process;
mod rabbitmq;
mod tls;
mod zookeeper;

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

use clap::Subcommand;

use self::cassandra::Cassandra;
use self::engine::{Engine, Launch};
use self::rabbitmq::RabbitMq;
use self::tls::Tls;
use self::zookeeper::ZooKeeper;
use crate::Result;

/// What `cargo xtask services` can do.
#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Install what is missing, start what is not running, wait until ready, print the addresses.
    Up {
        /// Start the three-node clusters instead of the single nodes: RabbitMQ nodes rabbit-1..3,
        /// ZooKeeper servers zk-1..3, Cassandra nodes cassandra-1..3 (addresses also in
        /// `.services/cluster.env`).
        #[arg(long)]
        cluster: bool,
    },
    /// Stop the engines this tool started (and nothing else): the single nodes and the cluster.
    Down {
        /// Stop the cluster's nodes only.
        #[arg(long)]
        cluster: bool,
    },
    /// Say which engines are running and where.
    Status,
    /// Kill one node of the cluster with SIGKILL, as a crash would (for fault tests).
    Kill {
        /// rabbit-1..3, zk-1..3 or cassandra-1..3.
        node: String,
    },
    /// Start one node of the cluster again, with its state, and wait until it is back in its
    /// cluster.
    Start {
        /// rabbit-1..3, zk-1..3 or cassandra-1..3.
        node: String,
    },
}

/// Where the tests find the engines.
#[derive(Debug, Clone)]
pub(crate) struct Engines {
    /// `KERNEL_AMQP_URL`, e.g. `amqp://guest:guest@127.0.0.1:5682/%2f`.
    pub(crate) amqp_url: String,
    /// `KERNEL_AMQPS_URL`, e.g. `amqps://guest:guest@localhost:5683/%2f`: the same broker over
    /// TLS, with a certificate for `localhost` signed by the CA in `amqp_ca`.
    pub(crate) amqps_url: String,
    /// `KERNEL_AMQP_CA`, the absolute path of the throwaway CA's certificate (PEM).
    pub(crate) amqp_ca: String,
    /// `KERNEL_AMQP_URL_ALPHA`, `KERNEL_AMQP_URL_BETA`: the broker as each test user
    /// (`rabbitmq::TEST_USERS`), e.g. `amqp://kernel.test.alpha:…@127.0.0.1:5682/%2f`.
    pub(crate) amqp_user_urls: Vec<(&'static str, String)>,
    /// `KERNEL_ZK_HOSTS`, e.g. `127.0.0.1:2191`.
    pub(crate) zk_hosts: String,
    /// `KERNEL_CASSANDRA_HOSTS`, e.g. `127.0.0.1:19042`.
    pub(crate) cassandra_hosts: String,
}

impl Engines {
    /// The environment variables the tests read.
    pub(crate) fn env_vars(&self) -> Vec<(String, String)> {
        vec![
            ("KERNEL_AMQP_URL".to_owned(), self.amqp_url.clone()),
            ("KERNEL_AMQPS_URL".to_owned(), self.amqps_url.clone()),
            ("KERNEL_AMQP_CA".to_owned(), self.amqp_ca.clone()),
        ]
        .into_iter()
        .chain(
            self.amqp_user_urls
                .iter()
                .map(|(name, url)| ((*name).to_owned(), url.clone())),
        )
        .chain([
            ("KERNEL_ZK_HOSTS".to_owned(), self.zk_hosts.clone()),
            (
                "KERNEL_CASSANDRA_HOSTS".to_owned(),
                self.cassandra_hosts.clone(),
            ),
        ])
        .collect()
    }

    /// `NAME=value` lines, as printed by `up` and stored in `.services/env`.
    fn env_lines(&self) -> String {
        self.env_vars()
            .iter()
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect()
    }
}

/// Runs one `services` action.
pub(crate) fn run(root: &Path, action: Action) -> Result<()> {
    let state = root.join(STATE_DIR);
    match action {
        Action::Up { cluster: false } => up(root).map(|engines| print!("{}", engines.env_lines())),
        Action::Up { cluster: true } => cluster::up(&state).map(|vars| {
            for (name, value) in vars {
                println!("{name}={value}");
            }
        }),
        Action::Down { cluster: false } => {
            let single = down(root);
            cluster::down(&state).and(single)
        }
        Action::Down { cluster: true } => cluster::down(&state),
        Action::Status => {
            status(root)?;
            cluster::status(&state);
            Ok(())
        }
        Action::Kill { node } => cluster::kill(&state, &node),
        Action::Start { node } => cluster::start(&state, &node),
    }
}

/// `services up --cluster` without printing: the clusters are up, their addresses in
/// `.services/cluster.env`.
pub(crate) fn up_cluster(root: &Path) -> Result<()> {
    cluster::up(&root.join(STATE_DIR)).map(drop)
}

/// `services down --cluster`: stops the clusters' nodes only.
pub(crate) fn down_cluster(root: &Path) -> Result<()> {
    cluster::down(&root.join(STATE_DIR))
}

/// Stops the single nodes only (not the clusters); a no-op when none runs.
pub(crate) fn down_single(root: &Path) -> Result<()> {
    down(root)
}

/// Makes every engine reachable and returns the addresses: installs what is missing, starts what
/// is not running, and waits until each one answers its protocol.
pub(crate) fn up(root: &Path) -> Result<Engines> {
    let begun = Instant::now();
    let state = StateDir::lock(root)?;
    let fleet = Fleet::new(&state.path);
    let mut stopped: Vec<&dyn Engine> = Vec::new();
    for engine in fleet.all() {
        match engine.running_pid() {
            None => stopped.push(engine),
            Some(pid) => {
                if let Some(reason) = engine.outdated() {
                    eprintln!(
                        "services: restarting {} (pid {pid}): {reason}",
                        engine.name()
                    );
                    engine
                        .stop(pid)
                        .map_err(|e| format!("cannot stop {}: {e}", engine.name()))?;
                    let _ = fs::remove_file(engine.pid_file());
                    stopped.push(engine);
                }
            }
        }
    }
    for &engine in &stopped {
        engine::ensure_ports_free(engine)?;
    }
    install_missing(&stopped, &state)?;
    for &engine in &stopped {
        engine.fetch()?;
    }

    let mut launches = Vec::new();
    for engine in fleet.all() {
        let needs_start = stopped.iter().any(|e| e.name() == engine.name());
        let child = if needs_start {
            Some(start(engine)?)
        } else {
            None
        };
        launches.push(Launch::new(engine, child));
    }
    engine::wait_all(launches)?;
    fleet.rabbitmq.ensure_test_users()?;
    let engines = fleet.addresses();
    fs::write(state.env_file(), engines.env_lines())
        .map_err(|e| format!("cannot write {}: {e}", state.env_file().display()))?;
    eprintln!("services: all engines ready in {:.1?}", begun.elapsed());
    Ok(engines)
}

/// One `apt-get install` for every package the engines about to start still need.
fn install_missing(engines: &[&dyn Engine], state: &StateDir) -> Result<()> {
    let mut packages: Vec<&str> = engines.iter().flat_map(|e| e.missing_packages()).collect();
    packages.sort_unstable();
    packages.dedup();
    install::apt_install(&packages, &state.path.join("apt.log"))
}

/// Spawns the engine (it then starts while `up` launches the others).
fn start(engine: &dyn Engine) -> Result<Child> {
    let log = engine.log_file();
    eprintln!(
        "services: starting {} (log: {})",
        engine.name(),
        log.display()
    );
    engine.start()
}

/// Stops what `up` started, newest engine first; a no-op when nothing runs.
fn down(root: &Path) -> Result<()> {
    let state = StateDir::lock(root)?;
    let fleet = Fleet::new(&state.path);
    let mut failures = Vec::new();
    let mut stopped_any = false;
    for engine in fleet.all().into_iter().rev() {
        let Some(pid) = engine.running_pid() else {
            eprintln!("services: {} is not running", engine.name());
            continue;
        };
        let begun = Instant::now();
        match engine.stop(pid) {
            Ok(()) => {
                eprintln!(
                    "services: stopped {} (pid {pid}) in {:.1?}",
                    engine.name(),
                    begun.elapsed()
                );
                let _ = fs::remove_file(engine.pid_file());
                stopped_any = true;
            }
            Err(e) => failures.push(format!("{}: {e}", engine.name())),
        }
    }
    let _ = fs::remove_file(state.env_file());
    if !stopped_any && failures.is_empty() {
        eprintln!("services: nothing to stop");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

/// Prints one line per engine: running (pid, address, what it answers) or stopped.
fn status(root: &Path) -> Result<()> {
    let fleet = Fleet::new(&root.join(STATE_DIR));
    for engine in fleet.all() {
        let name = engine.name();
        match engine.running_pid() {
            Some(pid) => {
                let answer = engine
                    .probe()
                    .unwrap_or_else(|e| format!("not answering: {e}"));
                println!(
                    "{name:<10} running  pid {pid:<8} {:<40} {answer}",
                    engine.address()
                );
            }
            None => match engine::taken_port(engine) {
                Some(port) => {
                    println!("{name:<10} stopped  (port {port} is held by another process)")
                }
                None => println!("{name:<10} stopped"),
            },
        }
    }
    Ok(())
}

/// Where all engine state lives, relative to the workspace root (gitignored).
const STATE_DIR: &str = ".services";

/// `<root>/.services`, held under an exclusive lock so two `services` commands never interleave.
#[derive(Debug)]
struct StateDir {
    path: PathBuf,
    /// The lock is released when this file is closed (it is close-on-exec, so engines never
    /// inherit it).
    _lock: File,
}

impl StateDir {
    fn lock(root: &Path) -> Result<Self> {
        let path = root.join(STATE_DIR);
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let lock = lock_file(&path.join("lock"))?;
        Ok(Self { path, _lock: lock })
    }

    fn env_file(&self) -> PathBuf {
        self.path.join("env")
    }
}

/// Takes an exclusive `flock` on `path` (created if missing); waits, and says so, while another
/// `services` command holds it. Released when the returned file is closed.
fn lock_file(path: &Path) -> Result<File> {
    let lock = File::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!("services: waiting for another `cargo xtask services` command to finish");
            lock.lock()?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()).into());
        }
    }
    Ok(lock)
}

/// The three engines, in start order.
#[derive(Debug)]
struct Fleet {
    rabbitmq: RabbitMq,
    zookeeper: ZooKeeper,
    cassandra: Cassandra,
}

impl Fleet {
    fn new(state: &Path) -> Self {
        Self {
            rabbitmq: RabbitMq::new(state.join("rabbitmq"), Tls::new(state.join("tls"))),
            zookeeper: ZooKeeper::new(state.join("zookeeper")),
            cassandra: Cassandra::new(state.join("cassandra")),
        }
    }

    fn all(&self) -> [&dyn Engine; 3] {
        [&self.rabbitmq, &self.zookeeper, &self.cassandra]
    }

    fn addresses(&self) -> Engines {
        Engines {
            amqp_url: self.rabbitmq.address(),
            amqps_url: self.rabbitmq.tls_address(),
            amqp_ca: self.rabbitmq.ca_file().to_string_lossy().into_owned(),
            amqp_user_urls: rabbitmq::TEST_USERS
                .iter()
                .map(|user| (user.env_var, self.rabbitmq.user_address(user)))
                .collect(),
            zk_hosts: self.zookeeper.address(),
            cassandra_hosts: self.cassandra.address(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_prints_the_addresses_as_name_value_lines() {
        let fleet = Fleet::new(Path::new("/x/.services"));
        assert_eq!(
            fleet.addresses().env_lines(),
            "KERNEL_AMQP_URL=amqp://guest:guest@127.0.0.1:5682/%2f\n\
             KERNEL_AMQPS_URL=amqps://guest:guest@localhost:5683/%2f\n\
             KERNEL_AMQP_CA=/x/.services/tls/ca.pem\n\
             KERNEL_AMQP_URL_ALPHA=amqp://kernel.test.alpha:kernel-test-alpha@127.0.0.1:5682/%2f\n\
             KERNEL_AMQP_URL_BETA=amqp://kernel.test.beta:kernel-test-beta@127.0.0.1:5682/%2f\n\
             KERNEL_ZK_HOSTS=127.0.0.1:2191\n\
             KERNEL_CASSANDRA_HOSTS=127.0.0.1:19042\n"
        );
    }

    #[test]
    fn private_ports_avoid_the_engines_defaults() {
        let fleet = Fleet::new(Path::new("/x/.services"));
        let ports: Vec<u16> = fleet
            .all()
            .iter()
            .flat_map(|e| e.ports().iter().copied())
            .collect();
        for default in [5672, 5671, 25672, 4369, 2181, 9042, 7000, 7199] {
            assert!(!ports.contains(&default), "{default} is a default port");
        }
    }
}
