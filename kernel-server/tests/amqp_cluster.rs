//! Issue 15, "Transport on a cluster": kill the RabbitMQ node that holds a service's work queue
//! while 20 client tasks call it. Calls must succeed again within 10 s, none may outlive its
//! deadline, and no reply may go to the wrong call. Once with classic work queues (declared
//! again on a live node), once with quorum work queues (a new leader takes over).
//!
//! Runs on the three-node cluster of `cargo xtask services up --cluster` (its addresses read from
//! `.services/cluster.env`; without it the test fails and names the command), and only when
//! asked for by name: `cargo test -p kernel-server --test amqp_cluster` (the target has
//! `test = false`, so `cargo xtask test` never kills a node under the other tests). It kills the
//! node as `cargo xtask services kill rabbit-N` does (SIGKILL to the pid in its pid file, done
//! here so that the moment of the kill is known) and starts it again at the end with
//! `cargo xtask services start rabbit-N`, even when an assertion fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kernel_client::Client;
use kernel_errors::Kind;
use kernel_proto::examples::HelloResponse;
use kernel_testkit::cluster_address;
use kernel_transport::{AmqpTransport, WorkQueueType};
use tokio::time::Instant;

/// Each call's deadline.
const DEADLINE: Duration = Duration::from_secs(3);
/// Room for the runtime beyond a deadline before the test calls it a hang.
const SLACK: Duration = Duration::from_millis(500);
/// Every caller must have a call succeed this soon after the kill.
const BACK_WITHIN: Duration = Duration::from_secs(10);
/// How long the callers go on after the kill.
const AFTER_KILL: Duration = Duration::from_secs(15);
/// Callers, and the most calls each makes.
const CALLERS: usize = 20;
const MAX_CALLS: usize = 5_000;
const NODES: usize = 3;

