//! Digest authentication and ACLs on a real ZooKeeper: what a backend with credentials creates
//! cannot be deleted or changed by other identities (nor by sessions without credentials) but
//! can be observed by anyone; services that list each other as peers still contend for one
//! lock and one leadership; bad credentials are refused before connecting.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::time::Duration;

use kernel_sync::{ElectionExt, LockBackendExt, LockId, Namespace, SyncError, ZkLockBackend};
use support::{engine_address, unique_name, within};
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Permission};

const BOUND: Duration = Duration::from_secs(30);

/// A digest identity. `digest` is base64(sha1("user:password")), as ZooKeeper's
/// `DigestAuthenticationProvider` computes it
/// (`printf 'svc-a:secret-a' | openssl sha1 -binary | base64`).
struct Identity {
    user: &'static str,
    password: &'static str,
    digest: &'static str,
}

impl Identity {
    /// The identity as ACLs name it: `user:digest`.
    fn id(&self) -> String {
        format!("{}:{}", self.user, self.digest)
    }
}

const A: Identity = Identity {
    user: "svc-a",
    password: "secret-a",
    digest: "F1J5+wuXWHeDOrhLfGvfFaAE4wU=",
};
const B: Identity = Identity {
    user: "svc-b",
    password: "secret-b",
    digest: "9430aq7oqpM2XdVlPoPLAutaGXw=",
};
const C: Identity = Identity {
    user: "svc-c",
    password: "secret-c",
    digest: "pA0KyefNz2MAyayEjiQicTB3ldo=",
};

fn hosts() -> String {
    engine_address("KERNEL_ZK_HOSTS")
}

fn namespace() -> Namespace {
    Namespace::new(unique_name("zkacl")).unwrap()
}

/// A backend authenticated as `who` that lets `peers` share its paths.
async fn backend_as(
    hosts: &str,
    namespace: &Namespace,
    who: &Identity,
    peers: &[&Identity],
) -> ZkLockBackend {
    let mut builder =
        ZkLockBackend::builder(hosts, namespace.clone()).digest_credentials(who.user, who.password);
    for peer in peers {
        builder = builder.peer_digest(peer.id());
    }
    within(
        BOUND,
        "a ZooKeeper session with credentials",
        builder.connect(),
    )
    .await
    .unwrap()
}

/// A plain client, authenticated as `who` if given.
async fn raw(hosts: &str, who: Option<&Identity>) -> Client {
    let mut connector = Client::connector();
    if let Some(who) = who {
        connector = connector.with_auth(
            "digest",
            format!("{}:{}", who.user, who.password).as_bytes(),
        );
    }
    within(BOUND, "a raw ZooKeeper session", connector.connect(hosts))
        .await
        .unwrap()
}

/// What the backend gives its paths and nodes: `owner` may do anything, anyone may read.
fn protected(owner: &Identity) -> Vec<Acl> {
    vec![
        Acl::new(Permission::ALL, AuthId::new("digest", &owner.id())),
        Acl::new(Permission::READ, AuthId::anyone()),
    ]
}

/// [`protected`] as a session without the admin right reads it: ZooKeeper (3.7 on) hides the
/// digest from it (`user:x`).
fn protected_seen_by_others(owner: &Identity) -> Vec<Acl> {
    vec![
        Acl::new(
            Permission::ALL,
            AuthId::new("digest", &format!("{}:x", owner.user)),
        ),
        Acl::new(Permission::READ, AuthId::anyone()),
    ]
}

/// The ACL of `path`, and the node's creation zxid.
async fn acl_of(client: &Client, path: &str) -> (Vec<Acl>, i64) {
    let (acl, stat) = client
        .get_acl(path)
        .await
        .unwrap_or_else(|error| panic!("reading the ACL of {path}: {error}"));
    (acl, stat.czxid)
}

fn assert_same_acl(got: &[Acl], expected: &[Acl], path: &str) {
    assert!(
        got.len() == expected.len() && expected.iter().all(|acl| got.contains(acl)),
        "{path}: {got:?}, expected {expected:?}"
    );
}

/// The only child of `dir`, as a full path.
async fn only_child(client: &Client, dir: &str) -> String {
    let children = client.list_children(dir).await.unwrap();
    assert_eq!(children.len(), 1, "{dir}: {children:?}");
    format!("{dir}/{}", children[0])
}

fn assert_no_auth<T: std::fmt::Debug>(result: Result<T, zookeeper_client::Error>, what: &str) {
    assert!(
        matches!(result, Err(zookeeper_client::Error::NoAuth)),
        "{what}: expected NoAuth, got {result:?}"
    );
}

/// Whether ZooKeeper refused `error`'s request for want of rights.
fn is_no_auth(error: &SyncError) -> bool {
    matches!(error, SyncError::Backend { source, .. }
        if source.downcast_ref::<zookeeper_client::Error>() == Some(&zookeeper_client::Error::NoAuth))
}

