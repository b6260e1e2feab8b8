//! A client written with lapin alone, following docs/wire.md, calls a kernel service on a real
//! RabbitMQ and decodes its replies, error replies and pongs: the document is true.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use kernel_client::Client;
use kernel_proto::examples::{HelloRequest, HelloResponse};
use kernel_proto::platform::PlatformError;
use kernel_proto::platform::platform_error::ErrorType;
use kernel_transport::AmqpTransport;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use prost::Message as _;

/// The raw client: one connection, one channel, one exclusive reply queue (wire.md §3).
struct Raw {
    _connection: Connection,
    channel: Channel,
    reply_queue: String,
    replies: Consumer,
}

impl Raw {
    async fn connect(url: &str) -> Raw {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let reply_queue = format!("instance-{}", kernel_transport::new_message_id());
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        channel
            .queue_declare(
                reply_queue.as_str().into(),
                exclusive,
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                reply_queue.as_str().into(),
                "h2o.direct".into(),
                reply_queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let replies = channel
            .basic_consume(
                reply_queue.as_str().into(),
                "raw".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Raw {
            _connection: connection,
            channel,
            reply_queue,
            replies,
        }
    }

    /// Publishes a request as wire.md §4 says and returns its message id.
    async fn request(
        &self,
        service: &str,
        endpoint: &str,
        content_type: &str,
        body: &[u8],
    ) -> String {
        let message_id = kernel_transport::new_message_id();
        let deadline = SystemTime::now() + Duration::from_secs(10);
        let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis();
        let mut headers = FieldTable::default();
        for (name, value) in [
            ("messageType", "request"),
            ("service", service),
            ("endpoint", endpoint),
            ("from", "raw.client"),
            ("deadline", &deadline_ms.to_string()),
        ] {
            headers.insert(name.into(), AMQPValue::LongString(value.into()));
        }
        let properties = BasicProperties::default()
            .with_content_type(content_type.into())
            .with_message_id(message_id.as_str().into())
            .with_reply_to(self.reply_queue.as_str().into())
            .with_expiration("10000".into())
            .with_delivery_mode(1)
            .with_headers(headers);
        self.channel
            .basic_publish(
                "h2o".into(),
                service.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .unwrap();
        message_id
    }

    /// Publishes a heartbeat ping to a service (wire.md §8) and returns its message id.
    async fn ping(&self, service: &str) -> String {
        let message_id = kernel_transport::new_message_id();
        let mut headers = FieldTable::default();
        headers.insert(
            "messageType".into(),
            AMQPValue::LongString("heartbeat".into()),
        );
        let properties = BasicProperties::default()
            .with_message_id(message_id.as_str().into())
            .with_reply_to(self.reply_queue.as_str().into())
            .with_headers(headers);
        self.channel
            .basic_publish(
                "h2o".into(),
                service.into(),
                BasicPublishOptions::default(),
                b"PING",
                properties,
            )
            .await
            .unwrap();
        message_id
    }

    async fn next(&mut self) -> Delivery {
        support::bounded("a reply on the raw reply queue", self.replies.next())
            .await
            .unwrap()
            .unwrap()
    }
}

fn header(delivery: &Delivery, name: &str) -> String {
    let headers = delivery.properties.headers().as_ref().expect("headers");
    match headers.inner().get(name) {
        Some(AMQPValue::LongString(value)) => String::from_utf8(value.as_bytes().to_vec()).unwrap(),
        other => panic!("header {name} is {other:?}, not a long string"),
    }
}

fn correlation_id(delivery: &Delivery) -> String {
    delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

fn content_type(delivery: &Delivery) -> String {
    delivery
        .properties
        .content_type()
        .as_ref()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapin_only_client_following_the_wire_doc_talks_to_a_kernel_service() {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    let service = support::unique("greeter");
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let seen = Arc::new(support::Seen::default());
    let greeter = support::greeter(&service, "a", seen, &Client::new(transport))
        .build()
        .unwrap();
    let running = support::serve(greeter).await;
    let mut raw = Raw::connect(&url).await;

    // A protobuf request and its reply.
    let body = HelloRequest { name: "raw".into() }.encode_to_vec();
    let id = raw
        .request(&service, "hello", "application/protobuf", &body)
        .await;
    let reply = raw.next().await;
    assert_eq!(correlation_id(&reply), id);
    assert_eq!(header(&reply, "messageType"), "reply");
    assert_eq!(content_type(&reply), "application/protobuf");
    let hello = HelloResponse::decode(reply.data.as_slice()).unwrap();
    assert_eq!(hello.greeting, "hello, raw");

    // An error reply, protobuf: a PlatformError with type, code, status and kind.
    let id = raw
        .request(&service, "fail", "application/protobuf", &body)
        .await;
    let reply = raw.next().await;
    assert_eq!(
        (correlation_id(&reply), header(&reply, "messageType")),
        (id, "error".to_owned())
    );
    let error = PlatformError::decode(reply.data.as_slice()).unwrap();
    assert_eq!(error.r#type, ErrorType::NotFound as i32);
    assert_eq!(error.code, "test.greeter.fail.nobody");
    assert_eq!(error.http_code, 404);
    assert_eq!(error.kind, "NOT_FOUND");
    assert_eq!(error.context, ["greeter"]);

    // JSON in, JSON out, in the protobuf JSON mapping.
    let id = raw
        .request(&service, "hello", "application/json", br#"{"name":"json"}"#)
        .await;
    let reply = raw.next().await;
    assert_eq!(correlation_id(&reply), id);
    assert_eq!(content_type(&reply), "application/json");
    assert_eq!(reply.data, br#"{"greeting":"hello, json","servedBy":"a"}"#);

    // An unknown endpoint, JSON: the error reply is JSON too.
    raw.request(&service, "nope", "application/json", b"{}")
        .await;
    let reply = raw.next().await;
    assert_eq!(header(&reply, "messageType"), "error");
    let error: serde_json::Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(error["kind"], "NOT_FOUND");
    assert_eq!(error["code"], "kernel.server.unknownendpoint");
    assert_eq!(error["httpCode"], 404);

    // A heartbeat to the service is answered with a pong.
    let id = raw.ping(&service).await;
    let pong = raw.next().await;
    assert_eq!(correlation_id(&pong), id);
    assert_eq!(header(&pong, "messageType"), "heartbeat");
    assert_eq!(pong.data, b"PONG");

    running.stop().await;
}
