//! Health checks for the lock engines a service uses: add them with
//! [`ServiceBuilder::health_check`](kernel_server::ServiceBuilder::health_check).

#[cfg(any(feature = "zookeeper", feature = "cassandra"))]
use kernel_server::{HealthCheck, Measurements, Unhealthy};

/// `kernel.sync.zookeeper`: healthy while the ensemble answers a round trip on the backend's
/// session (a new session is opened if the last one ended).
///
/// ```no_run
/// # async fn example(zookeeper: kernel::sync::ZkLockBackend, client: kernel::Client) -> Result<(), kernel::Error> {
/// use kernel::prelude::*;
///
/// # async fn hello(_: Request<kernel::proto::examples::HelloRequest>) -> Result<kernel::proto::examples::HelloResponse, Error> { unimplemented!() }
/// let service = Service::builder("com.example.scheduler", &client)
///     .endpoint(Endpoint::new("hello", hello).open())
///     .health_check(kernel::checks::zookeeper(zookeeper))
///     .build()?;
/// # drop(service); Ok(()) }
/// # let _ = example;
/// ```
#[cfg(feature = "zookeeper")]
#[cfg_attr(docsrs, doc(cfg(feature = "zookeeper")))]
pub fn zookeeper(backend: kernel_sync::ZkLockBackend) -> HealthCheck {
    HealthCheck::new("kernel.sync.zookeeper", move || {
        let backend = backend.clone();
        async move {
            backend
                .ping()
                .await
                .map(|()| Measurements::new())
                .map_err(|error| Unhealthy::new(error.to_string()))
        }
    })
}

/// `kernel.sync.cassandra`: healthy while a node of the cluster answers a query.
#[cfg(feature = "cassandra")]
#[cfg_attr(docsrs, doc(cfg(feature = "cassandra")))]
pub fn cassandra(lock: kernel_sync::CassandraGlobalLock) -> HealthCheck {
    HealthCheck::new("kernel.sync.cassandra", move || {
        let lock = lock.clone();
        async move {
            lock.ping()
                .await
                .map(|()| Measurements::new())
                .map_err(|error| Unhealthy::new(error.to_string()))
        }
    })
}
