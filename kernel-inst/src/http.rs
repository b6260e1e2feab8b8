//! The probe listener: `/metrics`, `/healthz` and `/readyz` over HTTP/1.1.
//!
//! [`serve_probes`] answers a Prometheus scraper and an orchestrator's liveness and readiness
//! probes on a listener the caller binds, until a shutdown future completes:
//!
//! ```text
//! GET /metrics  200  text/plain; version=0.0.4   PrometheusInstrumenter::render()
//! GET /healthz  200 "ok"     when Probes::live(),  else 503 "not live"
//! GET /readyz   200 "ready"  when Probes::ready(), else 503 "not ready"
//! GET other     404 "not found"
//! POST /metrics 405 "method not allowed", Allow: GET    (any method but GET on those paths)
//! ```
//!
//! Each connection serves one request and closes (probes and scrapers open one per request
//! anyway), so a connection cannot be held by keep-alive. A client gets
//! [`HEADER_READ_TIMEOUT`] to send its request head and [`CONNECTION_TIMEOUT`] for the whole
//! exchange, and at most [`MAX_CONNECTIONS`] are served at once; further clients wait in the
//! listen backlog. Nothing here binds an address of its own choosing or reads the
//! environment.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use kernel_inst::http::{Probes, serve_probes};
//! use kernel_inst::{Instrumenter, PrometheusInstrumenter};
//!
//! /// Ready once the service has connected to its broker.
//! struct Connected(AtomicBool);
//!
//! impl Probes for Connected {
//!     fn ready(&self) -> bool {
//!         self.0.load(Ordering::Relaxed)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let metrics = PrometheusInstrumenter::new();
//! metrics.counter("server.inbound", 1, 1.0);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let probes = Arc::new(Connected(AtomicBool::new(true)));
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve_probes(listener, metrics, probes, stopped));
//! // ... serve until asked to stop:
//! let _ = stop.send(());
//! server.await?;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::PrometheusInstrumenter;

/// How long a client has to send its request line and headers before it is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection may last, request and response included, before it is closed.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections are served at once; further clients wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// How long to pause accepting after an error that is not one connection's (e.g. out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The `Content-Type` of the Prometheus text exposition.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the process says about itself to `/healthz` and `/readyz`.
///
/// A process is *live* while it can make progress at all: an orchestrator restarts it when
/// it is not. It is *ready* while it should receive work (connected to its broker, warmed
/// up, not draining): an orchestrator takes it out of rotation while it is not, without
/// restarting it. Both are read on the listener's task for every probe, so they must be
/// cheap and must not block (read an atomic, not a database).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use kernel_inst::http::Probes;
///
/// struct Draining(AtomicBool);
///
/// impl Probes for Draining {
///     fn ready(&self) -> bool {
///         !self.0.load(Ordering::Relaxed)
///     }
/// }
///
/// let probes = Draining(AtomicBool::new(false));
/// assert!(probes.live() && probes.ready());
/// ```
pub trait Probes: Send + Sync + 'static {
    /// Whether the process can make progress; `true` unless overridden.
    fn live(&self) -> bool {
        true
    }

    /// Whether the process should receive work now.
    fn ready(&self) -> bool;
}

impl<T: Probes + ?Sized> Probes for Arc<T> {
    fn live(&self) -> bool {
        (**self).live()
    }

    fn ready(&self) -> bool {
        (**self).ready()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes.
///
/// See the [module docs](self) for the routes and the bounds on each connection. Once
/// `shutdown` completes, no connection is accepted any more, connections waiting for their
/// request are closed, requests in progress are answered, and the future resolves: within
/// [`CONNECTION_TIMEOUT`] at worst.
///
/// An error accepting one connection (reset before it was accepted) skips it; any other
/// accept error (out of file descriptors or memory) is logged with `tracing` and retried after
/// a pause, so the listener outlives the condition. Serving therefore never fails.
///
/// # Cancellation safety
///
/// Dropping the future closes the listener and aborts the connections in progress: nothing it
/// started outlives it.
pub async fn serve_probes(
    listener: TcpListener,
    metrics: PrometheusInstrumenter,
    probes: Arc<dyn Probes>,
    shutdown: impl Future,
) {
    let routes = Arc::new(Routes { metrics, probes });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // Reap finished connections, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => {
                slot.expect("the connection semaphore is never closed")
            }
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "probe listener cannot accept; pausing");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            }
        };
        let routes = Arc::clone(&routes);
        let service = service_fn(move |request| {
            let response = routes.respond(&request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "probe connection failed"),
                Err(_) => tracing::debug!("probe connection timed out"),
            }
        });
    }

    drop(listener);
    graceful.shutdown().await;
}

/// Errors that concern the one connection being accepted, not the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// What every connection answers from.
struct Routes {
    metrics: PrometheusInstrumenter,
    probes: Arc<dyn Probes>,
}

impl Routes {
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let answer: fn(&Self) -> Response<Full<Bytes>> = match request.uri().path() {
            "/metrics" => Self::metrics,
            "/healthz" => Self::healthz,
            "/readyz" => Self::readyz,
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        };
        if request.method() != Method::GET {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        answer(self)
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::from(self.metrics.render()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
        response
    }

    fn healthz(&self) -> Response<Full<Bytes>> {
        if self.probes.live() {
            text(StatusCode::OK, "ok\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "not live\n")
        }
    }

    fn readyz(&self) -> Response<Full<Bytes>> {
        if self.probes.ready() {
            text(StatusCode::OK, "ready\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_object_safe_and_shareable() {
        struct Always;
        impl Probes for Always {
            fn ready(&self) -> bool {
                true
            }
        }
        fn assert_bounds<T: Probes + Clone>(_: &T) {}
        let shared: Arc<dyn Probes> = Arc::new(Always);
        assert_bounds(&shared);
        assert!(shared.live() && shared.ready());
    }
}
