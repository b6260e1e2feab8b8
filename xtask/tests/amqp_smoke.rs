//! Proves `KERNEL_AMQP_URL` is a real RabbitMQ: a lapin publish/consume round trip.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// A message published to a fresh queue comes back from it, body and properties intact, and
/// the broker reports the queue empty after the ack.
#[tokio::test]
async fn a_published_message_is_consumed_from_a_real_broker() {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    let connection = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("no AMQP connection to {url} within 10 s"))
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = kernel_testkit::unique("smoke").replace('.', "_");
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(declared.message_count(), 0);

    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "smoke".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"hello, broker",
            BasicProperties::default().with_message_id("m-1".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("the message came back within 10 s")
        .expect("the consumer is still open")
        .unwrap();
    assert_eq!(delivery.data, b"hello, broker");
    assert_eq!(
        delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("m-1")
    );
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
}
