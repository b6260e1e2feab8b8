//! The global lock on the three-node Cassandra ring, with a keyspace of replication factor 3,
//! while one node and then two are down. Run by `cargo xtask test --cluster` only
//! (docs/services.md, "Cluster tests"): it kills and restarts `cassandra-2` and `cassandra-3`
//! of `cargo xtask services up --cluster`.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::time::Duration;

use kernel_errors::Kind;
use kernel_sync::{
    CassandraGlobalLock, LockBackendExt, LockGuard, LossReason, Namespace, SyncError, codes,
};
use kernel_testkit::{cluster_address, kill_node};
use scylla::client::session_builder::SessionBuilder;
use support::{unique_name, within};
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(60);

/// The statement timeout of every lock here. Until the ring marks a killed node down, a
/// coordinator may still pick it for the quorum read inside a SERIAL read or a compare-and-set,
/// and then answers only when the request times out (seen once in three runs: an acquire took
/// 5.1 s with the default 5 s timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The lease of the holders: a refresh is sent at 0.75 of it, so the remaining quarter (5 s)
/// outlasts two stalled attempts ([`REQUEST_TIMEOUT`]) and leaves time for a third.
const HOLD_FOR: Duration = Duration::from_secs(20);

/// How long an acquire right after a kill may take: until the ring marks the node down
/// (~19 s), every statement may stall for its whole timeout (seen: an acquire that failed
/// after 10 s of timeouts).
const DETECTION: Duration = Duration::from_secs(40);

/// The lease of the locks taken and released at once: the shortest allowed.
const CYCLE_HOLD_FOR: Duration = CassandraGlobalLock::MIN_HOLD_FOR;

/// How long the one-node-down phase runs: past the ~19 s the survivors take to mark the
/// killed node down, so acquires, refreshes and releases are seen working both while the
/// coordinators still send to it and once they know it is gone.
const ONE_DOWN: Duration = Duration::from_secs(24);

/// The ring's contact points, as `services up --cluster` wrote them: all three nodes.
fn ring() -> String {
    let hosts = cluster_address("KERNEL_CASSANDRA_HOSTS");
    assert_eq!(
        hosts.split(',').count(),
        3,
        "KERNEL_CASSANDRA_HOSTS = {hosts}"
    );
    hosts
}

/// A global lock on the ring with the builder's defaults, replication factor 3 included, in
/// `keyspace`: a new one for each run, so that each run creates its keyspace on the ring just
/// before killing nodes, as on a freshly started cluster.
async fn global_lock(hosts: &str, keyspace: &str, namespace: &Namespace) -> CassandraGlobalLock {
    within(
        BOUND,
        "a Cassandra session on the ring with the lock table",
        CassandraGlobalLock::builder(hosts, namespace.clone())
            .keyspace(keyspace)
            .request_timeout(REQUEST_TIMEOUT)
            .connect(),
    )
    .await
    .unwrap()
}

/// The keyspace's replication settings, as the ring reports them.
async fn replication(hosts: &str, keyspace: &str) -> String {
    let session = within(
        BOUND,
        "a raw CQL session",
        SessionBuilder::new().known_nodes(hosts.split(',')).build(),
    )
    .await
    .unwrap();
    let rows = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (replication,) = rows
        .single_row::<(std::collections::HashMap<String, String>,)>()
        .unwrap();
    let mut pairs: Vec<_> = replication.into_iter().collect();
    pairs.sort();
    format!("{pairs:?}")
}

/// Takes and releases `id` once on `lock`, returning how long the acquire took. Before
/// `stalls_until` (the ring's detection of a killed node) the release may end in an engine
/// error, as any statement may then: the lock lapses at its lease, which the next acquire
/// waits out. After it, the release must succeed.
async fn cycle(lock: &CassandraGlobalLock, id: &str, stalls_until: Option<Instant>) -> Duration {
    let started = Instant::now();
    let guard = lock
        .lock(id)
        .wait_for(DETECTION)
        .hold_for(CYCLE_HOLD_FOR)
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("acquire {id}: {e} ({:?})", started.elapsed()));
    let took = started.elapsed();
    match guard.unlock().await {
        Ok(()) => {}
        Err(SyncError::Backend { .. }) if stalls_until.is_some_and(|end| Instant::now() < end) => {
            eprintln!("release of {id} stalled before the ring marked the node down");
        }
        Err(error) => panic!("release {id}: {error}"),
    }
    took
}

