//! The global lock on a real Cassandra: exclusion across sessions with fencing, contention,
//! a crashed holder's TTL, refresh past the TTL, release, loss on a failed refresh.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::Duration;

use kernel_inst::MemoryInstrumenter;
use kernel_sync::{
    CassandraGlobalLock, FencingToken, LockBackendExt, LossReason, Namespace, SyncError,
};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use support::{engine_address, unique_name, within};

const BOUND: Duration = Duration::from_secs(60);

/// One keyspace for the whole file: tests keep apart by namespace.
const KEYSPACE: &str = "kernel_sync_tests";

fn namespace() -> Namespace {
    Namespace::new(unique_name("cass")).unwrap()
}

async fn global_lock(namespace: &Namespace) -> CassandraGlobalLock {
    global_lock_with(namespace, Arc::new(kernel_inst::NoopInstrumenter)).await
}

async fn global_lock_with(
    namespace: &Namespace,
    inst: Arc<dyn kernel_inst::Instrumenter>,
) -> CassandraGlobalLock {
    let hosts = engine_address("KERNEL_CASSANDRA_HOSTS");
    within(
        BOUND,
        "a Cassandra session with the lock table",
        CassandraGlobalLock::builder(hosts, namespace.clone())
            .keyspace(KEYSPACE)
            .replication_factor(1)
            .instrumenter(inst)
            .connect(),
    )
    .await
    .unwrap()
}

async fn raw_session() -> Session {
    let hosts = engine_address("KERNEL_CASSANDRA_HOSTS");
    within(
        BOUND,
        "a raw CQL session",
        SessionBuilder::new().known_nodes(hosts.split(',')).build(),
    )
    .await
    .unwrap()
}

/// Eight tasks over two sessions each take the lock fifty times and increment a shared
/// counter with a read-sleep-write: the count is exact and the fencing tokens seen inside
/// the critical section strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_on_two_sessions_increment_a_counter_exactly() {
    let namespace = namespace();
    let sessions = [global_lock(&namespace).await, global_lock(&namespace).await];
    let (wait_for, bound) = (Duration::from_secs(120), Duration::from_secs(600));
    support::eight_tasks_increment_a_counter(sessions, wait_for, bound).await;
}

/// Of two contenders, the second gets a typed contended error after `wait_for`, and once
/// the first releases, the second gets in with a higher token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contenders_exclude_each_other_and_release_lets_the_next_in() {
    let namespace = namespace();
    let (first, second) = (global_lock(&namespace).await, global_lock(&namespace).await);
    let held = first.lock("month-end").acquire().await.unwrap();
    for wait_for in [Duration::ZERO, Duration::from_millis(300)] {
        let error = second
            .lock("month-end")
            .wait_for(wait_for)
            .acquire()
            .await
            .unwrap_err();
        assert!(matches!(error, SyncError::Contended { .. }), "{error}");
        assert_eq!(error.code(), kernel_sync::codes::CONTENDED);
    }
    let waiting = {
        let second = second.clone();
        tokio::spawn(async move {
            second
                .lock("month-end")
                .wait_for(Duration::from_secs(30))
                .acquire()
                .await
        })
    };
    let first_token = held.fencing_token();
    held.unlock().await.unwrap();
    let next = within(BOUND, "the next holder", waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > first_token);
    next.unlock().await.unwrap();
}

/// A holder whose process dies (its runtime is shut down: no refresh, no release) blocks
/// the lock only until its claim's TTL; then a contender takes it with a higher token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_claim_expires_with_its_ttl() {
    let namespace = namespace();
    let crashed_token = {
        let namespace = namespace.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let token = runtime.block_on(async {
                let backend = global_lock(&namespace).await;
                let guard = backend
                    .lock("month-end")
                    .hold_for(CassandraGlobalLock::MIN_HOLD_FOR)
                    .acquire()
                    .await
                    .unwrap();
                let token = guard.fencing_token();
                // The process "crashes": the guard is never released and its refresh task
                // dies with the runtime.
                std::mem::forget(guard);
                token
            });
            runtime.shutdown_background();
            token
        })
        .join()
        .unwrap()
    };
    let survivor = global_lock(&namespace).await;
    let error = survivor
        .lock("month-end")
        .wait_for(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, SyncError::Contended { .. }), "{error}");
    let waiting = std::time::Instant::now();
    let taken = survivor
        .lock("month-end")
        .wait_for(Duration::from_secs(20))
        .acquire()
        .await
        .unwrap();
    // The claim's TTL (hold_for rounded up, plus 2 s) ran out: no later than that after the
    // claim, plus room for a loaded machine.
    let waited = waiting.elapsed();
    assert!(
        waited <= CassandraGlobalLock::MIN_HOLD_FOR + Duration::from_secs(2 + 2),
        "{waited:?}"
    );
    assert!(taken.fencing_token() > crashed_token);
    taken.unlock().await.unwrap();
}

/// A live holder's refreshes keep the lock past its TTL: a contender waiting twice the hold
/// time (longer than the TTL) is still refused, and the holder has lost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_the_lock_alive_past_its_ttl() {
    let namespace = namespace();
    let (holder, contender) = (global_lock(&namespace).await, global_lock(&namespace).await);
    // Long enough that the refresh window (a quarter of it) survives a loaded machine.
    let hold_for = Duration::from_secs(4);
    let held = holder
        .lock("month-end")
        .hold_for(hold_for)
        .acquire()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let result = contender
        .lock("month-end")
        .wait_for(hold_for * 2)
        .acquire()
        .await;
    assert!(
        matches!(result, Err(SyncError::Contended { .. })),
        "the contender got {:?} after {:?} while the holder's loss was {:?}",
        result.as_ref().map(|g| g.fencing_token()),
        started.elapsed(),
        held.loss(),
    );
    assert_eq!(held.loss(), None);
    held.unlock().await.unwrap();
}

