//! AMQP-specific behaviour of a service (real RabbitMQ from `cargo xtask services up`).
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::sync::Arc;

use kernel_client::Client;
use kernel_errors::Kind;
use kernel_server::codes;
use kernel_transport::{
    AmqpTransport, Destination, Envelope, MessageType, Source, Transport, TransportError,
};

/// When the transport closes under a serving service, `serve` returns a typed error instead of
/// looking like a clean shutdown, and the closed transport refuses further sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_transport_closes_stops_with_an_error() {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = support::unique("closing");
    let service = support::greeter(
        &name,
        "a",
        Arc::new(support::Seen::default()),
        &Client::new(transport.clone()),
    )
    .build()
    .unwrap();
    let handle = service.clone();
    let serving = tokio::spawn(service.serve());
    support::bounded("the service to consume", handle.serving()).await;
    // Serving once a heartbeat to the service is answered: its consumer is then running (a
    // heartbeat that is merely routed only proves the queue exists, and closing the transport
    // before the consumer starts fails `serve` at its start instead).
    // (From another connection: the service's client consumes this one's instance queue.)
    let probe = AmqpTransport::connect(&url).await.unwrap();
    let mut replies = probe.consume(Source::Instance).await.unwrap();
    probe
        .send(
            Destination::Service(&name),
            Envelope::ping(probe.instance_queue()),
        )
        .await
        .unwrap();
    let pong = support::bounded("the service's pong", replies.next())
        .await
        .expect("a pong");
    assert_eq!(pong.envelope.message_type, MessageType::Heartbeat);
    drop(replies);

    transport.close().await.unwrap();
    let error = support::bounded("serve to return", serving)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), Kind::ConnectionLost);
    assert_eq!(error.code(), codes::CONSUMER_ENDED);
    let refused = transport
        .send(
            Destination::Service(&name),
            Envelope::ping(transport.instance_queue()),
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, TransportError::Closed), "{refused:?}");
}