/// A session without credentials, and one authenticated as another user, can list a held
/// lock, read its node and its ACL, but neither delete nor change the holder's node, nor
/// join the queue; a backend without credentials is refused with a typed error. The ACL
/// survives the fast path's re-creation of the lock path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_can_be_observed_but_not_deleted_by_other_identities() {
    let namespace = namespace();
    let hosts = hosts();
    let owner = backend_as(&hosts, &namespace, &A, &[]).await;
    let path = owner.lock_path(&LockId::new("close").unwrap());
    let expected = protected_seen_by_others(&A);
    let anonymous = raw(&hosts, None).await;
    let owner_raw = raw(&hosts, Some(&A)).await;
    let stranger = raw(&hosts, Some(&C)).await;

    let mut dir_zxids = Vec::new();
    for round in 0..3 {
        let guard = owner
            .lock("close")
            .hold_for(Duration::from_secs(60))
            .acquire()
            .await
            .unwrap();
        for (name, observer) in [("anonymous", &anonymous), ("svc-c", &stranger)] {
            let node = only_child(observer, &path).await;
            observer.get_data(&node).await.unwrap();
            assert_same_acl(&acl_of(observer, &node).await.0, &expected, &node);
            let (dir_acl, dir_zxid) = acl_of(observer, &path).await;
            assert_same_acl(&dir_acl, &expected, &path);
            let ns = format!("/{namespace}");
            assert_same_acl(&acl_of(observer, &ns).await.0, &expected, &ns);
            if name == "anonymous" {
                dir_zxids.push(dir_zxid);
            }
            if round == 0 {
                // The owner sees its full digest.
                for path in [&node, &path, &ns] {
                    assert_same_acl(&acl_of(&owner_raw, path).await.0, &protected(&A), path);
                }
                assert_no_auth(observer.delete(&node, None).await, "deleting the holder");
                assert_no_auth(
                    observer.set_data(&node, b"mine", None).await,
                    "overwriting the holder's expiry",
                );
                assert_no_auth(
                    observer.set_acl(&node, &Acls::anyone_all(), None).await,
                    "opening the holder's node",
                );
                assert_no_auth(
                    observer
                        .create(
                            &format!("{path}/_c_{name}-lock-"),
                            b"",
                            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
                        )
                        .await,
                    "joining the queue",
                );
            }
        }
        if round == 0 {
            let open = within(
                BOUND,
                "a ZooKeeper session without credentials",
                ZkLockBackend::builder(hosts.clone(), namespace.clone()).connect(),
            )
            .await
            .unwrap();
            let refused = open
                .lock("close")
                .wait_for(Duration::ZERO)
                .acquire()
                .await
                .unwrap_err();
            assert!(is_no_auth(&refused), "{refused:?}");
        }
        // Nothing of the above touched the holder.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), guard.lost())
                .await
                .is_err(),
            "the holder was told it lost the lock"
        );
        guard.unlock().await.unwrap();
    }
    // The later rounds took the fast path, which re-creates the lock path: each time with
    // the same protected ACL (checked above).
    assert!(
        dir_zxids.windows(2).all(|w| w[0] < w[1]),
        "the lock path was not re-created: {dir_zxids:?}"
    );
}

