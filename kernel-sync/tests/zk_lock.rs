//! Region locks on a real ZooKeeper: exclusion across sessions, fencing, `wait_for`,
//! `hold_for`, expired holders, other clients of the recipe, cancellation.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel_inst::MemoryInstrumenter;
use kernel_sync::{LockBackendExt, LockId, LossReason, Namespace, SyncError, ZkLockBackend};
use support::{engine_address, unique_name, within};
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Permission};

const BOUND: Duration = Duration::from_secs(30);

fn namespace() -> Namespace {
    Namespace::new(unique_name("zklock")).unwrap()
}

async fn backend(namespace: &Namespace) -> ZkLockBackend {
    let hosts = engine_address("KERNEL_ZK_HOSTS");
    within(
        BOUND,
        "a ZooKeeper session",
        ZkLockBackend::builder(hosts, namespace.clone()).connect(),
    )
    .await
    .unwrap()
}

async fn raw_client() -> Client {
    let hosts = engine_address("KERNEL_ZK_HOSTS");
    within(BOUND, "a raw ZooKeeper session", Client::connect(&hosts))
        .await
        .unwrap()
}

async fn children(client: &Client, path: &str) -> Vec<String> {
    match client.list_children(path).await {
        Ok(children) => children,
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        Err(error) => panic!("listing {path}: {error}"),
    }
}

/// Another client's lock node under `path`: `<name>-lock-<sequence>` holding `data`, created
/// the way any client of the recipe does. Returns the node's full path.
async fn foreign_node(raw: &Client, path: &str, name: &str, data: &[u8]) -> String {
    raw.mkdir(path, &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
        .unwrap();
    let prefix = format!("{path}/{name}-lock-");
    let (_, sequence) = raw
        .create(
            &prefix,
            data,
            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    format!("{prefix}{sequence}")
}

/// Go's binary time (version 1, UTC) for `at`, as H2 wrote lock expiries.
fn go_time(at: SystemTime) -> Vec<u8> {
    let unix = at.duration_since(UNIX_EPOCH).unwrap();
    let mut out = vec![1];
    out.extend_from_slice(&(unix.as_secs() as i64 + 62_135_596_800).to_be_bytes());
    out.extend_from_slice(&unix.subsec_nanos().to_be_bytes());
    out.extend_from_slice(&(-1_i16).to_be_bytes());
    out
}

/// Eight tasks over two sessions each take the lock fifty times and increment a shared
/// counter with a read-sleep-write: the count is exact and the fencing tokens seen inside
/// the critical section strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_on_two_sessions_increment_a_counter_exactly() {
    let namespace = namespace();
    let sessions = [backend(&namespace).await, backend(&namespace).await];
    let (wait_for, bound) = (Duration::from_secs(60), Duration::from_secs(120));
    support::eight_tasks_increment_a_counter(sessions, wait_for, bound).await;
}

/// The token is the holder node's creation zxid, and unlock removes the node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fencing_token_is_the_lock_nodes_czxid() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("books/close").unwrap());
    assert_eq!(path, format!("/{namespace}/books#close"));
    let guard = backend.lock("books/close").acquire().await.unwrap();
    let held = children(&raw, &path).await;
    assert_eq!(held.len(), 1, "{held:?}");
    // The lock path did not exist: the fast path created it with our node as sequence 0.
    assert!(
        held[0].starts_with("_c_") && held[0].ends_with("-lock-0000000000"),
        "{held:?}"
    );
    let (_, stat) = raw.get_data(&format!("{path}/{}", held[0])).await.unwrap();
    assert_eq!(guard.fencing_token().as_u64(), stat.czxid as u64);
    guard.unlock().await.unwrap();
    assert!(children(&raw, &path).await.is_empty());
}

