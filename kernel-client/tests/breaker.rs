//! The circuit breaker against a real service on the in-process broker, on tokio's paused
//! clock: no real time passes, and "at once" means "no virtual time passed".
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::Duration;

use kernel_client::{BreakerOptions, CircuitState, Client, codes};
use kernel_errors::{Error, Kind};
use kernel_inst::MemoryInstrumenter;
use kernel_proto::examples::HelloResponse;
use kernel_transport::InProcessBroker;
use support::{Dependency, ENDPOINT, Mode, dependency, hello};

const SVC: &str = "com.example.dependency";
const ATTEMPT: Duration = Duration::from_millis(100);
const BACKOFF: Duration = Duration::from_millis(500);

/// One attempt per call, 100 ms each; the breaker opens at 50 % failures over 3 samples and
/// backs off 500 ms, doubling.
fn client(broker: &InProcessBroker, memory: &MemoryInstrumenter) -> Client {
    let options = BreakerOptions::new()
        .min_samples(3)
        .threshold(0.5)
        .backoff(BACKOFF, Duration::from_secs(10));
    Client::builder(broker.connect())
        .instrumenter(Arc::new(memory.clone()))
        .attempts(1)
        .attempt_timeout(ATTEMPT)
        .deadline(ATTEMPT)
        .breaker_for(SVC, ENDPOINT, options)
        .build()
        .unwrap()
}

async fn call(client: &Client) -> Result<HelloResponse, Error> {
    client.call(SVC, ENDPOINT, &hello("x")).await
}

fn state(client: &Client) -> CircuitState {
    client.circuit_state(SVC, ENDPOINT)
}

/// Waits until the dependency has had `n` requests.
async fn requests_reach(dependency: &Dependency, n: usize) {
    loop {
        let arrived = dependency.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if dependency.requests() >= n {
            return;
        }
        arrived.await;
    }
}

/// A call while the breaker is open fails with `CircuitBroken` at once and sends nothing.
async fn refused_at_once(client: &Client, dependency: &Dependency) {
    let before = dependency.requests();
    let started = tokio::time::Instant::now();
    let error = call(client).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.code()),
        (Kind::CircuitBroken, codes::CIRCUIT_BROKEN)
    );
    assert_eq!(error.context(), [SVC, ENDPOINT]);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a refusal waits for nothing"
    );
    assert_eq!(
        dependency.requests(),
        before,
        "a refused call reached the server"
    );
}

/// A dependency that times out opens the breaker after the configured samples; while open,
/// calls fail at once without reaching it; after the back-off exactly one probe goes
/// through; a failed probe re-opens it for twice as long; once the dependency recovers the
/// next probe closes it.
#[tokio::test(start_paused = true)]
async fn a_timing_out_dependency_opens_the_breaker_and_a_probe_closes_it_on_recovery() {
    let broker = InProcessBroker::new();
    let dependency = dependency(&broker, SVC, Mode::Stalled).await;
    let memory = MemoryInstrumenter::new();
    let client = client(&broker, &memory);

    // Three timeouts: 3 samples, all failures.
    for i in 0..3 {
        assert_eq!(state(&client), CircuitState::Closed, "before call {i}");
        assert_eq!(call(&client).await.unwrap_err().kind(), Kind::Timeout);
    }
    assert_eq!(dependency.requests(), 3);
    assert_eq!(state(&client), CircuitState::Open);
    for _ in 0..10 {
        refused_at_once(&client, &dependency).await;
    }

    // After the back-off it is half-open; reading the state takes no probe.
    tokio::time::sleep(BACKOFF).await;
    assert_eq!(state(&client), CircuitState::HalfOpen);
    assert_eq!(state(&client), CircuitState::HalfOpen);
    let probe = tokio::spawn({
        let client = client.clone();
        async move { call(&client).await }
    });
    requests_reach(&dependency, 4).await;
    // The probe is out: everyone else is still refused.
    refused_at_once(&client, &dependency).await;
    assert_eq!(probe.await.unwrap().unwrap_err().kind(), Kind::Timeout);
    assert_eq!(state(&client), CircuitState::Open);

    // The dependency recovers. The failed probe doubled the back-off to 1 s.
    dependency.set(Mode::Healthy);
    tokio::time::sleep(BACKOFF).await;
    assert_eq!(state(&client), CircuitState::Open);
    refused_at_once(&client, &dependency).await;
    tokio::time::sleep(BACKOFF).await;
    assert_eq!(state(&client), CircuitState::HalfOpen);
    assert_eq!(call(&client).await.unwrap().greeting, "done: x");
    assert_eq!(state(&client), CircuitState::Closed);
    for _ in 0..5 {
        call(&client).await.unwrap();
    }
    assert_eq!(dependency.requests(), 10);

    let snapshot = memory.snapshot();
    let count = |name: &str| snapshot.counter(name);
    let circuit = format!("client.circuit.{SVC}.{ENDPOINT}");
    assert_eq!(count(&format!("{circuit}.open")), Some(2));
    assert_eq!(count(&format!("{circuit}.halfopen")), Some(2));
    assert_eq!(count(&format!("{circuit}.closed")), Some(1));
    assert_eq!(
        count(&format!("client.error.{SVC}.{ENDPOINT}.circuitbroken")),
        Some(12)
    );
    assert_eq!(count("client.error.kernel.client.circuitbroken"), Some(12));
}