/// In a fresh tree (a chroot), a leader's node and its election paths get the owner's ACL,
/// and the shared roots `/sync` and `/sync/regionleader` let anyone create and read only:
/// another service starts its own election there, nobody removes a root or another
/// service's election namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_is_protected_and_the_shared_roots_only_let_anyone_create() {
    let hosts = hosts();
    let root = raw(&hosts, None).await;
    // A container: ZooKeeper removes it once the test's nodes under it are gone.
    let chroot = format!("/{}", unique_name("zkaclroot"));
    root.create(
        &chroot,
        b"",
        &CreateMode::Container.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    let chrooted = format!("{hosts}{chroot}");
    let namespace = namespace();
    let owner = backend_as(&chrooted, &namespace, &A, &[]).await;
    let leadership = within(
        BOUND,
        "the only candidate's election",
        owner.leader("scheduler"),
    )
    .await
    .unwrap();

    let anonymous = raw(&chrooted, None).await;
    let stranger = raw(&chrooted, Some(&C)).await;
    let shared = [Acl::new(
        Permission::CREATE | Permission::READ,
        AuthId::anyone(),
    )];
    for path in ["/sync", "/sync/regionleader"] {
        assert_same_acl(&acl_of(&anonymous, path).await.0, &shared, path);
    }
    let election_ns = format!("/sync/regionleader/{namespace}");
    let dir = owner.leader_path(&LockId::new("scheduler").unwrap());
    let node = only_child(&anonymous, &dir).await;
    let owner_raw = raw(&chrooted, Some(&A)).await;
    for path in [&election_ns, &dir, &node] {
        assert_same_acl(
            &acl_of(&anonymous, path).await.0,
            &protected_seen_by_others(&A),
            path,
        );
        assert_same_acl(&acl_of(&owner_raw, path).await.0, &protected(&A), path);
    }
    for observer in [&anonymous, &stranger] {
        assert_no_auth(observer.delete(&node, None).await, "deleting the leader");
        assert_no_auth(
            observer.delete(&election_ns, None).await,
            "deleting a service's election namespace",
        );
        assert_no_auth(
            observer.delete("/sync/regionleader", None).await,
            "deleting a shared root",
        );
    }

    // Another service, with its own credentials, elects its own leader under the same roots.
    let other_namespace = namespace_other(&namespace);
    let other = backend_as(&chrooted, &other_namespace, &B, &[]).await;
    let other_leadership = within(
        BOUND,
        "another service's election",
        other.leader("scheduler"),
    )
    .await
    .unwrap();
    other_leadership.rescind().await;

    assert!(
        tokio::time::timeout(Duration::from_millis(50), leadership.rescinded())
            .await
            .is_err(),
        "the leader was told its term ended"
    );
    leadership.rescind().await;
    assert!(
        anonymous
            .list_children(&dir)
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

fn namespace_other(namespace: &Namespace) -> Namespace {
    Namespace::new(format!("{namespace}_other")).unwrap()
}

/// Two services with different credentials that list each other as peers take turns on one
/// lock and one leadership, each releasing its own node in paths the other created; a third
/// identity that is no peer is refused with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_different_credentials_contend_for_one_lock_and_one_leadership() {
    let namespace = namespace();
    let hosts = hosts();
    let a = backend_as(&hosts, &namespace, &A, &[&B]).await;
    let b = backend_as(&hosts, &namespace, &B, &[&A]).await;

    // The lock: a holds, b is refused, then waits and gets it when a releases.
    let held = a.lock("close").acquire().await.unwrap();
    let refused = b
        .lock("close")
        .wait_for(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SyncError::Contended { .. }),
        "{refused:?}"
    );
    let waiter = b.clone();
    let waiting = tokio::spawn(async move { waiter.lock("close").wait_for(BOUND).acquire().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a_token = held.fencing_token();
    held.unlock().await.unwrap();
    let b_held = within(BOUND, "b's acquire after a's release", waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(b_held.fencing_token() > a_token);

    // A stranger can neither join nor delete b's node.
    let c = backend_as(&hosts, &namespace, &C, &[]).await;
    let refused = c
        .lock("close")
        .wait_for(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(is_no_auth(&refused), "{refused:?}");
    let stranger = raw(&hosts, Some(&C)).await;
    let node = only_child(&stranger, &b.lock_path(&LockId::new("close").unwrap())).await;
    assert_no_auth(stranger.delete(&node, None).await, "deleting b's holder");
    // b releases its own node in a path a created.
    b_held.unlock().await.unwrap();

    // The leadership: a leads, b stands, a rescinds, b is elected and rescinds.
    let a_term = within(BOUND, "a's election", a.leader("scheduler"))
        .await
        .unwrap();
    let candidate = b.clone();
    let standing = tokio::spawn(async move { candidate.leader("scheduler").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!standing.is_finished(), "b was elected while a led");
    let a_token = a_term.fencing_token();
    a_term.rescind().await;
    let b_term = within(BOUND, "b's election after a's rescind", standing)
        .await
        .unwrap()
        .unwrap();
    assert!(b_term.fencing_token() > a_token);
    b_term.rescind().await;
    let dir = b.leader_path(&LockId::new("scheduler").unwrap());
    assert!(
        stranger
            .list_children(&dir)
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// Bad credentials are refused at `connect` with `InvalidConfig` naming the setting, before
/// any session is opened, and the refused password appears in no message.
#[tokio::test]
async fn bad_credentials_are_refused_with_invalid_config() {
    let hosts = hosts();
    let namespace = namespace();
    let builder = || ZkLockBackend::builder(hosts.clone(), namespace.clone());
    for (bad, field) in [
        (
            builder().digest_credentials("", "hunter2"),
            "digest_credentials",
        ),
        (
            builder().digest_credentials("svc:a", "hunter2"),
            "digest_credentials",
        ),
        (
            builder().digest_credentials("svc-a", ""),
            "digest_credentials",
        ),
        (builder().peer_digest(B.id()), "digest_credentials"),
        (
            builder()
                .digest_credentials("svc-a", "hunter2")
                .peer_digest("svc-b:hunter2"),
            "peer_digest",
        ),
    ] {
        let error = bad.connect().await.unwrap_err();
        assert!(
            matches!(error, SyncError::InvalidConfig { field: got, .. } if got == field),
            "{field}: {error:?}"
        );
        let platform = kernel_errors::Error::from(error.clone());
        assert_eq!(platform.kind(), kernel_errors::Kind::BadRequest);
        assert_eq!(platform.code(), kernel_sync::codes::INVALID_CONFIG);
        assert!(
            !format!("{error} {error:?}").contains("hunter2"),
            "{error:?}"
        );
    }
}
