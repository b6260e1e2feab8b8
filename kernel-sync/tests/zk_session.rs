//! Session supervision on a real ZooKeeper: expiry and long suspensions are reported to
//! every holder, short ones are not, and a new session serves new operations.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::time::Duration;

use kernel_sync::{ElectionExt, LockBackendExt, LossReason, Namespace, ZkLockBackend};
use kernel_testkit::Proxy;
use support::{engine_address, unique_name, within};
use tokio::sync::mpsc;

const BOUND: Duration = Duration::from_secs(30);

fn namespace() -> Namespace {
    Namespace::new(unique_name("zksession")).unwrap()
}

async fn backend(
    hosts: String,
    namespace: &Namespace,
    timeout: Duration,
    grace: f64,
) -> ZkLockBackend {
    within(
        BOUND,
        "a ZooKeeper session",
        ZkLockBackend::builder(hosts, namespace.clone())
            .session_timeout(timeout)
            .suspension_grace(grace)
            .connect(),
    )
    .await
    .unwrap()
}

/// With suspensions ignored, a session that expires while holding two locks and a
/// leadership reports all three lost at once; once the network is back, the backend opens
/// a new session and new operations work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_loses_everything_held_and_a_new_session_serves() {
    let namespace = namespace();
    let timeout = Duration::from_secs(3);
    let proxy = Proxy::start(&engine_address("KERNEL_ZK_HOSTS")).await;
    let backend = backend(proxy.address(), &namespace, timeout, f64::INFINITY).await;
    let hold = Duration::from_secs(120);
    let (a, b, leader) = within(BOUND, "two locks and a leadership", async {
        let a = backend.lock("a").hold_for(hold).acquire().await.unwrap();
        let b = backend.lock("b").hold_for(hold).acquire().await.unwrap();
        (a, b, backend.leader("scheduler").await.unwrap())
    })
    .await;

    proxy.cut();
    let expiry = timeout * 3 + Duration::from_secs(5);
    let first = within(expiry, "the first expiry signal", a.lost()).await;
    // The others follow at once: one session end fires them all.
    let others = within(Duration::from_secs(1), "the other expiry signals", async {
        tokio::join!(b.lost(), leader.rescinded())
    })
    .await;
    assert_eq!(
        (first, others.0, others.1),
        (
            LossReason::SessionExpired,
            LossReason::SessionExpired,
            LossReason::SessionExpired
        )
    );
    assert!(matches!(
        a.unlock().await,
        Err(kernel_sync::SyncError::Lost { .. })
    ));

    proxy.restore();
    let again = within(BOUND, "a lock on a new session", async {
        backend
            .lock("a")
            .wait_for(Duration::from_secs(10))
            .acquire()
            .await
    })
    .await
    .unwrap();
    assert!(again.fencing_token() > b.fencing_token());
    again.unlock().await.unwrap();
}

/// What the suspension test observes, in the order it happened.
#[derive(Debug, PartialEq)]
enum Event {
    HolderLost(LossReason),
    ContenderAcquired,
}

/// With the default grace, a holder cut off from ZooKeeper is told it lost the lock before
/// ZooKeeper expires its session and lets a contender on another session in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_suspension_is_reported_before_anyone_else_can_hold() {
    let namespace = namespace();
    let timeout = Duration::from_secs(4);
    let zk = engine_address("KERNEL_ZK_HOSTS");
    let proxy = Proxy::start(&zk).await;
    let cut_off = backend(
        proxy.address(),
        &namespace,
        timeout,
        ZkLockBackend::DEFAULT_SUSPENSION_GRACE,
    )
    .await;
    let contender = backend(
        zk,
        &namespace,
        timeout,
        ZkLockBackend::DEFAULT_SUSPENSION_GRACE,
    )
    .await;
    let held = cut_off
        .lock("close")
        .hold_for(Duration::from_secs(120))
        .acquire()
        .await
        .unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let signal = held.loss_signal();
    let holder_events = events_tx.clone();
    tokio::spawn(async move {
        let reason = signal.lost().await;
        holder_events.send(Event::HolderLost(reason)).unwrap();
    });
    let waiter = tokio::spawn(async move {
        let guard = contender
            .lock("close")
            .wait_for(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap();
        events_tx.send(Event::ContenderAcquired).unwrap();
        guard
    });

    proxy.cut();
    let bound = timeout * 2 + Duration::from_secs(5);
    let first = within(bound, "the holder's loss", events.recv()).await;
    assert_eq!(
        first,
        Some(Event::HolderLost(LossReason::ConnectionSuspended))
    );
    let second = within(bound, "the contender's lock", events.recv()).await;
    assert_eq!(second, Some(Event::ContenderAcquired));
    within(BOUND, "the contender", waiter)
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
}

/// A disconnection shorter than the grace loses nothing (H2 rescinded leaders on any
/// disconnection): the client reconnects to the same session and the lock is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_disconnection_loses_nothing() {
    let namespace = namespace();
    let timeout = Duration::from_secs(6);
    let proxy = Proxy::start(&engine_address("KERNEL_ZK_HOSTS")).await;
    let backend = backend(proxy.address(), &namespace, timeout, 0.5).await;
    let held = backend
        .lock("close")
        .hold_for(Duration::from_secs(120))
        .acquire()
        .await
        .unwrap();
    let leader = backend.leader("scheduler").await.unwrap();

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    // The client notices the dead connection (2/5 of the session timeout without a reply)
    // and reconnects through the restored proxy; a new lock proves the session answers.
    let probe = within(BOUND, "an operation after reconnecting", async {
        backend
            .lock("probe")
            .wait_for(Duration::from_secs(10))
            .acquire()
            .await
    })
    .await
    .unwrap();
    probe.unlock().await.unwrap();
    assert!(proxy.accepted() >= 2, "the client reconnected");
    assert_eq!(held.loss(), None);
    assert_eq!(leader.loss(), None);
    held.unlock().await.unwrap();
    leader.rescind().await;
}
