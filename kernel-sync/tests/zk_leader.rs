//! Region leaders on a real ZooKeeper: one leader at a time, hand-over on rescind, on a
//! deleted node, and on a dead session.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kernel_sync::{ElectionExt, FencingToken, LockId, LossReason, Namespace, ZkLockBackend};
use kernel_testkit::Proxy;
use support::{engine_address, unique_name, within};
use tokio::sync::mpsc;
use zookeeper_client::Client;

const BOUND: Duration = Duration::from_secs(30);

fn namespace() -> Namespace {
    Namespace::new(unique_name("zkleader")).unwrap()
}

async fn backend_at(hosts: String, namespace: &Namespace, timeout: Duration) -> ZkLockBackend {
    within(
        BOUND,
        "a ZooKeeper session",
        ZkLockBackend::builder(hosts, namespace.clone())
            .session_timeout(timeout)
            .connect(),
    )
    .await
    .unwrap()
}

async fn backend(namespace: &Namespace) -> ZkLockBackend {
    backend_at(
        engine_address("KERNEL_ZK_HOSTS"),
        namespace,
        ZkLockBackend::DEFAULT_SESSION_TIMEOUT,
    )
    .await
}

/// Three candidates on three sessions: exactly one leads at a time, each rescind hands
/// over to the next, and the terms' tokens strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_candidates_lead_one_at_a_time_and_rescind_hands_over() {
    let namespace = namespace();
    let leaders = Arc::new(AtomicUsize::new(0));
    let (terms_tx, mut terms) = mpsc::unbounded_channel();
    let mut candidates = Vec::new();
    for _ in 0..3 {
        let backend = backend(&namespace).await;
        let (leaders, terms_tx) = (leaders.clone(), terms_tx.clone());
        candidates.push(tokio::spawn(async move {
            let leadership = backend.leader("scheduler").await.unwrap();
            assert_eq!(
                leaders.fetch_add(1, Ordering::SeqCst),
                0,
                "two leaders at once"
            );
            terms_tx.send(leadership.fencing_token()).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            leaders.fetch_sub(1, Ordering::SeqCst);
            leadership.rescind().await;
            leadership.rescind().await;
            assert_eq!(leadership.rescinded().await, LossReason::Rescinded);
        }));
    }
    for candidate in candidates {
        within(BOUND, "three terms", candidate).await.unwrap();
    }
    drop(terms_tx);
    let mut tokens = Vec::new();
    while let Some(token) = terms.recv().await {
        tokens.push(token);
    }
    assert_eq!(tokens.len(), 3);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// What the dead-session test observes, in the order it happened.
#[derive(Debug)]
enum Event {
    OldLeaderRescinded(LossReason),
    NewLeaderElected(FencingToken),
}

/// The leader's traffic is black-holed: it is told its leadership is over before a new
/// leader's term starts, and a new leader is elected within the session timeout plus a
/// small margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_dies_is_told_before_the_next_term_starts() {
    let namespace = namespace();
    let timeout = Duration::from_secs(4);
    let zk = engine_address("KERNEL_ZK_HOSTS");
    let proxy = Proxy::start(&zk).await;
    let doomed = backend_at(proxy.address(), &namespace, timeout).await;
    let old = within(BOUND, "the first leader", doomed.leader("scheduler"))
        .await
        .unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut candidates = Vec::new();
    for _ in 0..2 {
        let backend = backend_at(zk.clone(), &namespace, timeout).await;
        let events_tx = events_tx.clone();
        candidates.push(tokio::spawn(async move {
            let leadership = backend.leader("scheduler").await.unwrap();
            events_tx
                .send(Event::NewLeaderElected(leadership.fencing_token()))
                .unwrap();
            leadership.rescinded().await;
        }));
    }
    let old_token = old.fencing_token();
    let signal = old.loss_signal();
    let old_events = events_tx.clone();
    tokio::spawn(async move {
        let reason = signal.lost().await;
        old_events.send(Event::OldLeaderRescinded(reason)).unwrap();
    });
    // Let both candidates queue behind the leader before its traffic is cut.
    let raw = within(BOUND, "a raw session", Client::connect(&zk))
        .await
        .unwrap();
    let path = doomed.leader_path(&LockId::new("scheduler").unwrap());
    within(BOUND, "both candidates to queue", async {
        while raw.list_children(&path).await.map(|c| c.len()).unwrap_or(0) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    proxy.cut();
    // ZooKeeper expires the session within its timeout (plus one tick of the server's
    // expiry sweep) of the last ping; the margin covers that tick and the election.
    let margin = Duration::from_secs(3);
    let new_term_by = tokio::time::Instant::now() + timeout + margin;
    let first = within(
        timeout + margin,
        "the first event after the cut",
        events.recv(),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            first,
            Event::OldLeaderRescinded(LossReason::ConnectionSuspended)
        ),
        "{first:?}"
    );
    let second = within(
        new_term_by.saturating_duration_since(tokio::time::Instant::now()),
        "a new leader within the session timeout plus the margin",
        events.recv(),
    )
    .await
    .unwrap();
    let Event::NewLeaderElected(new_token) = second else {
        panic!("expected a new leader, got {second:?}");
    };
    assert!(new_token > old_token);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.recv())
            .await
            .is_err(),
        "exactly one new leader"
    );
    drop(candidates);
}

/// Deleting the leader's node from outside (H2's remote rescind) ends its term and elects
/// the next candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_leaders_node_rescinds_it_remotely() {
    let namespace = namespace();
    let (first, second) = (backend(&namespace).await, backend(&namespace).await);
    let raw = within(
        BOUND,
        "a raw session",
        Client::connect(&engine_address("KERNEL_ZK_HOSTS")),
    )
    .await
    .unwrap();
    let leader = within(BOUND, "the first leader", first.leader("scheduler"))
        .await
        .unwrap();
    let next = tokio::spawn(async move { second.leader("scheduler").await });
    let path = first.leader_path(&LockId::new("scheduler").unwrap());
    assert!(path.starts_with("/sync/regionleader/"));
    let mut nodes = within(BOUND, "the candidate to queue", async {
        loop {
            let nodes = raw.list_children(&path).await.unwrap();
            if nodes.len() == 2 {
                return nodes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    nodes.sort_by_key(|n| n.rsplit('-').next().map(str::to_owned));
    raw.delete(&format!("{path}/{}", nodes[0]), None)
        .await
        .unwrap();
    assert_eq!(
        within(BOUND, "the remote rescind", leader.rescinded()).await,
        LossReason::Deleted
    );
    let successor = within(BOUND, "the next leader", next)
        .await
        .unwrap()
        .unwrap();
    assert!(successor.fencing_token() > leader.fencing_token());
}

/// An id that H2 would have turned into an endless retry is a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_leader_id_is_a_typed_error() {
    let backend = backend(&namespace()).await;
    let error = backend.leader("/scheduler").await.unwrap_err();
    assert_eq!(error.code(), kernel_sync::codes::INVALID_ID);
}

/// Dropping a leadership rescinds it: the next candidate is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_leadership_hands_it_over() {
    let namespace = namespace();
    let (first, second) = (backend(&namespace).await, backend(&namespace).await);
    let leader = within(BOUND, "the first leader", first.leader("scheduler"))
        .await
        .unwrap();
    let token = leader.fencing_token();
    let next = tokio::spawn(async move { second.leader("scheduler").await });
    drop(leader);
    let next = within(BOUND, "the next leader after a drop", next)
        .await
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > token);
    next.rescind().await;
}
