//! The AMQP transport over TLS (`amqps://`) against the real RabbitMQ's TLS listener, with the
//! throwaway CA `cargo xtask services up` generates.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::sync::Arc;

use kernel_client::Client;
use kernel_proto::examples::HelloResponse;
use kernel_transport::{AmqpTransport, TransportError};

fn amqps_url() -> String {
    kernel_testkit::engine_address("KERNEL_AMQPS_URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_a_client_talk_over_tls() {
    let ca = kernel_testkit::engine_address("KERNEL_AMQP_CA");
    let url = format!("{}?cacertfile={ca}", amqps_url());
    let server_side = AmqpTransport::connect(&url).await.unwrap();
    let name = support::unique("tls");
    let service = support::greeter(&name, "a", Arc::default(), &Client::new(server_side))
        .build()
        .unwrap();
    let running = support::serve(service).await;
    let client = Client::new(AmqpTransport::connect(&url).await.unwrap());
    let reply: HelloResponse = client
        .call(&name, "hello", &support::hello("tls"))
        .await
        .unwrap();
    assert_eq!(reply.greeting, "hello, tls");
    running.stop().await;
}

#[tokio::test]
async fn a_broker_certificate_nobody_vouches_for_is_refused_at_once() {
    // Without the throwaway CA, only the bundled web roots are trusted.
    let refused = support::bounded("the refusal", AmqpTransport::connect(&amqps_url())).await;
    let error = refused.unwrap_err();
    assert!(
        matches!(error, TransportError::ConnectionLost(_)),
        "{error:?}"
    );
    let text = format!("{error:?}");
    assert!(text.contains("Tls"), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
}
