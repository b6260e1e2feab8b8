//! Proves `KERNEL_ZK_HOSTS` is a real ZooKeeper: create, read back and delete a znode.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::time::Duration;

use zookeeper_client::{Acls, Client, CreateMode, Error};

/// A znode created with data reads back the same data and a matching stat, and is gone after
/// delete.
#[tokio::test]
async fn a_znode_is_created_read_and_deleted_on_a_real_zookeeper() {
    let hosts = kernel_testkit::engine_address("KERNEL_ZK_HOSTS");
    let client = tokio::time::timeout(Duration::from_secs(10), Client::connect(&hosts))
        .await
        .unwrap_or_else(|_| panic!("no ZooKeeper session with {hosts} within 10 s"))
        .unwrap();
    let path = format!("/{}", kernel_testkit::unique("smoke").replace('.', "_"));

    let (created, _) = client
        .create(
            &path,
            b"hello, zookeeper",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    let (data, stat) = client.get_data(&path).await.unwrap();
    assert_eq!(data, b"hello, zookeeper");
    assert_eq!(stat.czxid, created.czxid);
    assert!(stat.czxid > 0, "a real server assigns a transaction id");

    client.delete(&path, Some(stat.version)).await.unwrap();
    assert!(matches!(client.get_data(&path).await, Err(Error::NoNode)));
}
