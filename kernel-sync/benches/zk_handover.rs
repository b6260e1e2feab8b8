//! Leader hand-over time on ZooKeeper: from `rescind()` on the leader to `leader()` returning
//! on the waiting candidate (another session), over a bounded number of hand-overs.
//!
//! Prints the median and p99, and, as the same-run floor, the time from deleting a node to
//! another session's watch on it firing (the two ZooKeeper steps a hand-over cannot avoid),
//! with `ratio = floor median ÷ hand-over median`.
//!
//! It measures outside criterion, so it applies criterion's name filter itself: its id is
//! `zk_handover/handover`, and `cargo bench -- auth_check` skips it.
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

mod support;

use std::time::{Duration, Instant};

use kernel_sync::{ElectionExt, LockId, Namespace, ZkLockBackend};
use zookeeper_client::{Acls, Client, CreateMode};

/// Hand-overs measured (and as many floor samples), unless the time limit comes first.
const ROUNDS: usize = 200;
/// The whole benchmark stops after this, whatever the count.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// This benchmark's id, as a criterion name filter sees it.
const ID: &str = "zk_handover/handover";

fn main() {
    if !support::selected(ID) {
        if !support::listing() {
            println!("zk_handover: not measured in this run (skipped by the name filter)");
        }
        return;
    }
    if support::listing() {
        println!("{ID}: benchmark");
        return;
    }
    if !support::measuring() {
        println!("zk_handover: measures under `cargo bench` only");
        return;
    }
    let hosts = support::engine_address("KERNEL_ZK_HOSTS");
    let runtime = support::runtime();
    let (mut handovers, mut floors) = runtime.block_on(measure(hosts));
    let report = |name: &str, samples: &mut Vec<Duration>| {
        let median = support::quantile(samples, 0.5);
        let p99 = support::quantile(samples, 0.99);
        println!(
            "zk_handover: {name}: median {median:?}, p99 {p99:?} over {} samples",
            samples.len()
        );
        median
    };
    let handover = report("hand-over after rescind()", &mut handovers);
    let floor = report("floor (delete -> other session's watch fires)", &mut floors);
    println!(
        "zk_handover: ratio = {:.2} (floor median / hand-over median; 1.00 is the floor)",
        floor.as_secs_f64() / handover.as_secs_f64()
    );
}

async fn measure(hosts: String) -> (Vec<Duration>, Vec<Duration>) {
    let namespace = Namespace::new(support::unique_name("bench")).expect("a namespace");
    let connect = || async {
        ZkLockBackend::builder(hosts.clone(), namespace.clone())
            .connect()
            .await
            .expect("a ZooKeeper session")
    };
    let candidates = [connect().await, connect().await];
    let raw = Client::connect(&hosts).await.expect("a raw session");
    let path = candidates[0].leader_path(&LockId::new("handover").expect("an id"));
    let started = Instant::now();

    let mut handovers = Vec::with_capacity(ROUNDS);
    let mut leader = candidates[0]
        .leader("handover")
        .await
        .expect("the first term");
    let mut next = 1;
    while handovers.len() < ROUNDS && started.elapsed() < TIME_LIMIT {
        let challenger = candidates[next].clone();
        let waiting = tokio::spawn(async move {
            let leadership = challenger.leader("handover").await.expect("a term");
            (Instant::now(), leadership)
        });
        // Not measured: wait until the challenger's node is queued behind the leader's.
        while raw.list_children(&path).await.map(|c| c.len()).unwrap_or(0) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rescinded_at = Instant::now();
        leader.rescind().await;
        let (elected_at, leadership) = waiting.await.expect("the challenger");
        handovers.push(elected_at - rescinded_at);
        leader = leadership;
        next = 1 - next;
    }
    leader.rescind().await;

    let watcher = Client::connect(&hosts).await.expect("a second raw session");
    let floor_dir = format!("/{namespace}/floor");
    raw.mkdir(
        &floor_dir,
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await
    .expect("the floor's directory");
    let node = format!("{floor_dir}/node");
    let options = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let mut floors = Vec::with_capacity(ROUNDS);
    let floor_started = Instant::now();
    while floors.len() < ROUNDS && floor_started.elapsed() < TIME_LIMIT {
        raw.create(&node, b"", &options).await.expect("create");
        let (stat, watch) = watcher.check_and_watch_stat(&node).await.expect("watch");
        assert!(stat.is_some(), "the node exists");
        let deleted_at = Instant::now();
        let notified = tokio::spawn(async move {
            watch.changed().await;
            Instant::now()
        });
        raw.delete(&node, None).await.expect("delete");
        let fired_at = notified.await.expect("the watch");
        floors.push(fired_at - deleted_at);
    }
    (handovers, floors)
}
