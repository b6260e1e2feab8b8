//! The transport conformance suite on the in-process broker (the embedded default).

#[macro_use]
mod support;

conformance_suite!(support::InProcess(kernel_transport::InProcessBroker::new()));

/// On the in-process broker (which, unlike RabbitMQ, does not expire messages itself) an
/// expired request reaches the server, which drops it unexecuted and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_are_dropped_and_counted() {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use kernel_inst::MemoryInstrumenter;
    use kernel_proto::examples::HelloResponse;
    use kernel_transport::{ContentType, Destination, Envelope, Transport, codec};

    let broker = kernel_transport::InProcessBroker::new();
    let harness = support::InProcess(broker.clone());
    let name = support::unique("expired");
    let seen = Arc::new(support::Seen::default());
    let memory = MemoryInstrumenter::new();
    let service = support::greeter(
        &name,
        "a",
        Arc::clone(&seen),
        &support::client(&harness).await,
    )
    .capacity(1)
    .instrumenter(Arc::new(memory.clone()))
    .build()
    .unwrap();
    let running = support::serve(service).await;

    let sender = broker.connect();
    let payload = codec::encode(ContentType::Protobuf, &support::hello("late")).unwrap();
    let mut expired = Envelope::request(&name, "expired", ContentType::Protobuf, payload);
    expired.deadline = Some(SystemTime::now() - Duration::from_secs(1));
    expired.reply_to = sender.instance_queue().to_owned();
    sender
        .send(Destination::Service(&name), expired)
        .await
        .unwrap();

    // A call after it is answered; the expired request, taken from the queue before it (the
    // prefetch holds both), is dropped in its own task, which may finish a moment later.
    let client = support::client(&harness).await;
    let _: HelloResponse = client
        .call(&name, "hello", &support::hello("after"))
        .await
        .unwrap();
    support::bounded("the expired request to be dropped and counted", async {
        while memory.snapshot().counter("server.dropped.expired") != Some(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(seen.expired.load(std::sync::atomic::Ordering::SeqCst), 0);
    running.stop().await;
}
