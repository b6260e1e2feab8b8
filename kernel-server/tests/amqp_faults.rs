//! Network faults between a process and RabbitMQ (real broker from `cargo xtask services up`,
//! reached through a loopback proxy that can drop or black-hole the connection): a call never
//! outlives its deadline, and clients and services recover once the broker is reachable again.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kernel_client::Client;
use kernel_errors::{Error, Kind};
use kernel_proto::examples::{HelloRequest, HelloResponse};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::AmqpTransport;
use tokio::sync::Notify;

/// How long the tests' calls may take in all.
const DEADLINE: Duration = Duration::from_secs(8);
/// Room for the runtime beyond a deadline before a test calls it a hang.
const MARGIN: Duration = Duration::from_secs(2);

async fn client_on(url: &str) -> Client {
    let transport = AmqpTransport::connect(url).await.unwrap();
    Client::builder(Arc::new(transport))
        .calling_as("test.caller")
        .deadline(DEADLINE)
        .attempt_timeout(Duration::from_secs(2))
        .attempts(3)
        .build()
        .unwrap()
}

/// A service whose `hello` tells `started` when it begins and answers after `pause`.
fn slow_greeter(
    name: &str,
    started: Arc<Notify>,
    pause: Duration,
    count: Arc<AtomicUsize>,
    client: &Client,
) -> kernel_server::ServiceBuilder {
    let hello = move |request: Request<HelloRequest>| {
        let (started, count) = (Arc::clone(&started), Arc::clone(&count));
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            started.notify_one();
            tokio::time::sleep(pause).await;
            Ok::<_, Error>(HelloResponse {
                greeting: format!("hello, {}", request.message().name),
                served_by: String::new(),
            })
        }
    };
    Service::builder(name, client).endpoint(Endpoint::new("hello", hello).open())
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
    }
}

/// The client's connection drops while its call is being handled: the call still ends within
/// its deadline, and once the client has reconnected, calls succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_connection_drops_mid_call_ends_it_in_time_and_recovers() {
    let (direct, proxy, proxied) = support::proxied_broker().await;
    let name = support::unique("faults.client");
    let started = Arc::new(Notify::new());
    let count = Arc::new(AtomicUsize::new(0));
    let server_side = client_on(&direct).await;
    let service = slow_greeter(
        &name,
        Arc::clone(&started),
        Duration::from_millis(300),
        Arc::clone(&count),
        &server_side,
    )
    .build()
    .unwrap();
    let running = support::serve(service).await;
    let client = client_on(&proxied).await;

    let call = {
        let (client, name) = (client.clone(), name.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let outcome = client
                .call::<HelloResponse>(&name, "hello", &hello("ada"))
                .await;
            (outcome, started.elapsed())
        })
    };
    support::bounded("the handler to start", started.notified()).await;
    proxy.reset();
    let (outcome, took) = tokio::time::timeout(DEADLINE + MARGIN, call)
        .await
        .expect("the call outlived its deadline")
        .unwrap();
    // The reply reaches the re-declared instance queue, or a retry (same message id) is
    // answered from the service's reply cache: either way the call succeeds, handled once.
    let reply = outcome.unwrap_or_else(|error| panic!("after {took:?}: {error:?}"));
    assert_eq!(reply.greeting, "hello, ada");
    assert_eq!(count.load(Ordering::SeqCst), 1, "the request ran once");

    let again: HelloResponse = client.call(&name, "hello", &hello("bob")).await.unwrap();
    assert_eq!(again.greeting, "hello, bob");
    assert!(
        proxy.accepted() >= 2,
        "the client reconnected through the proxy"
    );
    running.stop().await;
}

/// A black-holed connection (a partition: nothing answered, nothing closed) fails a call by its
/// deadline instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_client_fails_its_call_by_the_deadline() {
    let (direct, proxy, proxied) = support::proxied_broker().await;
    let name = support::unique("faults.partition");
    let server_side = client_on(&direct).await;
    let service = slow_greeter(
        &name,
        Arc::new(Notify::new()),
        Duration::ZERO,
        Arc::default(),
        &server_side,
    )
    .build()
    .unwrap();
    let running = support::serve(service).await;
    let client = client_on(&proxied).await;
    let _: HelloResponse = client.call(&name, "hello", &hello("before")).await.unwrap();

    proxy.cut();
    let deadline = Duration::from_secs(1);
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(
        deadline + MARGIN,
        client
            .call::<HelloResponse>(&name, "hello", &hello("during"))
            .deadline(deadline),
    )
    .await
    .expect("the call outlived its deadline");
    let error = outcome.unwrap_err();
    // Nothing is answered and nothing closed: the call waits out its deadline, then times out.
    assert_eq!(error.kind(), Kind::Timeout, "{error:?}");
    let waited = started.elapsed();
    assert!(waited >= deadline, "ended early, after {waited:?}");
    running.stop().await;
}

/// The service's connection drops: it reconnects and serves again, without being restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_connection_drops_serves_again() {
    let (direct, proxy, proxied) = support::proxied_broker().await;
    let name = support::unique("faults.service");
    let count = Arc::new(AtomicUsize::new(0));
    let server_side = client_on(&proxied).await;
    let service = slow_greeter(
        &name,
        Arc::new(Notify::new()),
        Duration::ZERO,
        Arc::clone(&count),
        &server_side,
    )
    .build()
    .unwrap();
    let running = support::serve(service).await;
    let client = client_on(&direct).await;
    let _: HelloResponse = client.call(&name, "hello", &hello("before")).await.unwrap();

    proxy.reset();
    // The service reconnects through the proxy (a second accepted connection) and consumes
    // its work queue again; a call sent before the queue is back is returned as `NoRoute`,
    // which the client retries within the call's deadline.
    support::bounded("the service to reconnect", async {
        while proxy.accepted() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let again: HelloResponse = client.call(&name, "hello", &hello("after")).await.unwrap();
    assert_eq!(again.greeting, "hello, after");
    assert!(
        proxy.accepted() >= 2,
        "the service reconnected through the proxy"
    );
    running.stop().await;
}
