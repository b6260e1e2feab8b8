//! The lock engines' health checks against the real ZooKeeper and Cassandra
//! (`cargo xtask services up`), reported by a service's `health`.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::time::Duration;

use kernel::prelude::*;
use kernel::proto::examples::{HelloRequest, HelloResponse};
use kernel::proto::platform::{HealthRequest, HealthResponse, HealthStatus};
use kernel::sync::{CassandraGlobalLock, Namespace, ZkLockBackend};
use kernel::transport::InProcessTransport;
use kernel_testkit::{Proxy, bounded, engine_address, unique};

async fn hello(_: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    Ok(HelloResponse::default())
}

/// The samples of a service with `checks`, run now, as a caller sees them.
async fn health_with(checks: Vec<kernel::server::HealthCheck>) -> HealthResponse {
    let client = Client::new(InProcessTransport::new());
    let name = unique("sync.checks");
    let mut builder =
        Service::builder(&name, &client).endpoint(Endpoint::new("hello", hello).open());
    for check in checks {
        builder = builder.health_check(check);
    }
    let service = builder.build().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let health = bounded("health", async {
        loop {
            let asked = client
                .call::<HealthResponse>(&name, "health", &HealthRequest { run_now: true })
                .await;
            match asked {
                Ok(health) => break health,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    stop.send(()).unwrap();
    bounded("the service to stop", running)
        .await
        .unwrap()
        .unwrap();
    health
}

fn status(health: &HealthResponse, id: &str) -> (HealthStatus, String) {
    let check = health
        .checks
        .iter()
        .find(|check| check.id == id)
        .unwrap_or_else(|| panic!("{id} missing from {health:?}"));
    (check.status(), check.error_message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_and_cassandra_are_healthy_when_they_answer() {
    let namespace = Namespace::new(unique("checks").replace('.', "_")).unwrap();
    let zookeeper = bounded(
        "a ZooKeeper session",
        ZkLockBackend::builder(engine_address("KERNEL_ZK_HOSTS"), namespace.clone()).connect(),
    )
    .await
    .unwrap();
    let cassandra = bounded(
        "a Cassandra session",
        CassandraGlobalLock::builder(engine_address("KERNEL_CASSANDRA_HOSTS"), namespace)
            .keyspace("kernel_checks")
            .replication_factor(1)
            .connect(),
    )
    .await
    .unwrap();
    let health = health_with(vec![
        kernel::checks::zookeeper(zookeeper),
        kernel::checks::cassandra(cassandra),
    ])
    .await;
    assert_eq!(
        status(&health, "kernel.sync.zookeeper").0,
        HealthStatus::Healthy
    );
    assert_eq!(
        status(&health, "kernel.sync.cassandra").0,
        HealthStatus::Healthy
    );
    assert!(health.healthy, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_zookeeper_is_reported_unhealthy_within_the_timeout() {
    let proxy = Proxy::start(&engine_address("KERNEL_ZK_HOSTS")).await;
    let namespace = Namespace::new(unique("checks").replace('.', "_")).unwrap();
    let zookeeper = bounded(
        "a ZooKeeper session through the proxy",
        ZkLockBackend::builder(proxy.address(), namespace)
            .session_timeout(Duration::from_secs(30))
            .connect(),
    )
    .await
    .unwrap();
    proxy.cut();
    let check = kernel::checks::zookeeper(zookeeper).timeout(Duration::from_millis(500));
    let health = health_with(vec![check]).await;
    let (status, why) = status(&health, "kernel.sync.zookeeper");
    assert_eq!(status, HealthStatus::Unhealthy, "{health:?}");
    assert!(why.contains("timed out"), "{why}");
    assert!(!health.healthy);
}

/// `Locks` connects what `[sync]` names, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_come_from_the_sync_section() {
    use kernel::sync::{LockBackendExt as _, SyncConfig};

    let none = kernel::Locks::from_config(&SyncConfig::default(), "com.example.locks")
        .await
        .unwrap();
    assert!(none.region.is_none() && none.global.is_none());

    let config: SyncConfig = serde_json::from_value(serde_json::json!({
        "zookeeper_hosts": engine_address("KERNEL_ZK_HOSTS"),
        "cassandra_hosts": engine_address("KERNEL_CASSANDRA_HOSTS"),
        "cassandra_keyspace": "kernel_checks",
        "cassandra_replication_factor": 1,
    }))
    .unwrap();
    let namespace = unique("locks").replace('.', "_");
    let locks = bounded(
        "both backends",
        kernel::Locks::from_config(&config, &namespace),
    )
    .await
    .unwrap();
    let region = locks.region.expect("ZooKeeper configured");
    let guard = bounded("a region lock", region.lock("a").acquire())
        .await
        .unwrap();
    guard.unlock().await.unwrap();
    let global = locks.global.expect("Cassandra configured");
    let guard = bounded("a global lock", global.lock("a").acquire())
        .await
        .unwrap();
    guard.unlock().await.unwrap();

    let refused = kernel::Locks::from_config(&config, "not a namespace!").await;
    assert_eq!(refused.unwrap_err().code(), "kernel.sync.invalidnamespace");
}
