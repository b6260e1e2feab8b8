//! The echo built with the kernel, as a team would build a service and its callers, with the
//! default middleware on: per-caller admission (the server's, always on), a circuit breaker
//! per endpoint and a retry budget (the client's defaults), every outcome counted and timed by
//! the in-memory aggregator that feeds `stats`, and a `tracing` subscriber at `info`.
//!
//! Over RabbitMQ the server and the client are two processes (`kernel-server`,
//! `kernel-client`); `inproc` puts both in one process on the in-process broker.

use std::sync::Arc;
use std::time::Duration;

use kernel::inst::MemoryInstrumenter;
use kernel::proto::examples::{HelloRequest, HelloResponse};
use kernel::server::{REPLY_CACHE_GENERATION, REPLY_CACHE_TTL};
use kernel::transport::{AmqpTransport, InProcessBroker, Transport, WorkQueueType};
use kernel::{Client, Endpoint, Error, Request, Service};
use tokio::sync::oneshot;

use crate::load::{self, Echo, Pace};
use crate::report::Line;

/// The echo service's capacity: requests it runs at once (it takes four times as many from
/// the broker).
pub(crate) const CAPACITY: u16 = 256;
/// How long a service may take to consume its queue.
const STARTUP: Duration = Duration::from_secs(60);
/// The name the clients call as (admission shares capacity by caller).
const CALLER: &str = "kernel-bench.client";

/// The handler: the request's name comes back as the greeting.
async fn echo(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    Ok(HelloResponse {
        greeting: request.into_message().name,
        served_by: String::new(),
    })
}

/// What every call sends.
fn hello() -> HelloRequest {
    HelloRequest {
        name: "bench".into(),
    }
}

/// Log lines at `info` on stdout, as `kernel::telemetry::init` sets up a service (`RUST_LOG`
/// may change the level; the driver pins it to `info`).
fn telemetry() -> Result<kernel::telemetry::Telemetry, Error> {
    kernel::telemetry::init("kernel-bench", &kernel::telemetry::LogConfig::default())
}

/// A client on `transport` with the default breaker and retry budget, recording into its own
/// in-memory aggregator.
fn client(transport: impl Transport) -> crate::Result<Client> {
    Ok(Client::builder(transport)
        .calling_as(CALLER)
        .instrumenter(Arc::new(MemoryInstrumenter::new()))
        .build()?)
}

/// Starts serving the echo service `name` on `transport`; returns once it consumes its queue.
async fn start(
    name: &str,
    transport: impl Transport,
    capacity: u16,
    shutdown: oneshot::Receiver<()>,
) -> crate::Result<tokio::task::JoinHandle<Result<(), Error>>> {
    let service = Service::builder(name, &client(transport)?)
        .description("Echoes the name it is given, for the benchmarks")
        .endpoint(Endpoint::new("echo", echo).open())
        .capacity(capacity)
        .build()?;
    let mut serving = tokio::spawn(service.clone().serve_with_shutdown(shutdown));
    tokio::select! {
        () = service.serving() => Ok(serving),
        ended = &mut serving => Err(format!("{name} stopped before serving: {ended:?}").into()),
        () = tokio::time::sleep(STARTUP) => Err(format!("{name} did not serve within {STARTUP:?}").into()),
    }
}

/// `kernel-server`: serves the echo service `name` over RabbitMQ until the process ends.
pub(crate) async fn serve(
    url: &str,
    name: &str,
    capacity: u16,
    work_queues: WorkQueueType,
) -> crate::Result<()> {
    let _telemetry = telemetry()?;
    let (_keep_serving, shutdown) = oneshot::channel();
    let transport = AmqpTransport::builder(url)
        .work_queues(work_queues)
        .connect()
        .await?;
    let serving = start(name, transport, capacity, shutdown).await?;
    Line::Ready {
        role: "kernel-server",
        pid: std::process::id(),
        // The longest a note stays: the window, and up to two generations more.
        reply_cache_window_ms: Some((REPLY_CACHE_TTL + 2 * REPLY_CACHE_GENERATION).as_millis()),
    }
    .print()?;
    serving.await??;
    Err(format!("{name} stopped serving").into())
}

/// `kernel-client`: measures calls to the echo service `name` over RabbitMQ.
pub(crate) async fn call(
    url: &str,
    name: &str,
    concurrency: usize,
    pace: &Pace,
) -> crate::Result<()> {
    let _telemetry = telemetry()?;
    let echo = KernelEcho {
        client: client(AmqpTransport::connect(url).await?)?,
        service: name.to_owned(),
        request: hello(),
    };
    let measured = load::measure("kernel", Arc::new(echo), concurrency, pace).await?;
    Line::Result(measured).print()
}

/// `inproc`: for each concurrency, a fresh echo service and client on a fresh in-process
/// broker, measured; one result line each.
pub(crate) async fn in_process(concurrencies: &[usize], pace: &Pace) -> crate::Result<()> {
    let _telemetry = telemetry()?;
    for &concurrency in concurrencies {
        let broker = InProcessBroker::new();
        let name = "kernel-bench.inproc";
        let (stop, shutdown) = oneshot::channel();
        let serving = start(name, broker.connect(), CAPACITY, shutdown).await?;
        let echo = KernelEcho {
            client: client(broker.connect())?,
            service: name.to_owned(),
            request: hello(),
        };
        let measured = load::measure("inproc", Arc::new(echo), concurrency, pace).await;
        let _ = stop.send(());
        serving.await??;
        Line::Result(measured?).print()?;
    }
    Ok(())
}

/// A kernel caller: shared by every caller task.
struct KernelEcho {
    client: Client,
    service: String,
    request: HelloRequest,
}

impl Echo for KernelEcho {
    async fn call(&self) -> Result<(), String> {
        self.client
            .call::<HelloResponse>(&self.service, "echo", &self.request)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn raw_and_kernel_send_the_same_request_bytes() {
        assert_eq!(hello().encode_to_vec(), crate::raw::PAYLOAD);
    }

    #[tokio::test]
    async fn the_in_process_echo_answers() {
        let broker = InProcessBroker::new();
        let (stop, shutdown) = oneshot::channel();
        let serving = start("echo.test", broker.connect(), 8, shutdown)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let client = client(broker.connect()).unwrap_or_else(|e| panic!("{e}"));
        let reply: HelloResponse = client
            .call("echo.test", "echo", &hello())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.greeting, "bench");
        let _ = stop.send(());
        assert!(serving.await.is_ok_and(|served| served.is_ok()));
    }
}
