//! The in-memory backend's elections: one leader at a time, hand-over, loss.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kernel_inst::MemoryInstrumenter;
use kernel_sync::{ElectionExt, LockId, LossReason, MemoryLockBackend, Namespace};

fn backend() -> MemoryLockBackend {
    MemoryLockBackend::new(Namespace::new("com.example.test").unwrap())
}

/// Three candidates each lead once, one at a time, in turn; tokens increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_candidates_lead_one_at_a_time() {
    let backend = backend();
    let leaders = Arc::new(AtomicUsize::new(0));
    let (terms_tx, mut terms) = tokio::sync::mpsc::unbounded_channel();
    let mut candidates = Vec::new();
    for _ in 0..3 {
        let (backend, leaders, terms_tx) = (backend.clone(), leaders.clone(), terms_tx.clone());
        candidates.push(tokio::spawn(async move {
            let leadership = backend.leader("scheduler").await.unwrap();
            assert_eq!(leaders.fetch_add(1, Ordering::SeqCst), 0, "two leaders");
            terms_tx.send(leadership.fencing_token()).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            leaders.fetch_sub(1, Ordering::SeqCst);
            leadership.rescind().await;
            assert_eq!(leadership.rescinded().await, LossReason::Rescinded);
        }));
    }
    for candidate in candidates {
        tokio::time::timeout(Duration::from_secs(20), candidate)
            .await
            .expect("a candidate's terms within 20 s")
            .unwrap();
    }
    drop(terms_tx);
    let mut tokens = Vec::new();
    while let Some(token) = terms.recv().await {
        tokens.push(token);
    }
    assert_eq!(tokens.len(), 3);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// Deleting the leader's claim from outside demotes it and elects the next candidate.
#[tokio::test(start_paused = true)]
async fn a_revoked_leader_is_told_and_replaced() {
    let memory = MemoryInstrumenter::new();
    let backend = backend().instrumenter(Arc::new(memory.clone()));
    let first = backend.leader("scheduler").await.unwrap();
    let next = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.leader("scheduler").await })
    };
    tokio::task::yield_now().await;
    backend.revoke(&LockId::new("scheduler").unwrap());
    assert_eq!(first.rescinded().await, LossReason::Deleted);
    let second = next.await.unwrap().unwrap();
    assert!(second.fencing_token() > first.fencing_token());
    second.rescind().await;
    second.rescind().await;
    let snapshot = memory.snapshot();
    assert_eq!(snapshot.counter("sync.regionleader.elected"), Some(2));
    assert_eq!(
        snapshot.counter("sync.regionleader.remotely-rescinded"),
        Some(1)
    );
    assert_eq!(snapshot.counter("sync.regionleader.rescinded"), Some(1));
}

/// Dropping a leadership hands over; dropping a candidacy withdraws it.
#[tokio::test(start_paused = true)]
async fn dropping_a_leadership_or_a_candidacy_hands_over() {
    let backend = backend();
    let first = backend.leader("scheduler").await.unwrap();
    let withdrawn =
        tokio::time::timeout(Duration::from_millis(10), backend.leader("scheduler")).await;
    assert!(withdrawn.is_err(), "the candidate was still waiting");
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(1), backend.leader("scheduler"))
        .await
        .expect("the dropped leadership and candidacy left the election open")
        .unwrap();
    assert!(second.loss().is_none());
}

/// A malformed leader id is a typed error, not an endless retry (as it was in H2).
#[tokio::test]
async fn an_invalid_leader_id_is_a_typed_error() {
    let error = backend().leader("/scheduler").await.unwrap_err();
    assert_eq!(error.code(), kernel_sync::codes::INVALID_ID);
}