/// A refresh that finds the claim gone (an operator deleted it) fires `lost()`, and unlock
/// then reports the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_finds_the_claim_gone_fires_lost() {
    let namespace = namespace();
    let backend = global_lock(&namespace).await;
    let raw = raw_session().await;
    let held = backend
        .lock("month-end")
        .hold_for(CassandraGlobalLock::MIN_HOLD_FOR)
        .acquire()
        .await
        .unwrap();
    raw.query_unpaged(
        format!("DELETE holder FROM {KEYSPACE}.global_locks WHERE name = ? IF EXISTS"),
        (format!("{namespace}/month-end"),),
    )
    .await
    .unwrap();
    assert_eq!(
        within(BOUND, "the failed refresh", held.lost()).await,
        LossReason::RefreshFailed
    );
    assert!(matches!(held.unlock().await, Err(SyncError::Lost { .. })));
}

/// The keyspace and table are created on first use, and acquires are timed and counted
/// under H2's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_created_on_first_use_and_acquires_are_counted() {
    let keyspace = unique_name("kst");
    let memory = MemoryInstrumenter::new();
    let hosts = engine_address("KERNEL_CASSANDRA_HOSTS");
    let backend = within(
        BOUND,
        "a new keyspace",
        CassandraGlobalLock::builder(hosts, namespace())
            .keyspace(&keyspace)
            .replication_factor(1)
            .instrumenter(Arc::new(memory.clone()))
            .connect(),
    )
    .await
    .unwrap();
    let token = support::acquires_are_timed_and_counted(
        &backend,
        &memory,
        "sync.globaltimedlock",
        "month-end",
    )
    .await;
    assert_eq!(token, FencingToken::new(1));
    let raw = raw_session().await;
    raw.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .unwrap();
}

/// Bad settings and hold times are refused before anything reaches Cassandra.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_hold_times_are_typed_errors() {
    let error = CassandraGlobalLock::builder("127.0.0.1:1", namespace())
        .keyspace("no-dashes")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::InvalidConfig {
                field: "keyspace",
                ..
            }
        ),
        "{error}"
    );
    let backend = global_lock(&namespace()).await;
    let error = backend
        .lock("month-end")
        .hold_for(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(error.code(), kernel_sync::codes::INVALID_HOLD_FOR);
    let error = backend
        .lock("month-end")
        .hold_for(kernel_sync::MAX_HOLD_FOR + Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(error.code(), kernel_sync::codes::INVALID_HOLD_FOR);
}

/// Dropping a guard releases the lock in the background, long before its lease would end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_guard_releases_the_lock() {
    let namespace = namespace();
    let backend = global_lock(&namespace).await;
    let hold_for = Duration::from_secs(30);
    let guard = backend
        .lock("month-end")
        .hold_for(hold_for)
        .acquire()
        .await
        .unwrap();
    drop(guard);
    let other = global_lock(&namespace).await;
    let next = other
        .lock("month-end")
        .wait_for(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    next.unlock().await.unwrap();
}

/// A holder cut off from Cassandra (its traffic black-holed, as in a partition) cannot refresh:
/// it is told `RefreshFailed` when its lease as it counts it runs out, before the server lets a
/// contender in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_holder_is_told_before_anyone_else_gets_in() {
    let namespace = namespace();
    let cassandra = engine_address("KERNEL_CASSANDRA_HOSTS");
    let node: std::net::SocketAddr = cassandra.parse().unwrap();
    let proxy = kernel_testkit::Proxy::start(&cassandra).await;
    // Every connection of the holder's driver goes through the proxy: the node's own address
    // (from the cluster's metadata) and the contact point (the proxy) both map to the proxy.
    let through_proxy =
        std::collections::HashMap::from([(node, proxy.addr()), (proxy.addr(), proxy.addr())]);
    let driver = SessionBuilder::new().address_translator(Arc::new(through_proxy));
    let holder_side = within(
        BOUND,
        "a Cassandra session through the proxy",
        CassandraGlobalLock::builder(proxy.address(), namespace.clone())
            .keyspace(KEYSPACE)
            .replication_factor(1)
            .request_timeout(Duration::from_secs(1))
            .session_builder(driver)
            .connect(),
    )
    .await
    .unwrap();
    let contender_side = global_lock(&namespace).await;

    let hold_for = CassandraGlobalLock::MIN_HOLD_FOR;
    let granted = std::time::Instant::now();
    let held = holder_side
        .lock("month-end")
        .hold_for(hold_for)
        .acquire()
        .await
        .unwrap();
    proxy.cut();
    let contender = tokio::spawn(async move {
        let guard = contender_side
            .lock("month-end")
            .wait_for(Duration::from_secs(30))
            .acquire()
            .await;
        (guard, std::time::Instant::now())
    });

    let reason = within(BOUND, "the loss signal", held.lost()).await;
    let told = std::time::Instant::now();
    assert_eq!(reason, LossReason::RefreshFailed);
    assert!(
        told.duration_since(granted) <= hold_for + Duration::from_secs(1),
        "told {:?} after the grant",
        told.duration_since(granted)
    );
    let (next, taken) = within(BOUND, "the contender", contender).await.unwrap();
    let next = next.unwrap();
    assert!(
        taken > told,
        "the contender got in {:?} before the holder was told",
        told.duration_since(taken)
    );
    assert!(next.fencing_token() > held.fencing_token());
    next.unlock().await.unwrap();
}