/// An uncontended acquire on a used, empty lock path takes the fast path (our node alone, as
/// sequence 0 of a fresh path), and clients of the standard recipe that come later queue
/// behind it: their sequence is higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_keeps_the_recipes_order_for_later_clients() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let other_session = self::backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    // A path another client has used (its child counter is past zero) and left empty.
    let earlier = foreign_node(&raw, &path, "_c_0b7d", b"").await;
    raw.delete(&earlier, None).await.unwrap();

    let guard = backend.lock("close").acquire().await.unwrap();
    let held = children(&raw, &path).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].ends_with("-lock-0000000000"), "{held:?}");
    let (_, stat) = raw.get_data(&format!("{path}/{}", held[0])).await.unwrap();
    assert_eq!(guard.fencing_token().as_u64(), stat.czxid as u64);

    // A later client of the standard recipe gets a higher sequence: it waits behind us.
    let (_, later) = raw
        .create(
            &format!("{path}/_c_9e3a-lock-"),
            b"",
            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    let later_node = format!("{path}/_c_9e3a-lock-{later}");
    assert!(later.into_i64() > 0, "{later_node}");
    assert_contended(&other_session, "close").await;

    // After our release the later client holds, so ours is still refused…
    guard.unlock().await.unwrap();
    assert_contended(&other_session, "close").await;
    // …until it releases too; then the lock is taken again, with a higher token.
    raw.delete(&later_node, None).await.unwrap();
    let next = other_session.lock("close").acquire().await.unwrap();
    assert!(next.fencing_token().as_u64() > stat.czxid as u64);
    next.unlock().await.unwrap();
}

/// Where the namespace forbids deleting lock paths, the fast path is refused and the standard
/// recipe takes over: locking still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_forbids_deleting_lock_paths_still_locks() {
    let namespace = namespace();
    let raw = raw_client().await;
    let no_delete = [Acl::new(
        Permission::READ | Permission::WRITE | Permission::CREATE | Permission::ADMIN,
        AuthId::anyone(),
    )];
    raw.create(
        &format!("/{namespace}"),
        b"",
        &CreateMode::Persistent.with_acls(Acls::new(&no_delete)),
    )
    .await
    .unwrap();
    let backend = backend(&namespace).await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    let mut names = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let guard = backend.lock("close").acquire().await.unwrap();
        names.push(children(&raw, &path).await.remove(0));
        tokens.push(guard.fencing_token());
        guard.unlock().await.unwrap();
    }
    // The first acquire created the missing lock path with its node (no delete needed); the
    // next ones could not replace the path and took the standard recipe's sequences.
    assert!(names[0].ends_with("-lock-0000000000"), "{names:?}");
    assert!(names[1].ends_with("-lock-0000000001"), "{names:?}");
    assert!(names[2].ends_with("-lock-0000000002"), "{names:?}");
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");

    // Leave nothing behind: open the namespace up again and remove both nodes.
    let open = Acls::anyone_all();
    raw.set_acl(&format!("/{namespace}"), &open, None)
        .await
        .unwrap();
    // (ZooKeeper may have removed the empty container already.)
    match raw.delete(&path, None).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
        Err(error) => panic!("removing {path}: {error}"),
    }
    raw.delete(&format!("/{namespace}"), None).await.unwrap();
}

/// Trying `id` for 200 ms on `backend` gives `Contended`.
async fn assert_contended(backend: &ZkLockBackend, id: &str) {
    let refused = backend
        .lock(id)
        .wait_for(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SyncError::Contended { .. }),
        "{refused:?}"
    );
}

/// Unlocking a lock whose node was deleted from outside reports the loss instead of a clean
/// release, whether the holder heard of the deletion first (its watch) or its release's
/// delete found the node gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlocking_after_the_node_was_deleted_returns_lost() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    let guard = backend.lock("close").acquire().await.unwrap();
    let node = children(&raw, &path).await.remove(0);
    raw.delete(&format!("{path}/{node}"), None).await.unwrap();
    let error = guard.unlock().await.unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::Lost {
                reason: LossReason::Deleted,
                ..
            }
        ),
        "{error:?}"
    );
}

/// A contender that waits out `wait_for` gets a typed contended error and leaves no node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_past_wait_for_is_contended_and_leaves_no_node() {
    let namespace = namespace();
    let (holder, contender) = (backend(&namespace).await, backend(&namespace).await);
    let raw = raw_client().await;
    let path = holder.lock_path(&LockId::new("close").unwrap());
    let held = holder.lock("close").acquire().await.unwrap();
    for wait_for in [Duration::ZERO, Duration::from_millis(300)] {
        let error = contender
            .lock("close")
            .wait_for(wait_for)
            .acquire()
            .await
            .unwrap_err();
        assert!(matches!(error, SyncError::Contended { .. }), "{error}");
        assert_eq!(
            kernel_errors::Error::from(error).code(),
            kernel_sync::codes::CONTENDED
        );
        assert_eq!(
            children(&raw, &path).await.len(),
            1,
            "only the holder's node"
        );
    }
    assert!(held.loss().is_none());
    held.unlock().await.unwrap();
}

