//! Locks and a leader from configuration: a region lock on ZooKeeper when `KERNEL_ZK_HOSTS`
//! is set, the global lock on Cassandra when `KERNEL_CASSANDRA_HOSTS` is set.
//!
//! ```sh
//! set -a; eval "$(cargo xtask services up)"; set +a
//! # The test engines are single nodes: a keyspace of replication factor 1.
//! export KERNEL_SYNC__CASSANDRA_KEYSPACE=kernel_example KERNEL_SYNC__CASSANDRA_REPLICATION_FACTOR=1
//! cargo run --example locks --features zookeeper,cassandra
//! ```
#![allow(clippy::print_stdout)] // an example speaks on stdout

use std::time::Duration;

use kernel::sync::{ElectionExt as _, LockBackendExt as _};
use kernel::{Error, Locks};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let locks = Locks::from_env("com.example.locks").await?;

    match &locks.region {
        Some(zookeeper) => {
            let guard = zookeeper
                .lock("nightly-report")
                .wait_for(Duration::from_secs(5))
                .acquire()
                .await?;
            println!(
                "region lock {} held, fencing token {}",
                guard.id(),
                guard.fencing_token()
            );
            guard.unlock().await?;

            let leadership = zookeeper.leader("scheduler").await?;
            println!(
                "leader of {}, term {}",
                leadership.id(),
                leadership.fencing_token()
            );
            leadership.rescind().await;
        }
        None => println!("KERNEL_ZK_HOSTS is not set: no region locks"),
    }

    match &locks.global {
        Some(cassandra) => {
            let guard = cassandra
                .lock("monthly-billing")
                .wait_for(Duration::from_secs(5))
                .acquire()
                .await?;
            println!(
                "global lock {} held, fencing token {}",
                guard.id(),
                guard.fencing_token()
            );
            guard.unlock().await?;
        }
        None => println!("KERNEL_CASSANDRA_HOSTS is not set: no global lock"),
    }
    Ok(())
}