/// One test at a time kills a node.
static ONE_KILL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_of_a_classic_work_queue_keeps_calls_in_time_and_matched() {
    let _one = ONE_KILL_AT_A_TIME.lock().await;
    kill_the_queue_node_under_load(WorkQueueType::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_of_a_quorum_work_queue_keeps_calls_in_time_and_matched() {
    let _one = ONE_KILL_AT_A_TIME.lock().await;
    kill_the_queue_node_under_load(WorkQueueType::Quorum).await;
}

/// What one call did: when it started and ended, and whether it succeeded.
struct Outcome {
    started: Instant,
    ended: Instant,
    ok: bool,
}

async fn kill_the_queue_node_under_load(work_queues: WorkQueueType) {
    let urls = cluster_address("KERNEL_AMQP_URL");
    let cluster = Cluster::read();
    let connect = |what: &'static str| {
        let urls = urls.clone();
        async move {
            support::bounded(
                what,
                AmqpTransport::builder(&urls)
                    .work_queues(work_queues)
                    .connect(),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
        }
    };

    let name = support::unique("cluster");
    let server_transport = connect("the service's connection").await;
    let server_side = Client::new(server_transport.clone());
    let service = support::greeter(&name, "a", Arc::default(), &server_side)
        .build()
        .unwrap();
    let running = support::serve(service).await;
    let client_transport = connect("the client's connection").await;
    let client = Client::builder(client_transport.clone())
        .calling_as("test.cluster")
        .deadline(DEADLINE)
        .build()
        .unwrap();
    let warm = client
        .call::<HelloResponse>(&name, "hello", &support::hello("warm"))
        .await
        .unwrap();
    assert_eq!(warm.greeting, "hello, warm");

    let victim = cluster.queue_node(&name, work_queues);
    eprintln!(
        "{work_queues:?} work queue {name} on rabbit-{victim}; service connected to {:?}, client to {:?}",
        server_transport.node(),
        client_transport.node()
    );
    // Whatever happens from here, the node is started again.
    let restart = Restart {
        cluster: &cluster,
        node: victim,
    };

    // 20 tasks call in a loop (bounded in count) until told to stop; every call's name is
    // unique, so a reply to the wrong call would show.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for task in 0..CALLERS {
        let (client, name, stop) = (client.clone(), name.clone(), Arc::clone(&stop));
        callers.spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..MAX_CALLS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let token = format!("{task}-{n}");
                let started = Instant::now();
                let request = support::hello(&token);
                let call = client.call::<HelloResponse>(&name, "hello", &request);
                let outcome = tokio::time::timeout(DEADLINE + SLACK, call)
                    .await
                    .unwrap_or_else(|_| panic!("call {token} outlived its deadline"));
                let ended = Instant::now();
                match &outcome {
                    Ok(reply) => assert_eq!(
                        reply.greeting,
                        format!("hello, {token}"),
                        "call {token} got another call's reply"
                    ),
                    Err(error) => assert!(
                        matches!(
                            error.kind(),
                            Kind::ConnectionLost
                                | Kind::Timeout
                                | Kind::NoRoute
                                | Kind::CircuitBroken
                        ),
                        "call {token}: an unexpected error {error:?}"
                    ),
                }
                assert!(
                    ended - started <= DEADLINE + SLACK,
                    "call {token} took {:?}",
                    ended - started
                );
                outcomes.push(Outcome {
                    started,
                    ended,
                    ok: outcome.is_ok(),
                });
                if outcome.is_err() {
                    // Do not spin while there is nothing to call.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            outcomes
        });
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    cluster.kill(victim);
    let kill_took = killed.elapsed();
    tokio::time::sleep(AFTER_KILL).await;
    stop.store(true, Ordering::SeqCst);

    let mut per_task = Vec::new();
    while let Some(done) = support::bounded("the callers to stop", callers.join_next()).await {
        per_task.push(done.unwrap());
    }
    let all = per_task.iter().flatten();
    let before = all.clone().filter(|o| o.ended < killed).count();
    let failed = all.clone().filter(|o| !o.ok).count();
    let failed_late = all
        .clone()
        .filter(|o| !o.ok && o.started > killed + BACK_WITHIN)
        .count();
    let longest = all.clone().map(|o| o.ended - o.started).max().unwrap();
    // For each caller: how long after the kill its first call that began after the kill
    // succeeded.
    let back: Vec<Duration> = per_task
        .iter()
        .enumerate()
        .map(|(task, outcomes)| {
            outcomes
                .iter()
                .find(|o| o.ok && o.started >= killed)
                .map(|o| o.ended - killed)
                .unwrap_or_else(|| panic!("caller {task} never succeeded after the kill"))
        })
        .collect();
    let slowest_back = back.iter().max().copied().unwrap();
    eprintln!(
        "{work_queues:?}: {} calls ({before} before the kill, {failed} failed, {failed_late} \
         failed more than {BACK_WITHIN:?} after it); kill took {kill_took:?}; every caller \
         succeeded again within {slowest_back:?} of the kill; longest call {longest:?}; \
         queue now on rabbit-{}; service on {:?}, client on {:?}",
        all.clone().count(),
        cluster.queue_node(&name, work_queues),
        server_transport.node(),
        client_transport.node()
    );
    assert!(before > 0, "no call succeeded before the kill");
    assert!(
        slowest_back <= BACK_WITHIN,
        "a caller succeeded again only {slowest_back:?} after the kill"
    );
    assert!(
        longest <= DEADLINE + SLACK,
        "a call took {longest:?}, its deadline being {DEADLINE:?}"
    );

    running.stop().await;
    drop(restart);
}

/// The cluster's RabbitMQ nodes, as `.services/cluster.env` names them.
struct Cluster {
    /// The checkout whose `.services/` holds the cluster (symbolic links resolved), where
    /// `cargo xtask services` must run to act on it.
    root: PathBuf,
    /// `KERNEL_RABBIT_N_NODENAME`, for N = 1..=3.
    nodenames: Vec<String>,
}

impl Cluster {
    fn read() -> Self {
        let nodenames = (1..=NODES)
            .map(|n| cluster_address(&format!("KERNEL_RABBIT_{n}_NODENAME")))
            .collect();
        let services = kernel_testkit::workspace_root()
            .expect("a workspace root")
            .join(".services");
        let root = std::fs::canonicalize(&services)
            .unwrap_or_else(|e| panic!("{}: {e}", services.display()))
            .parent()
            .expect("the checkout of .services")
            .to_owned();
        Cluster { root, nodenames }
    }

    fn node_dir(&self, n: usize) -> PathBuf {
        self.root
            .join(".services/cluster")
            .join(format!("rabbit-{n}"))
    }

    /// The node (1..=3) that holds `queue`: the node whose `list_queues --local` lists it for a
    /// classic queue (its `pid` prints without a node name), the `leader` for a quorum queue.
    /// Skips nodes that do not answer (one may be down).
    fn queue_node(&self, queue: &str, work_queues: WorkQueueType) -> usize {
        let mut asked = Vec::new();
        for n in 1..=NODES {
            let local = work_queues == WorkQueueType::Classic;
            let Some(queues) = self.list_queues(n, local) else {
                continue;
            };
            let entry = queues.iter().find(|q| q["name"] == queue);
            asked.push(format!("rabbit-{n}: {queues:?}"));
            match (work_queues, entry) {
                (WorkQueueType::Classic, Some(_)) => return n,
                (WorkQueueType::Classic, None) => continue,
                (_, Some(entry)) => {
                    let leader = entry["leader"].as_str().unwrap_or_default();
                    return self
                        .nodenames
                        .iter()
                        .position(|nodename| nodename == leader)
                        .map(|index| index + 1)
                        .unwrap_or_else(|| panic!("{queue}'s leader {leader:?} is no node"));
                }
                (_, None) => panic!("rabbit-{n} lists no queue {queue}: {queues:?}"),
            }
        }
        panic!("no RabbitMQ node of the cluster holds {queue}: {asked:?}")
    }

    /// `rabbitmqctl list_queues` on node `n` (only its own queues if `local`), or `None` if it
    /// does not answer.
    fn list_queues(&self, n: usize, local: bool) -> Option<Vec<serde_json::Value>> {
        let dir = self.node_dir(n);
        let mut command = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl");
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("RABBITMQ_") || name.starts_with("ERL_") {
                command.env_remove(&*name);
            }
        }
        command
            .env("HOME", &dir)
            .env("ERL_EPMD_PORT", EPMD_PORT)
            .args(["-n", &self.nodenames[n - 1], "-q", "--formatter", "json"])
            .arg("list_queues");
        if local {
            command.arg("--local");
        }
        let output = command
            .args(["name", "type", "leader"])
            .output()
            .expect("rabbitmqctl runs");
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// SIGKILLs node `n` (the Erlang VM its pid file names), as `cargo xtask services kill`
    /// does, and waits until it is gone; without cargo in between, so that the kill happens
    /// when the test says (`services kill` may wait for the cluster's lock, or a build).
    fn kill(&self, n: usize) {
        let pid_file = self.node_dir(n).join("rabbitmq.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("rabbit-{n} is not running ({}: {e})", pid_file.display()));
        let pid = pid.trim();
        let status = Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {pid} (rabbit-{n}) failed");
        // Gone, or a zombie nobody reaps (PID 1 here does not): dead either way.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
        };
        let since = std::time::Instant::now();
        while !gone() {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "rabbit-{n} ({pid}) outlived SIGKILL by 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `cargo xtask <args>` in the cluster's checkout; fails with its output.
    fn xtask(&self, args: &[&str]) -> Result<(), String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .arg("xtask")
            .args(args)
            .current_dir(&self.root)
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cargo xtask {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

/// The epmd of the cluster's RabbitMQ nodes (docs/services.md "Cluster mode"), not the
/// single node's.
const EPMD_PORT: &str = "14370";

/// Starts the killed node again when dropped, whether the test passed or not.
struct Restart<'a> {
    cluster: &'a Cluster,
    node: usize,
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        // No panic here: this may run while the test unwinds.
        if let Err(error) =
            self.cluster
                .xtask(&["services", "start", &format!("rabbit-{}", self.node)])
        {
            eprintln!("{error}");
        }
    }
}
