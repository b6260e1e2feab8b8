//! A broker outage longer than any fixed reconnection budget (60 s), under load, on the real
//! RabbitMQ behind a loopback proxy: the proxy closes every connection (as a broker that stops
//! closes them with `CONNECTION_FORCED`) and then closes every new one (as a stopped broker
//! refuses them), then lets them through again. This file is its own test binary, so the
//! outage touches no other test's connections.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kernel_client::Client;
use kernel_errors::Kind;
use kernel_proto::examples::HelloResponse;
use kernel_transport::AmqpTransport;
use tokio::time::Instant;

/// How long the broker is away: longer than the 31 s after which lapin used to give up.
const OUTAGE: Duration = Duration::from_secs(60);
/// Each call's deadline.
const DEADLINE: Duration = Duration::from_secs(3);
/// Room for the runtime beyond a deadline before the test calls it a hang.
const MARGIN: Duration = Duration::from_secs(1);
/// Calls must succeed again this soon after the broker is back.
const BACK_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_under_load_ends_every_call_in_time_and_service_resumes() {
    let (_, proxy, proxied) = support::proxied_broker().await;

    let name = support::unique("outage");
    let server_side = Client::new(AmqpTransport::connect(&proxied).await.unwrap());
    let service = support::greeter(&name, "a", Arc::default(), &server_side)
        .build()
        .unwrap();
    let running = support::serve(service).await;
    let client = Client::builder(AmqpTransport::connect(&proxied).await.unwrap())
        .calling_as("test.outage")
        .deadline(DEADLINE)
        .build()
        .unwrap();

    // 20 tasks call in a loop (bounded: 10,000 calls each at most) until told to stop; each
    // call's name is unique, so a reply to the wrong call would show.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for task in 0..20 {
        let (client, name, stop) = (client.clone(), name.clone(), Arc::clone(&stop));
        callers.spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..10_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let who = format!("{task}-{n}");
                let started = Instant::now();
                let request = support::hello(&who);
                let call = client.call::<HelloResponse>(&name, "hello", &request);
                let outcome = tokio::time::timeout(DEADLINE + MARGIN, call)
                    .await
                    .unwrap_or_else(|_| panic!("call {who} outlived its deadline"));
                match &outcome {
                    Ok(reply) => assert_eq!(reply.greeting, format!("hello, {who}")),
                    Err(error) => assert!(
                        matches!(
                            error.kind(),
                            Kind::ConnectionLost | Kind::Timeout | Kind::NoRoute
                        ),
                        "call {who}: an untyped or unexpected error {error:?}"
                    ),
                }
                let failed = outcome.is_err();
                outcomes.push((Instant::now(), failed));
                if failed {
                    // Do not spin while the broker is away.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(started.elapsed() <= DEADLINE + MARGIN);
            }
            outcomes
        });
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.refuse();
    proxy.reset();
    tokio::time::sleep(OUTAGE).await;
    let back = Instant::now();
    proxy.restore();

    // Calls succeed again soon: wait for the first success after the return.
    let again = support::bounded("a call after the broker's return", async {
        loop {
            match client
                .call::<HelloResponse>(&name, "hello", &support::hello("back"))
                .await
            {
                Ok(reply) => return reply,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert_eq!(again.greeting, "hello, back");
    let took = back.elapsed();
    assert!(
        took <= BACK_WITHIN,
        "served again only {took:?} after the broker returned"
    );

    stop.store(true, Ordering::SeqCst);
    let mut failed_during = 0;
    let mut succeeded_after = 0;
    while let Some(done) = support::bounded("the callers to stop", callers.join_next()).await {
        for (at, failed) in done.unwrap() {
            if failed && at < back {
                failed_during += 1;
            }
            if !failed && at > back {
                succeeded_after += 1;
            }
        }
    }
    assert!(failed_during > 0, "no call failed during the outage");
    assert!(succeeded_after > 0, "no caller task recovered");
    assert!(proxy.accepted() > 2, "nobody reconnected through the proxy");
    // The service never stopped serving: it is still running, and stops cleanly.
    running.stop().await;
}
