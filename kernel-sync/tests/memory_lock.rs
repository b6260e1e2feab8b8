//! The in-memory backend's locks: exclusion, fencing, waiting, expiry, loss, cancellation.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::Duration;

use kernel_inst::MemoryInstrumenter;
use kernel_sync::{
    FencingToken, LockBackendExt, LockId, LossReason, MemoryLockBackend, Namespace, SyncError,
};
use tokio::sync::Mutex;

fn backend() -> MemoryLockBackend {
    MemoryLockBackend::new(Namespace::new("com.example.test").unwrap())
}

/// Eight tasks on two handles each take the lock fifty times and increment a counter with a
/// read-sleep-write: no increment is lost, and the tokens seen inside strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_increment_a_counter_exactly_under_the_lock() {
    let first = backend();
    let second = first.clone();
    let counter = Arc::new(std::sync::Mutex::new(0_u64));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let backend = if task % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let (counter, tokens) = (counter.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let guard = backend
                    .lock("counter")
                    .wait_for(Duration::from_secs(60))
                    .acquire()
                    .await
                    .unwrap();
                tokens.lock().await.push(guard.fencing_token());
                let read = *counter.lock().unwrap();
                tokio::time::sleep(Duration::from_micros(200)).await;
                *counter.lock().unwrap() = read + 1;
                guard.unlock().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 400);
    let tokens = tokens.lock().await;
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// A contender that waits out `wait_for` gets a typed contended error, and the queue it
/// joined is left as it was: the next acquire after unlock succeeds at once.
#[tokio::test(start_paused = true)]
async fn waiting_past_wait_for_gives_a_contended_error() {
    let backend = backend();
    let held = backend.lock("close").acquire().await.unwrap();
    let error = backend
        .lock("close")
        .wait_for(Duration::from_millis(300))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, SyncError::Contended { ref id, .. } if id.as_str() == "close"));
    assert_eq!(
        kernel_errors::Error::from(error).code(),
        kernel_sync::codes::CONTENDED
    );
    held.unlock().await.unwrap();
    let next = backend
        .lock("close")
        .wait_for(Duration::ZERO)
        .acquire()
        .await
        .unwrap();
    next.unlock().await.unwrap();
}

/// A holder that never unlocks is told at `hold_for`, and a waiter takes over then.
#[tokio::test(start_paused = true)]
async fn an_abandoned_lock_is_taken_over_after_hold_for() {
    let backend = backend();
    let abandoned = backend
        .lock("close")
        .hold_for(Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let next = backend
        .lock("close")
        .wait_for(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(abandoned.lost().await, LossReason::HoldExpired);
    assert!(next.fencing_token() > abandoned.fencing_token());
    assert!(matches!(
        abandoned.unlock().await,
        Err(SyncError::Lost {
            reason: LossReason::HoldExpired,
            ..
        })
    ));
    next.unlock().await.unwrap();
}

/// Revoking (as deleting the node would) fires `lost()` and lets the next waiter in.
#[tokio::test(start_paused = true)]
async fn revoking_a_lock_fires_lost_and_hands_it_over() {
    let backend = backend();
    let first = backend.lock("close").acquire().await.unwrap();
    let waiter = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .lock("close")
                .wait_for(Duration::from_secs(60))
                .acquire()
                .await
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(backend.revoke(&LockId::new("close").unwrap()), 1);
    assert_eq!(first.lost().await, LossReason::Deleted);
    let second = waiter.await.unwrap().unwrap();
    assert!(second.fencing_token() > first.fencing_token());
}

/// An expired session (simulated) loses every lock at once.
#[tokio::test(start_paused = true)]
async fn session_expiry_loses_every_lock_at_once() {
    let backend = backend();
    let other = backend.for_namespace(Namespace::new("com.example.other").unwrap());
    let a = backend.lock("a").acquire().await.unwrap();
    let b = other.lock("b").acquire().await.unwrap();
    assert_eq!(backend.expire_session(), 2);
    let lost = tokio::time::timeout(Duration::from_secs(5), async {
        (a.lost().await, b.lost().await)
    });
    assert_eq!(
        lost.await.expect("both losses reported"),
        (LossReason::SessionExpired, LossReason::SessionExpired)
    );
}

/// Dropping a guard releases the lock; dropping a waiting acquire leaves nothing queued.
#[tokio::test(start_paused = true)]
async fn dropping_guards_and_acquires_leaves_nothing_behind() {
    let backend = backend();
    let held = backend.lock("close").acquire().await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        backend
            .lock("close")
            .wait_for(Duration::from_secs(60))
            .acquire(),
    )
    .await;
    assert!(cancelled.is_err(), "the acquire was still waiting");
    drop(held);
    let again = tokio::time::timeout(
        Duration::from_secs(1),
        backend
            .lock("close")
            .wait_for(Duration::from_secs(1))
            .acquire(),
    )
    .await
    .expect("the dropped guard and the cancelled waiter left the lock free")
    .unwrap();
    assert!(again.fencing_token() > FencingToken::ZERO);
}

/// Ids and hold times are validated before anything is taken.
#[tokio::test]
async fn invalid_ids_and_hold_times_are_typed_errors() {
    let backend = backend();
    for bad in ["", "/lead", "a//b", "a b", "a#b"] {
        let error = backend.lock(bad).acquire().await.unwrap_err();
        assert!(
            matches!(error, SyncError::InvalidId { .. }),
            "{bad}: {error}"
        );
        assert!(!error.is_transient());
    }
    let error = backend
        .lock("fine")
        .hold_for(Duration::from_millis(999))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, SyncError::InvalidHoldFor { .. }));
    let error = backend
        .lock("fine")
        .hold_for(kernel_sync::MAX_HOLD_FOR + Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, SyncError::InvalidHoldFor { .. }), "{error}");
}

/// `wait_for(Duration::MAX)` waits for ever instead of overflowing: a free lock is taken, and a
/// held one is waited for until it is released.
#[tokio::test(start_paused = true)]
async fn waiting_for_ever_is_not_an_overflow() {
    let backend = backend();
    let held = backend
        .lock("close")
        .wait_for(Duration::MAX)
        .acquire()
        .await
        .unwrap();
    let waiting = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .lock("close")
                .wait_for(Duration::MAX)
                .hold_for(kernel_sync::MAX_HOLD_FOR)
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the waiter gave up");
    held.unlock().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter took the lock")
        .unwrap()
        .unwrap();
    next.unlock().await.unwrap();
}

/// The same id in two namespaces names two locks.
#[tokio::test]
async fn namespaces_keep_equal_ids_apart() {
    let billing = backend();
    let payroll = billing.for_namespace(Namespace::new("com.example.payroll").unwrap());
    let _a = billing.lock("close").acquire().await.unwrap();
    let _b = payroll
        .lock("close")
        .wait_for(Duration::ZERO)
        .acquire()
        .await
        .unwrap();
}

/// Acquires are timed and counted under H2's names.
#[tokio::test(start_paused = true)]
async fn acquires_are_timed_and_counted() {
    let memory = MemoryInstrumenter::new();
    let backend = backend().instrumenter(Arc::new(memory.clone()));
    support::acquires_are_timed_and_counted(&backend, &memory, "sync.regionlock", "close").await;
}