/// An acquire that must fail while two of the three replicas are down: with a typed engine
/// error, not a guard and not a contention error.
async fn refused(lock: &CassandraGlobalLock, id: &str) -> SyncError {
    let started = Instant::now();
    let attempt = within(
        BOUND,
        "an acquire with two nodes down to give up",
        lock.lock(id)
            .wait_for(Duration::from_secs(3))
            .hold_for(CYCLE_HOLD_FOR)
            .acquire(),
    )
    .await;
    let error = match attempt {
        Ok(guard) => panic!(
            "{id} was acquired (token {:?}) with two of three replicas down",
            guard.fencing_token()
        ),
        Err(error) => error,
    };
    assert!(matches!(error, SyncError::Backend { .. }), "{error:?}");
    assert_eq!(error.code(), codes::BACKEND);
    assert_eq!(error.kind(), Kind::InternalServerError);
    assert!(error.is_transient());
    eprintln!("{id}: refused after {:.1?}: {error}", started.elapsed());
    error
}

/// With one node of three down, acquire, refresh and release keep working at QUORUM, before
/// and after the ring marks the node down. With two down, acquires fail with a typed
/// `Backend` error, a holder's refresh fails and it is told `RefreshFailed`, and nobody else
/// gets the lock; once a second node is back the lock works again, its fencing token still
/// increasing. The killed nodes are restarted at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_lock_tolerates_one_node_down_and_refuses_everyone_with_two_down() {
    let hosts = ring();
    let namespace = Namespace::new(unique_name("casscluster")).unwrap();
    let keyspace = unique_name("cluster");
    let holder = global_lock(&hosts, &keyspace, &namespace).await;
    let other = global_lock(&hosts, &keyspace, &namespace).await;
    assert_eq!(
        replication(&hosts, &keyspace).await,
        r#"[("class", "org.apache.cassandra.locator.SimpleStrategy"), ("replication_factor", "3")]"#
    );
    let all_up = cycle(&holder, "warm-up", None).await;
    eprintln!("all up: an acquire took {all_up:.1?}");

    // One node down.
    let killed_at = Instant::now();
    let third = kill_node("cassandra-3").await;
    let held = holder
        .lock("month-end")
        .hold_for(HOLD_FOR)
        .wait_for(DETECTION)
        .acquire()
        .await
        .unwrap();
    let held_at = Instant::now();
    eprintln!("one node down: acquired after {:.1?}", killed_at.elapsed());
    // Someone else is told it is held (an engine error, while a statement stalls, is not an
    // answer: ask again).
    loop {
        match other
            .lock("month-end")
            .wait_for(Duration::ZERO)
            .acquire()
            .await
        {
            Err(SyncError::Contended { .. }) => break,
            Err(SyncError::Backend { .. }) if held_at.elapsed() < DETECTION => {
                // Paces the retries of a statement that failed at once.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("expected Contended, got {error:?}"),
            Ok(guard) => panic!(
                "month-end acquired by another (token {:?}) while held",
                guard.fencing_token()
            ),
        }
    }
    let mut cycles = Vec::new();
    // Past the ring's detection, and through at least one refresh of the holder's lease.
    while killed_at.elapsed() < ONE_DOWN || held_at.elapsed() < HOLD_FOR.mul_f64(0.9) {
        cycles.push(cycle(&other, "cycle", Some(killed_at + DETECTION)).await);
        assert_eq!(
            held.loss(),
            None,
            "the holder lost its lock with one node down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slowest = cycles.iter().max().copied().unwrap_or_default();
    eprintln!(
        "one node down for {:.1?}: {} acquire/release cycles, slowest acquire {slowest:.1?}; \
         the holder kept its lease through {} refreshes",
        killed_at.elapsed(),
        cycles.len(),
        held_at.elapsed().as_millis() / HOLD_FOR.mul_f64(0.75).as_millis()
    );
    let first_token = held.fencing_token();
    held.unlock().await.unwrap();
    let survivor: LockGuard = other
        .lock("month-end")
        .hold_for(HOLD_FOR)
        .wait_for(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    assert!(survivor.fencing_token() > first_token);

    // Two nodes down: no quorum.
    let killed_at = Instant::now();
    let second = kill_node("cassandra-2").await;
    let reason = within(
        BOUND,
        "the holder to learn its refresh failed",
        survivor.lost(),
    )
    .await;
    assert_eq!(reason, LossReason::RefreshFailed);
    eprintln!(
        "two nodes down: the holder was told {reason} after {:.1?}",
        killed_at.elapsed()
    );
    refused(&holder, "month-end").await;
    refused(&holder, "fresh").await;
    refused(&other, "month-end").await;
    let survivor_token = survivor.fencing_token();
    drop(survivor);

    // A quorum again: the lock works, and its fence kept counting.
    let took = second.restart().await;
    eprintln!("cassandra-2 back in {took:.1?}");
    let back = within(
        BOUND,
        "the lock with two of three nodes up again",
        holder
            .lock("month-end")
            .hold_for(HOLD_FOR)
            .wait_for(Duration::from_secs(30))
            .acquire(),
    )
    .await
    .unwrap();
    assert!(back.fencing_token() > survivor_token);
    back.unlock().await.unwrap();
    let took = third.restart().await;
    eprintln!("cassandra-3 back in {took:.1?}");
    cycle(&other, "cycle", None).await;
}
