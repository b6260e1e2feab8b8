//! Which failures a call retries, seen through `MockClient`'s call counts.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kernel_client::{MockClient, NO_STUB};
use kernel_errors::{Error, Kind};
use kernel_proto::examples::{HelloRequest, HelloResponse};

const SVC: &str = "com.example.greeter";

fn hello() -> HelloRequest {
    HelloRequest { name: "ada".into() }
}

/// An overloaded instance's error reply is retried (same message id, after a short pause), and
/// the call succeeds once an instance has room.
#[tokio::test]
async fn overloaded_replies_are_retried_until_success() {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let mock = MockClient::new().stub(SVC, "hello", move |_: HelloRequest| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(Error::overloaded("kernel.server.capacity", "full"))
        } else {
            Ok(HelloResponse {
                greeting: "hi".into(),
                served_by: String::new(),
            })
        }
    });
    let reply: HelloResponse = mock
        .client()
        .call(SVC, "hello", &hello())
        .attempts(3)
        .await
        .unwrap();
    assert_eq!(reply.greeting, "hi");
    assert_eq!(mock.calls(SVC, "hello"), 3);
}

/// When every attempt is overloaded, the caller gets the overload, not a timeout.
#[tokio::test]
async fn the_last_retryable_error_is_returned_when_attempts_run_out() {
    let mock = MockClient::new().stub(SVC, "hello", |_: HelloRequest| {
        Err::<HelloResponse, _>(Error::overloaded("kernel.server.capacity", "full"))
    });
    let error = mock
        .client()
        .call::<HelloResponse>(SVC, "hello", &hello())
        .attempts(2)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::Overloaded);
    assert_eq!(error.context(), [SVC, "hello"]);
    assert_eq!(mock.calls(SVC, "hello"), 2);
}

/// A handler that answers `error` is called once by a call allowed three attempts, and the
/// call returns an error of the same kind; `how` names the case in the failure message.
async fn answered_once(error: Error, how: &str) {
    let kind = error.kind();
    let mock = MockClient::new().stub(SVC, "hello", move |_: HelloRequest| {
        Err::<HelloResponse, _>(error.clone())
    });
    let got = mock
        .client()
        .call::<HelloResponse>(SVC, "hello", &hello())
        .attempts(3)
        .await
        .unwrap_err();
    assert_eq!(got.kind(), kind);
    assert_eq!(mock.calls(SVC, "hello"), 1, "{kind:?}{how} was retried");
}

/// Error replies a handler chose are answers: sent once, returned as they are.
#[tokio::test]
async fn non_retryable_error_replies_are_not_retried() {
    for error in [
        Error::not_found("x.missing", "no"),
        Error::bad_request("x.invalid", "no"),
        Error::internal_server_error("x.bug", "no"),
        Error::forbidden("x.denied", "no"),
    ] {
        answered_once(error, "").await;
    }
}

/// An endpoint with no stub is a typed `NotFound`, and JSON calls work against stubs too.
#[tokio::test]
async fn unstubbed_endpoints_are_not_found_and_json_works() {
    let mock = MockClient::new().stub(SVC, "hello", |request: HelloRequest| {
        Ok(HelloResponse {
            greeting: format!("hi {}", request.name),
            served_by: String::new(),
        })
    });
    let client = mock.client();
    let error = client
        .call::<HelloResponse>(SVC, "other", &hello())
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.code()), (Kind::NotFound, NO_STUB));
    let reply: HelloResponse = client.call(SVC, "hello", &hello()).json().await.unwrap();
    assert_eq!(reply.greeting, "hi ada");
}

/// A call to a service nobody serves ends with `NoRoute` once its attempts are used up.
#[tokio::test]
async fn no_route_is_retried_then_returned() {
    let client = kernel_client::Client::builder(kernel_transport::InProcessTransport::new())
        .attempts(3)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let error = client
        .call::<HelloResponse>("com.example.nobody", "hello", &hello())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::NoRoute);
    assert_eq!(error.context(), ["com.example.nobody", "hello"]);
}

/// A reply that never comes ends the call with `Timeout` at its deadline, not later; the
/// clock is tokio's paused clock, so no real time passes.
#[tokio::test(start_paused = true)]
async fn a_call_never_outlives_its_deadline() {
    let transport = kernel_transport::InProcessBroker::new();
    let (server, caller) = (transport.connect(), transport.connect());
    // A "service" that takes requests and never answers.
    let _work = kernel_transport::Transport::consume(
        &server,
        kernel_transport::Source::Service {
            name: "com.example.silent",
            capacity: 100,
        },
    )
    .await
    .unwrap();
    let client = kernel_client::Client::builder(caller)
        .attempt_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let error = client
        .call::<HelloResponse>("com.example.silent", "hello", &hello())
        .deadline(Duration::from_secs(1))
        .attempts(5)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::Timeout);
    assert_eq!(error.code(), kernel_client::codes::TIMEOUT);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1100),
        "the call took {elapsed:?} of virtual time for a 1 s deadline"
    );
}

/// A handler that passes on a retryable failure from further down (no route, timeout) answers
/// with an error reply; that answer is not retried, or every caller up a chain would multiply
/// the load on the failing service.
#[tokio::test]
async fn retryable_kinds_relayed_in_error_replies_are_not_retried() {
    for error in [
        Error::no_route("kernel.transport.noroute", "nobody serves the database"),
        Error::timeout("kernel.client.timeout", "the database did not answer"),
        Error::connection_lost("kernel.transport.connectionlost", "the broker went away"),
    ] {
        answered_once(error, " relayed by a handler").await;
    }
}

/// `MockClient::client` hands out clones of one client, so a test can take several.
#[tokio::test]
async fn a_mock_hands_out_working_clients_repeatedly() {
    let mock = MockClient::new().stub(SVC, "hello", |_: HelloRequest| Ok(HelloResponse::default()));
    for _ in 0..3 {
        let client = mock.client();
        let _: HelloResponse = client.call(SVC, "hello", &hello()).await.unwrap();
    }
    assert_eq!(mock.calls(SVC, "hello"), 3);
}
