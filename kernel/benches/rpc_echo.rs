//! Calls per second through the kernel over RabbitMQ, against a raw lapin echo over the same
//! broker, measured in the same run, at concurrency 1 and 64. Prints the ratio (the target of
//! the performance issue is at least 0.85).
//!
//! `cargo xtask bench -- rpc_echo` (needs `KERNEL_AMQP_URL`, which `cargo xtask bench` sets).
//!
//! - **raw**: a lapin consumer on a queue answers each request by publishing the body back to
//!   its `reply_to` and acking; each caller task owns an exclusive reply queue, publishes and
//!   awaits the next delivery. No confirms, no headers, no correlation map: the floor.
//! - **kernel**: `Client::call` to a `Service` with one echo endpoint, both on
//!   `AmqpTransport`: mandatory publishes with confirms, headers, deadlines, correlation.
//! - **in_process** (for reference, no ratio): the same on the in-process broker, i.e. what
//!   the kernel's own client and server cost without a network.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark, not a library

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures_util::StreamExt;
use kernel::proto::examples::{HelloRequest, HelloResponse};
use kernel::transport::{AmqpTransport, InProcessBroker, Transport};
use kernel::{Client, Endpoint, Error, Request, Service};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const CONCURRENCY: [usize; 2] = [1, 64];

fn main() {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = runtime.block_on(RawEcho::start(&url));
    let kernel = runtime.block_on(KernelEcho::start(&url));
    let embedded = runtime.block_on(KernelEcho::in_process());

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    // Which variants were measured in this run (a name filter may skip some).
    let measured = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut group = criterion.benchmark_group("rpc_echo");
    for concurrency in CONCURRENCY {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("raw/{concurrency}"), |b| {
            measured.borrow_mut().insert(format!("raw/{concurrency}"));
            b.iter_custom(|calls| runtime.block_on(raw.run(calls, concurrency)));
        });
        group.bench_function(format!("kernel/{concurrency}"), |b| {
            measured
                .borrow_mut()
                .insert(format!("kernel/{concurrency}"));
            b.iter_custom(|calls| runtime.block_on(kernel.run(calls, concurrency)));
        });
        // For reference (no ratio): the kernel on the in-process broker.
        group.bench_function(format!("in_process/{concurrency}"), |b| {
            b.iter_custom(|calls| runtime.block_on(embedded.run(calls, concurrency)));
        });
    }
    group.finish();
    criterion.final_summary();
    // Under `cargo test` (or `--test`, `--list`) criterion measures nothing: no ratio then.
    if kernel_testkit::bench::measuring() {
        report(&measured.borrow());
    }
}

/// Runs `calls` calls split over `concurrency` tasks; returns the wall time for all of them.
async fn spread<F, Fut>(calls: u64, concurrency: usize, call: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let per_task = calls.div_ceil(concurrency as u64);
    let started = Instant::now();
    futures_util::future::join_all((0..concurrency).map(|task| {
        let call = &call;
        async move {
            for _ in 0..per_task {
                call(task).await;
            }
        }
    }))
    .await;
    // Report the time per call as if exactly `calls` had run.
    started
        .elapsed()
        .mul_f64(calls as f64 / (per_task * concurrency as u64) as f64)
}

struct RawEcho {
    _server: Connection,
    queue: String,
    callers: Vec<RawCaller>,
}

struct RawCaller {
    channel: Channel,
    reply_queue: String,
    replies: tokio::sync::Mutex<lapin::Consumer>,
}

impl RawEcho {
    async fn start(url: &str) -> Self {
        let server = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = server.create_channel().await.unwrap();
        let queue = kernel_testkit::unique("bench.raw");
        channel
            .basic_qos(64, BasicQosOptions::default())
            .await
            .unwrap();
        let options = QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await
            .unwrap();
        let mut requests = channel
            .basic_consume(
                queue.as_str().into(),
                "echo".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let replier = channel.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = requests.next().await {
                let reply_to = delivery.properties.reply_to().clone().unwrap_or_default();
                replier
                    .basic_publish(
                        "".into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &delivery.data,
                        BasicProperties::default(),
                    )
                    .await
                    .unwrap();
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
            }
        });