/// A server shedding load (`Overloaded`) never opens its callers' breakers, however many
/// calls it sheds.
#[tokio::test(start_paused = true)]
async fn overloaded_replies_do_not_open_the_breaker() {
    let broker = InProcessBroker::new();
    let dependency = dependency(&broker, SVC, Mode::Overloaded).await;
    let client = client(&broker, &MemoryInstrumenter::new());
    for _ in 0..20 {
        assert_eq!(call(&client).await.unwrap_err().kind(), Kind::Overloaded);
    }
    assert_eq!(dependency.requests(), 20);
    assert_eq!(state(&client), CircuitState::Closed);
    assert!(client.open_circuits().is_empty());
}

/// With the breaker turned off, a timing-out dependency keeps getting every call.
#[tokio::test(start_paused = true)]
async fn without_a_breaker_every_call_is_sent() {
    let broker = InProcessBroker::new();
    let dependency = dependency(&broker, SVC, Mode::Stalled).await;
    let client = Client::builder(broker.connect())
        .attempts(1)
        .deadline(ATTEMPT)
        .without_breaker()
        .build()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(call(&client).await.unwrap_err().kind(), Kind::Timeout);
    }
    assert_eq!(dependency.requests(), 10);
    assert_eq!(state(&client), CircuitState::Closed);
}

/// New settings at run time keep an open breaker open when its options did not change, and
/// close it (counts cleared) when they did.
#[tokio::test(start_paused = true)]
async fn changing_settings_keeps_the_state_of_unchanged_keys() {
    let broker = InProcessBroker::new();
    let dependency = dependency(&broker, SVC, Mode::Stalled).await;
    let client = client(&broker, &MemoryInstrumenter::new());
    for _ in 0..3 {
        call(&client).await.unwrap_err();
    }
    assert_eq!(state(&client), CircuitState::Open);

    let unrelated = client
        .breaker_settings()
        .endpoint(SVC, "other", BreakerOptions::disabled());
    client.set_breaker_settings(unrelated.clone()).unwrap();
    assert_eq!(state(&client), CircuitState::Open);
    refused_at_once(&client, &dependency).await;

    let options = unrelated.options_for(SVC, ENDPOINT).min_samples(5);
    let changed = unrelated.endpoint(SVC, ENDPOINT, options);
    client.set_breaker_settings(changed).unwrap();
    assert_eq!(state(&client), CircuitState::Closed);
    assert_eq!(call(&client).await.unwrap_err().kind(), Kind::Timeout);
    assert_eq!(dependency.requests(), 4);
}
