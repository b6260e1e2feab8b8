//! The Prometheus and Kubernetes-probe listener a service runs while it serves
//! (feature `prometheus`).

use std::sync::Arc;

use kernel_errors::Error;
use kernel_inst::http::{Probes, serve_probes};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::codes::PROBE_LISTEN;
use crate::ops::Operations;
use crate::service::Inner;

/// A running listener: stopped with [`stop`].
pub(crate) type Running = Option<(oneshot::Sender<()>, JoinHandle<()>)>;

struct Readiness(Arc<Operations>);

impl Probes for Readiness {
    fn ready(&self) -> bool {
        self.0.ready()
    }
}

/// Binds and starts the listener, if the service has one.
pub(crate) async fn start(inner: &Inner) -> Result<Running, Error> {
    let Some((listen, metrics)) = &inner.prometheus else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| {
            Error::internal_server_error(
                PROBE_LISTEN,
                format!("cannot listen on {listen}: {error}"),
            )
        })?;
    tracing::info!(service = %inner.name, %listen, "serving /metrics, /healthz and /readyz");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_probes(
        listener,
        metrics.clone(),
        Arc::new(Readiness(Arc::clone(&inner.ops))),
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Some((stop, task)))
}

/// Stops the listener and waits for it.
pub(crate) async fn stop(running: Running) {
    if let Some((stop, task)) = running {
        let _ = stop.send(());
        if let Err(error) = task.await {
            tracing::warn!(%error, "the probe listener failed");
        }
    }
}
