//! The Cassandra credential store on a real Cassandra (`KERNEL_CASSANDRA_HOSTS`): round
//! trips, unknown users, hashes never passwords, and the keyspace it creates.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel_auth::TokenSigner;
use kernel_login::scylla::client::session::Session;
use kernel_login::scylla::client::session_builder::SessionBuilder;
use kernel_login::{CassandraCredentialStore, CredentialStore, LoginService, StoredUser};

/// Cassandra creates keyspaces slowly on a small machine.
const BOUND: Duration = Duration::from_secs(120);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {BOUND:?}"))
}

/// A keyspace no other run uses (a letter, then letters, digits and `_`, at most 48).
fn unique_keyspace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!("login_test_{test}_{}_{nanos}", std::process::id())
}

async fn store(keyspace: &str) -> CassandraCredentialStore {
    let hosts = kernel_testkit::engine_address("KERNEL_CASSANDRA_HOSTS");
    within(
        "a Cassandra session with the users table",
        CassandraCredentialStore::builder(hosts)
            .keyspace(keyspace)
            .replication_factor(1)
            .connect(),
    )
    .await
    .unwrap()
}

async fn raw_session() -> Session {
    let hosts = kernel_testkit::engine_address("KERNEL_CASSANDRA_HOSTS");
    within(
        "a raw CQL session",
        SessionBuilder::new().known_nodes(hosts.split(',')).build(),
    )
    .await
    .unwrap()
}

async fn drop_keyspace(session: &Session, keyspace: &str) {
    within(
        "dropping the test keyspace",
        session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ()),
    )
    .await
    .unwrap();
}

/// A user put is got back whole, an unknown one is `None`, a put replaces; and a user made
/// by the login service is stored as an Argon2id hash that never contains the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_round_trip_and_passwords_are_stored_only_as_hashes() {
    let keyspace = unique_keyspace("users");
    let store = store(&keyspace).await;
    assert_eq!(store.get("nobody").await.unwrap(), None);
    let mut grace = StoredUser {
        user_id: "u-grace".into(),
        username: "grace".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        roles: vec!["CUSTOMER".into(), "ADMIN.DRIVER".into()],
    };
    store.put(grace.clone()).await.unwrap();
    assert_eq!(store.get("grace").await.unwrap(), Some(grace.clone()));
    grace.roles.clear();
    store.put(grace.clone()).await.unwrap();
    assert_eq!(
        store.get("grace").await.unwrap(),
        Some(grace),
        "replaced, and no roles reads back as no roles"
    );

    let password = "correct horse battery staple";
    let login = LoginService::builder(store.clone(), TokenSigner::generate("k").unwrap())
        .build()
        .unwrap();
    let ada = login.create_user("ada", password, ["ADMIN"]).await.unwrap();

    let session = raw_session().await;
    let rows = session
        .query_unpaged(
            format!(
                "SELECT user_id, password_hash, roles FROM {keyspace}.users WHERE username = 'ada'"
            ),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (user_id, hash, roles) = rows.single_row::<(String, String, Vec<String>)>().unwrap();
    assert_eq!(user_id, ada.user_id);
    assert_eq!(roles, ["ADMIN"]);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
    assert_eq!(store.get("ada").await.unwrap(), Some(ada));
    drop_keyspace(&session, &keyspace).await;
}

/// The store creates its keyspace with the replication factor it is given, and connecting
/// again to an existing keyspace reuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyspace_is_created_with_the_given_replication_factor() {
    let keyspace = unique_keyspace("rf");
    let first = store(&keyspace).await;
    first
        .put(StoredUser {
            user_id: "u1".into(),
            username: "ada".into(),
            password_hash: "$argon2id$x".into(),
            roles: vec![],
        })
        .await
        .unwrap();
    let second = store(&keyspace).await;
    assert!(second.get("ada").await.unwrap().is_some(), "the same table");

    let session = raw_session().await;
    let rows = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (&keyspace,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (replication,) = rows.single_row::<(HashMap<String, String>,)>().unwrap();
    assert_eq!(
        replication.get("replication_factor").map(String::as_str),
        Some("1")
    );
    assert!(
        replication["class"].ends_with("SimpleStrategy"),
        "{replication:?}"
    );

    let bad = CassandraCredentialStore::builder("127.0.0.1:1")
        .keyspace("users; DROP KEYSPACE system")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(bad, kernel_login::StoreError::InvalidSetting(_)),
        "{bad}"
    );
    drop_keyspace(&session, &keyspace).await;
}
