//! Proves `KERNEL_CASSANDRA_HOSTS` is a real Cassandra: keyspace, insert, select, and a
//! lightweight transaction (which the global lock will need).
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

async fn session() -> Session {
    let hosts = kernel_testkit::engine_address("KERNEL_CASSANDRA_HOSTS");
    let builder = SessionBuilder::new()
        .known_nodes(hosts.split(','))
        .connection_timeout(Duration::from_secs(10));
    let Ok(session) = tokio::time::timeout(Duration::from_secs(30), builder.build()).await else {
        panic!("no CQL session with {hosts} within 30 s");
    };
    session.unwrap()
}

/// A row inserted into a new keyspace reads back; a conditional insert of the same key is not
/// applied, which only a real Paxos-capable node answers.
#[tokio::test]
async fn a_row_is_written_and_read_back_on_a_real_cassandra() {
    let session = session().await;
    let keyspace = kernel_testkit::unique("smoke").replace('.', "_");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            (),
        )
        .await
        .unwrap();
    session
        .query_unpaged(
            format!("CREATE TABLE {keyspace}.greetings (id int PRIMARY KEY, text text)"),
            (),
        )
        .await
        .unwrap();
    session
        .query_unpaged(
            format!("INSERT INTO {keyspace}.greetings (id, text) VALUES (?, ?)"),
            (1_i32, "hello, cassandra"),
        )
        .await
        .unwrap();

    let rows = session
        .query_unpaged(
            format!("SELECT id, text FROM {keyspace}.greetings WHERE id = ?"),
            (1_i32,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let found: Vec<(i32, String)> = rows
        .rows::<(i32, String)>()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(found, [(1, "hello, cassandra".to_owned())]);

    let lwt = session
        .query_unpaged(
            format!("INSERT INTO {keyspace}.greetings (id, text) VALUES (?, ?) IF NOT EXISTS"),
            (1_i32, "again"),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    // A conditional write that is not applied returns `[applied] = false` and the row that
    // stopped it.
    let (applied, id, text) = lwt
        .first_row::<(bool, Option<i32>, Option<String>)>()
        .unwrap();
    assert!(
        !applied,
        "a conditional insert of an existing key is not applied"
    );
    assert_eq!((id, text.as_deref()), (Some(1), Some("hello, cassandra")));

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await
        .unwrap();
}
