//! A greeter service and a client in one process, on the embedded defaults: nothing to
//! install, nothing running. `cargo run --example quickstart`
#![allow(clippy::print_stdout)] // an example speaks on stdout

use std::sync::Arc;
use std::time::Duration;

use kernel::inst::MemoryInstrumenter;
use kernel::prelude::*;
use kernel::proto::examples::{HelloRequest, HelloResponse};
use kernel::transport::InProcessTransport;

const GREETER: &str = "com.example.greeter";

/// The greeter's one endpoint: greets by name, or says why it cannot.
async fn hello(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    let name = &request.message().name;
    if name.is_empty() {
        return Err(Error::bad_request(
            "com.example.greeter.hello.noname",
            "who should I greet? the name is empty",
        ));
    }
    Ok(HelloResponse {
        greeting: format!("hello, {name}"),
        served_by: format!("{GREETER} (called by {})", request.caller()),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Every call and request is recorded here, as the `stats` endpoint will read it.
    let metrics = MemoryInstrumenter::new();
    let client = Client::builder(InProcessTransport::new())
        .calling_as("com.example.quickstart")
        .instrumenter(Arc::new(metrics.clone()))
        .deadline(Duration::from_secs(2))
        .build()?;

    let greeter = Service::builder(GREETER, &client)
        .version("1.0.0")
        .endpoint(
            Endpoint::new("hello", hello)
                .open()
                .mean_time(Duration::from_millis(1)),
        )
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(greeter.serve_with_shutdown(async {
        let _ = stopped.await;
    }));

    for name in ["Ada", "Grace", "Barbara"] {
        let request = HelloRequest { name: name.into() };
        // The greeter may still be starting; the call retries `NoRoute` within its deadline.
        let reply: HelloResponse = client.call(GREETER, "hello", &request).await?;
        println!("{} — from {}", reply.greeting, reply.served_by);
    }

    let json: HelloResponse = client
        .call(
            GREETER,
            "hello",
            &HelloRequest {
                name: "JSON".into(),
            },
        )
        .json()
        .await?;
    println!("{} (this one travelled as JSON)", json.greeting);

    let error = client
        .call::<HelloResponse>(GREETER, "hello", &HelloRequest::default())
        .await
        .expect_err("an empty name is refused");
    println!(
        "typed error: kind {:?}, code {}, HTTP {}: {}",
        error.kind(),
        error.code(),
        error.http_status(),
        error.description()
    );

    let _ = stop.send(());
    serving
        .await
        .map_err(|e| Error::internal_server_error("quickstart.join", e.to_string()))??;

    println!("\nwhat the in-memory instrumenter recorded:");
    let snapshot = metrics.snapshot();
    for (name, count) in snapshot.counters() {
        println!("  counter {name:<55} {count}");
    }
    for (name, timing) in snapshot.timings() {
        println!(
            "  timing  {name:<55} n={:<3} mean={:?} p95={:?} p99={:?}",
            timing.count, timing.mean, timing.p95, timing.p99
        );
    }
    Ok(())
}
