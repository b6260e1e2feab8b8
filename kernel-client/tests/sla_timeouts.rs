//! Attempt timeouts from the endpoint's SLA (H2's adaptive timeout table), with tokio's paused
//! clock: a consumer of the service's queue that never answers records when each attempt
//! arrives. Attempt n waits upper95 × n; a fixed timeout set on the call wins.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::time::Duration;

use kernel_client::{AttemptTimeouts, Client, DISCOVERY_TOPIC, Registry};
use kernel_proto::examples::{HelloRequest, HelloResponse};
use kernel_proto::platform::{Announcement, AnnouncementEvent, EndpointInfo};
use kernel_transport::{InProcessBroker, Source, Transport};
use tokio::time::Instant;

const SVC: &str = "test.sla";
const ENDPOINT: &str = "work";
const UPPER95: Duration = Duration::from_millis(100);

/// Calls once (with `fixed` as the call's attempt timeout, if any) and returns when each of
/// the three attempts reached the service's queue, from the start of the call.
async fn attempt_arrivals(fixed: Option<Duration>) -> Vec<Duration> {
    let declared = AttemptTimeouts::default().upper95(SVC, ENDPOINT, UPPER95);
    attempt_arrivals_with(declared, fixed, false).await
}

/// As [`attempt_arrivals`], with a client sizing attempts from `timeouts`, and (if
/// `learning`) from what a registry hears: an instance announcing `UPPER95` for the endpoint.
async fn attempt_arrivals_with(
    timeouts: AttemptTimeouts,
    fixed: Option<Duration>,
    learning: bool,
) -> Vec<Duration> {
    let broker = InProcessBroker::new();
    let server = broker.connect();
    let mut work = server
        .consume(Source::Service {
            name: SVC,
            capacity: 16,
        })
        .await
        .unwrap();
    let client = Client::builder(broker.connect())
        .attempts(3)
        .deadline(Duration::from_secs(10))
        .attempt_timeouts(timeouts)
        .without_breaker()
        .build()
        .unwrap();
    let mut registry = None;
    if learning {
        let listening = Registry::start(&client).await.unwrap();
        let announcement = Announcement {
            event: AnnouncementEvent::Started.into(),
            instance_id: "server-test.sla-1".into(),
            service_name: SVC.into(),
            endpoints: vec![EndpointInfo {
                name: ENDPOINT.into(),
                mean_ms: 50.0,
                upper95_ms: UPPER95.as_secs_f64() * 1000.0,
                ..Default::default()
            }],
            ..Default::default()
        };
        client
            .publish(DISCOVERY_TOPIC, &announcement)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while listening.upper95(SVC, ENDPOINT).is_none() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the registry hears the announcement");
        // The client learns while the registry lives.
        registry = Some(listening);
    }
    let start = Instant::now();
    let calling = tokio::spawn(async move {
        let request = HelloRequest { name: "x".into() };
        let call = client.call::<HelloResponse>(SVC, ENDPOINT, &request);
        let call = match fixed {
            Some(timeout) => call.attempt_timeout(timeout),
            None => call,
        };
        call.await.map(drop)
    });
    let mut held = Vec::new(); // unanswered and unsettled: a dropped delivery is requeued
    let mut at = Vec::new();
    for n in 1..=3 {
        let delivery = tokio::time::timeout(Duration::from_secs(60), work.next())
            .await
            .unwrap_or_else(|_| panic!("attempt {n} never arrived"))
            .expect("the queue is consumed");
        at.push(start.elapsed());
        held.push(delivery);
    }
    calling.abort();
    drop(registry);
    at
}

fn near(got: Duration, want: Duration) -> bool {
    got >= want && got <= want + Duration::from_millis(20)
}

#[tokio::test(start_paused = true)]
async fn each_attempt_waits_upper95_times_its_number() {
    let at = attempt_arrivals(None).await;
    // Attempt 1 at once, attempt 2 after 100 ms, attempt 3 after 100 + 200 ms.
    assert!(near(at[0], Duration::ZERO), "{at:?}");
    assert!(near(at[1], UPPER95), "{at:?}");
    assert!(near(at[2], UPPER95 * 3), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fixed_timeout_on_the_call_is_not_scaled() {
    let at = attempt_arrivals(Some(Duration::from_millis(50))).await;
    assert!(near(at[1], Duration::from_millis(50)), "{at:?}");
    assert!(near(at[2], Duration::from_millis(100)), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn an_announced_upper95_sizes_the_attempts_when_none_is_declared() {
    let at = attempt_arrivals_with(AttemptTimeouts::default(), None, true).await;
    // As if declared: 100 ms, then 200 ms; not the 2 s assumed for an unknown endpoint.
    assert!(near(at[1], UPPER95), "{at:?}");
    assert!(near(at[2], UPPER95 * 3), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_declared_upper95_wins_over_an_announced_one() {
    let declared = AttemptTimeouts::default().upper95(SVC, ENDPOINT, UPPER95 * 2);
    let at = attempt_arrivals_with(declared, None, true).await;
    assert!(near(at[1], UPPER95 * 2), "{at:?}");
}
