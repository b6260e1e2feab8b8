//! Fixtures for the engine tests: where `cargo xtask services up` put the engines, unique
//! names, the shared mutual-exclusion check, and (from the testkit) the fault-injecting proxy.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

#[allow(unused_imports)] // the in-memory backend's tests need no engine
pub(crate) use kernel_testkit::engine_address;

/// A name no other test run uses, for namespaces, lock ids and keyspaces (underscores: a
/// keyspace name may not contain dots).
pub(crate) fn unique_name(prefix: &str) -> String {
    kernel_testkit::unique(prefix).replace('.', "_")
}

/// Waits for `future` at most `limit`, failing with a message naming what was awaited.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// The mutual-exclusion check every backend passes: eight tasks spread over `sessions` each
/// take the lock fifty times and increment a shared counter with a read-sleep-write. The count
/// must come out exact and the fencing tokens seen inside the critical section must strictly
/// increase.
pub(crate) async fn eight_tasks_increment_a_counter<B>(
    sessions: [B; 2],
    wait_for: Duration,
    bound: Duration,
) where
    B: kernel_sync::LockBackend + Clone,
{
    use kernel_sync::{FencingToken, LockBackendExt};

    let counter = Arc::new(std::sync::Mutex::new(0_u64));
    let tokens = Arc::new(std::sync::Mutex::new(Vec::<FencingToken>::new()));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let backend = sessions[task % 2].clone();
        let (counter, tokens) = (counter.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let guard = backend
                    .lock("counter")
                    .wait_for(wait_for)
                    .acquire()
                    .await
                    .unwrap();
                tokens.lock().unwrap().push(guard.fencing_token());
                let read = *counter.lock().unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                *counter.lock().unwrap() = read + 1;
                guard.unlock().await.unwrap();
            }
        }));
    }
    for task in tasks {
        within(bound, "400 lock cycles", task).await.unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 400);
    let tokens = tokens.lock().unwrap();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// The metrics check every backend passes: one acquire of `id` that succeeds and, while it is
/// held, one that is refused at once; both are timed under `<prefix>.acquire` and counted as
/// `<prefix>.acquire.success` and `.failure` in `memory` (the backend's instrumenter). Returns
/// the first holder's token.
pub(crate) async fn acquires_are_timed_and_counted<B>(
    backend: &B,
    memory: &kernel_inst::MemoryInstrumenter,
    prefix: &str,
    id: &str,
) -> kernel_sync::FencingToken
where
    B: kernel_sync::LockBackend,
{
    use kernel_sync::{LockBackendExt, SyncError};

    let held = backend.lock(id).acquire().await.unwrap();
    let token = held.fencing_token();
    let refused = backend
        .lock(id)
        .wait_for(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(refused, SyncError::Contended { .. }), "{refused}");
    held.unlock().await.unwrap();
    let snapshot = memory.snapshot();
    assert_eq!(
        snapshot
            .timing(&format!("{prefix}.acquire"))
            .map(|t| t.count),
        Some(2)
    );
    assert_eq!(
        snapshot.counter(&format!("{prefix}.acquire.success")),
        Some(1)
    );
    assert_eq!(
        snapshot.counter(&format!("{prefix}.acquire.failure")),
        Some(1)
    );
    token
}