        let client = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let mut callers = Vec::new();
        for _ in 0..*CONCURRENCY.iter().max().unwrap() {
            let channel = client.create_channel().await.unwrap();
            let reply_queue = kernel_testkit::unique("bench.raw.reply");
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            channel
                .queue_declare(
                    reply_queue.as_str().into(),
                    exclusive,
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let replies = channel
                .basic_consume(
                    reply_queue.as_str().into(),
                    "replies".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            callers.push(RawCaller {
                channel,
                reply_queue,
                replies: tokio::sync::Mutex::new(replies),
            });
        }
        std::mem::forget(client); // keep the callers' connection open for the whole run
        RawEcho {
            _server: server,
            queue,
            callers,
        }
    }

    async fn run(&self, calls: u64, concurrency: usize) -> Duration {
        let body = HelloRequest {
            name: "bench".into(),
        };
        let body = prost::Message::encode_to_vec(&body);
        spread(calls, concurrency, |task| {
            let caller = &self.callers[task];
            let body = &body;
            async move {
                let properties =
                    BasicProperties::default().with_reply_to(caller.reply_queue.as_str().into());
                caller
                    .channel
                    .basic_publish(
                        "".into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        body,
                        properties,
                    )
                    .await
                    .unwrap();
                caller.replies.lock().await.next().await.unwrap().unwrap();
            }
        })
        .await
    }
}

struct KernelEcho {
    client: Client,
    service: String,
}

impl KernelEcho {
    /// The echo service and a client, each on its own connection to the broker at `url`.
    async fn start(url: &str) -> Self {
        let server_side = Arc::new(AmqpTransport::connect(url).await.unwrap());
        let client_side = Arc::new(AmqpTransport::connect(url).await.unwrap());
        Self::on(server_side, client_side).await
    }

    /// The same on the embedded in-process broker: what the kernel itself costs, no network.
    async fn in_process() -> Self {
        let broker = InProcessBroker::new();
        Self::on(Arc::new(broker.connect()), Arc::new(broker.connect())).await
    }

    async fn on(server_side: Arc<dyn Transport>, client_side: Arc<dyn Transport>) -> Self {
        let service = kernel_testkit::unique("bench.kernel");
        let server_client = Client::new(server_side);
        let echo = |request: Request<HelloRequest>| async move {
            Ok::<_, Error>(HelloResponse {
                greeting: request.into_message().name,
                served_by: String::new(),
            })
        };
        let server = Service::builder(&service, &server_client)
            .endpoint(Endpoint::new("echo", echo).open())
            .capacity(64)
            .build()
            .unwrap();
        tokio::spawn(server.serve());
        let client = Client::new(client_side);
        // Wait until the service consumes (a call succeeds).
        let probe = HelloRequest {
            name: "probe".into(),
        };
        kernel_testkit::bounded("the echo service to start", async {
            while client
                .call::<HelloResponse>(&service, "echo", &probe)
                .await
                .is_err()
            {}
        })
        .await;
        KernelEcho { client, service }
    }

    async fn run(&self, calls: u64, concurrency: usize) -> Duration {
        let request = HelloRequest {
            name: "bench".into(),
        };
        spread(calls, concurrency, |_| async {
            let _: HelloResponse = self
                .client
                .call(&self.service, "echo", &request)
                .await
                .unwrap();
        })
        .await
    }
}

/// Prints calls per second of each variant and the kernel/raw ratio, from criterion's own
/// estimates of this run.
fn report(measured: &std::collections::BTreeSet<String>) {
    let per_second = |id: &str| {
        kernel_testkit::bench::mean_nanos("rpc_echo", id).map(|nanos_per_call| 1e9 / nanos_per_call)
    };
    println!("\nrpc_echo: calls per second, same run (target: kernel/raw >= 0.85)");
    for concurrency in CONCURRENCY {
        let (raw_id, kernel_id) = (
            format!("raw/{concurrency}"),
            format!("kernel/{concurrency}"),
        );
        if let Some(skipped) = kernel_testkit::bench::unmeasured(measured, &[&raw_id, &kernel_id]) {
            println!(
                "  concurrency {concurrency:>2}: no ratio, {skipped} not measured in this run (skipped by the name filter)"
            );
            continue;
        }
        match (per_second(&raw_id), per_second(&kernel_id)) {
            (Some(raw), Some(kernel)) => println!(
                "  concurrency {concurrency:>2}: raw {raw:>8.0}/s  kernel {kernel:>8.0}/s  ratio {:.2}",
                kernel / raw
            ),
            _ => println!("  concurrency {concurrency:>2}: no criterion estimates found"),
        }
    }
}
