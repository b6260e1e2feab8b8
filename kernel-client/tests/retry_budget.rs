//! The retry budget against a real service on the in-process broker, on tokio's paused
//! clock: with every call failing, the attempts sent stay within the budget.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::Duration;

use kernel_client::{Client, RetryBudget};
use kernel_errors::Kind;
use kernel_inst::MemoryInstrumenter;
use kernel_proto::examples::HelloResponse;
use kernel_transport::InProcessBroker;
use support::{ENDPOINT, Mode, dependency, hello};

const SVC: &str = "com.example.shedding";
const CALLS: usize = 40;
const ATTEMPTS: u32 = 5;

/// Retries the floor allows: 1/s over the 30 s window (which outlasts each test).
const FLOOR: usize = 30;

/// 10 % of calls plus the floor.
fn budget() -> RetryBudget {
    RetryBudget::new()
        .ratio(0.1)
        .floor(1)
        .window(Duration::from_secs(30))
}

/// Retries the budget allows `calls` calls: the floor's plus the calls' share.
fn allowed_retries(calls: usize) -> usize {
    FLOOR + calls / 10
}

fn client(
    broker: &InProcessBroker,
    memory: &MemoryInstrumenter,
    budget: Option<RetryBudget>,
) -> Client {
    let builder = Client::builder(broker.connect())
        .instrumenter(Arc::new(memory.clone()))
        .attempts(ATTEMPTS)
        .deadline(Duration::from_secs(5));
    match budget {
        Some(budget) => builder.retry_budget(budget),
        None => builder.without_retry_budget(),
    }
    .build()
    .unwrap()
}

/// Every call is shed (`Overloaded`, which is retried): `CALLS` calls of up to 5 attempts
/// send at most `CALLS` + the budget, and each still returns the overload.
#[tokio::test(start_paused = true)]
async fn overloaded_calls_retry_no_more_than_the_budget() {
    let broker = InProcessBroker::new();
    let dependency = dependency(&broker, SVC, Mode::Overloaded).await;
    let memory = MemoryInstrumenter::new();
    let client = client(&broker, &memory, Some(budget()));
    for _ in 0..CALLS {
        let error = client
            .call::<HelloResponse>(SVC, ENDPOINT, &hello("x"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), Kind::Overloaded);
    }
    let sent = dependency.requests();
    assert!(
        sent <= CALLS + allowed_retries(CALLS),
        "{sent} attempts for {CALLS} calls"
    );
    // The budget was used, not bypassed: without it there would be 5 × CALLS.
    assert!(sent >= CALLS + FLOOR, "{sent} attempts for {CALLS} calls");
    let exhausted = memory
        .snapshot()
        .counter("client.retry.budgetexhausted")
        .unwrap_or(0);
    assert!(exhausted > 0);
    // The breaker ignored all of it.
    assert!(client.open_circuits().is_empty());
}

/// The same calls with the budget turned off: every attempt is sent.
#[tokio::test(start_paused = true)]
async fn without_a_budget_every_attempt_is_sent() {
    let broker = InProcessBroker::new();
    let dependency = dependency(&broker, SVC, Mode::Overloaded).await;
    let memory = MemoryInstrumenter::new();
    let client = client(&broker, &memory, None);
    for _ in 0..CALLS {
        client
            .call::<HelloResponse>(SVC, ENDPOINT, &hello("x"))
            .await
            .unwrap_err();
    }
    assert_eq!(dependency.requests(), CALLS * ATTEMPTS as usize);
    assert_eq!(
        memory.snapshot().counter("client.retry.budgetexhausted"),
        None
    );
}

/// Nobody serves the service (`NoRoute`, retried with back-off for one attempt timeout):
/// the attempts, counted by the client's per-attempt error timings, stay within the budget.
#[tokio::test(start_paused = true)]
async fn undeliverable_calls_retry_no_more_than_the_budget() {
    let broker = InProcessBroker::new();
    let memory = MemoryInstrumenter::new();
    let client = client(&broker, &memory, Some(budget()));
    for _ in 0..CALLS {
        let error = client
            .call::<HelloResponse>("com.example.nobody", ENDPOINT, &hello("x"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), Kind::NoRoute);
    }
    let snapshot = memory.snapshot();
    let attempts = snapshot
        .timing(&format!("client.com.example.nobody.{ENDPOINT}.error"))
        .map(|timing| timing.count as usize)
        .unwrap_or(0);
    assert!(
        (CALLS + FLOOR..=CALLS + allowed_retries(CALLS)).contains(&attempts),
        "{attempts} attempts for {CALLS} calls"
    );
}