/// A holder that never unlocks is told at `hold_for` and its node removed; a waiter takes
/// over with a higher token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_past_hold_for_is_told_and_a_waiter_takes_over() {
    let namespace = namespace();
    let (first, second) = (backend(&namespace).await, backend(&namespace).await);
    let abandoned = first
        .lock("close")
        .hold_for(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap();
    let next = second
        .lock("close")
        .wait_for(Duration::from_secs(20))
        .acquire()
        .await
        .unwrap();
    assert_eq!(
        within(BOUND, "the hold-expiry signal", abandoned.lost()).await,
        LossReason::HoldExpired
    );
    assert!(next.fencing_token() > abandoned.fencing_token());
    assert!(matches!(
        abandoned.unlock().await,
        Err(SyncError::Lost { .. })
    ));
    next.unlock().await.unwrap();
}

/// A node left by another client (an H2 Go service) whose recorded expiry has passed is
/// removed by the contender waiting on it, as H2's reaper did; the contender then holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_of_another_client_is_reaped_after_its_hold_for() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    let expiry = go_time(SystemTime::now() + Duration::from_secs(2));
    let h2_name = "_c_0123456789abcdef0123456789abcdef";
    let expired = foreign_node(&raw, &path, h2_name, &expiry).await;
    let guard = backend
        .lock("close")
        .wait_for(Duration::from_secs(20))
        .acquire()
        .await
        .unwrap();
    let left = children(&raw, &path).await;
    assert_eq!(
        left.len(),
        1,
        "the expired node {expired} was removed: {left:?}"
    );
    guard.unlock().await.unwrap();
}

/// A client of the same recipe that records no expiry (Curator's `InterProcessMutex`)
/// excludes ours until it deletes its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_of_the_recipe_excludes_ours() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    let curator_name = "_c_2f1c6b1e-8d1e-4a4e-9a7e-3c2b1a0f9e8d";
    let curator_node = foreign_node(&raw, &path, curator_name, b"10.0.0.7").await;
    assert_contended(&backend, "close").await;
    let waiting = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .lock("close")
                .wait_for(Duration::from_secs(20))
                .acquire()
                .await
        })
    };
    // Wait until our contender's node is queued behind the foreign one, then release.
    within(BOUND, "our node to queue", async {
        while children(&raw, &path).await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    raw.delete(&curator_node, None).await.unwrap();
    let guard = within(BOUND, "the hand-over", waiting)
        .await
        .unwrap()
        .unwrap();
    guard.unlock().await.unwrap();
}

/// Deleting the holder's node from outside fires `lost()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_holders_node_fires_lost() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    let guard = backend
        .lock("close")
        .hold_for(Duration::from_secs(60))
        .acquire()
        .await
        .unwrap();
    let node = children(&raw, &path).await.remove(0);
    raw.delete(&format!("{path}/{node}"), None).await.unwrap();
    assert_eq!(
        within(BOUND, "the deletion signal", guard.lost()).await,
        LossReason::Deleted
    );
}

/// Dropping an acquire that is still waiting removes its node; dropping a guard releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_acquires_and_guards_leave_no_node_behind() {
    let namespace = namespace();
    let backend = backend(&namespace).await;
    let raw = raw_client().await;
    let path = backend.lock_path(&LockId::new("close").unwrap());
    let held = backend.lock("close").acquire().await.unwrap();
    let waiting = backend
        .lock("close")
        .wait_for(Duration::from_secs(60))
        .acquire();
    let cancelled = tokio::time::timeout(Duration::from_millis(300), waiting).await;
    assert!(cancelled.is_err(), "the acquire was still waiting");
    drop(held);
    within(BOUND, "every node to be removed", async {
        while !children(&raw, &path).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Invalid ids and hold times fail before anything reaches ZooKeeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_and_hold_times_are_typed_errors() {
    let backend = backend(&namespace()).await;
    let error = backend.lock("a//b").acquire().await.unwrap_err();
    assert_eq!(error.code(), kernel_sync::codes::INVALID_ID);
    let error = backend
        .lock("a")
        .hold_for(Duration::from_millis(10))
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(error.code(), kernel_sync::codes::INVALID_HOLD_FOR);
}

/// Acquires are timed and counted under H2's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_are_timed_and_counted() {
    let memory = MemoryInstrumenter::new();
    let hosts = engine_address("KERNEL_ZK_HOSTS");
    let backend = ZkLockBackend::builder(hosts, namespace())
        .instrumenter(Arc::new(memory.clone()))
        .connect()
        .await
        .unwrap();
    support::acquires_are_timed_and_counted(&backend, &memory, "sync.regionlock", "close").await;
}
