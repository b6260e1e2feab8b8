//! Hostile input on RabbitMQ (real broker from `cargo xtask services up`): any broker user can
//! publish any bytes to a service's work queue and to instance queues. Whatever arrives, the
//! service keeps serving on the same connection (counted through a loopback proxy), a normal
//! call succeeds afterwards, what can be answered is answered with a typed error, and what
//! cannot is rejected without requeue and counted.
//!
//! The hostile publisher is kernel-amqp itself: lapin cannot express short strings that are
//! not UTF-8.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use kernel_amqp::{
    Channel, Confirmation, ConnectOptions, Connection, Consumer, FieldTable, FieldValue,
    Properties, QueueOptions, ShortString,
};
use kernel_client::Client;
use kernel_proto::examples::HelloResponse;
use kernel_proto::platform::PlatformError;
use kernel_server::codes;
use kernel_testkit::Proxy;
use kernel_transport::{AmqpLimits, AmqpTransport, Transport};

/// The body limit the service under attack runs with.
const MAX_BODY: u64 = 64 * 1024;

/// A greeter served through a proxy (to count its connections), a client beside it, and a
/// hostile publisher with a reply queue of its own.
struct Target {
    name: String,
    proxy: Proxy,
    service_transport: AmqpTransport,
    client_transport: AmqpTransport,
    client: Client,
    running: support::Running,
    hostile: Channel,
    hostile_queue: String,
    answers: Consumer,
    hostile_connection: Connection,
}

async fn target() -> Target {
    let (url, proxy, proxied) = support::proxied_broker().await;
    let limits = AmqpLimits::default().max_body(MAX_BODY);
    let service_transport = AmqpTransport::connect_with(&proxied, limits).await.unwrap();
    let name = support::unique("hostile");
    let service = support::greeter(
        &name,
        "a",
        Arc::default(),
        &Client::new(service_transport.clone()),
    )
    .build()
    .unwrap();
    let running = support::serve(service).await;
    let client_transport = AmqpTransport::connect(&url).await.unwrap();
    let client = Client::builder(Arc::new(client_transport.clone()))
        .calling_as("test.caller")
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();

    let hostile_connection = Connection::connect(ConnectOptions::from_url(&url).unwrap())
        .await
        .unwrap();
    let hostile = hostile_connection.open_channel().await.unwrap();
    hostile.confirm_select().await.unwrap();
    let hostile_queue = support::unique("hostile.answers");
    let exclusive = QueueOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    hostile
        .queue_declare(&hostile_queue, exclusive, FieldTable::new())
        .await
        .unwrap();
    hostile
        .queue_bind(&hostile_queue, "h2o.direct", &hostile_queue)
        .await
        .unwrap();
    let answers = hostile
        .basic_consume(&hostile_queue, &hostile_queue, true, 64)
        .await
        .unwrap();
    Target {
        name,
        proxy,
        service_transport,
        client_transport,
        client,
        running,
        hostile,
        hostile_queue,
        answers,
        hostile_connection,
    }
}

fn not_utf8() -> ShortString {
    ShortString::from(Bytes::from_static(&[0xc3, 0x28, 0xff, 0xfe]))
}

/// Request properties as the wire contract has them, from the hostile publisher.
fn request(target: &Target, endpoint: &str, message_id: &str) -> Properties {
    let mut headers = FieldTable::new();
    headers.insert("messageType", FieldValue::text("request"));
    headers.insert("service", FieldValue::text(&target.name));
    headers.insert("endpoint", FieldValue::text(endpoint));
    let mut properties = Properties::default();
    properties.content_type = Some("application/json".into());
    properties.message_id = Some(message_id.into());
    properties.reply_to = Some(target.hostile_queue.as_str().into());
    properties.headers = Some(headers);
    properties
}

impl Target {
    /// Publishes to the service's work queue and waits for the broker to take it.
    async fn publish(&self, properties: &Properties, body: &[u8]) {
        let confirmed = self
            .hostile
            .basic_publish("h2o", &self.name, true, properties, body)
            .await
            .unwrap();
        assert_eq!(confirmed, Confirmation::Ack);
    }

    /// The next answer on the hostile reply queue, decoded as an error reply.
    async fn error_answer(&mut self) -> PlatformError {
        let delivery = support::bounded("an answer", self.answers.next())
            .await
            .unwrap();
        let properties = delivery.properties.unwrap();
        let message_type = properties
            .headers
            .as_ref()
            .and_then(|h| h.get("messageType").cloned());
        assert_eq!(message_type, Some(FieldValue::text("error")));
        kernel_transport::codec::decode::<PlatformError>(
            kernel_transport::ContentType::Json,
            &delivery.body,
        )
        .unwrap()
    }

    /// A normal call succeeds (after what was published before it: work-queue order), the
    /// service refused `rejected` deliveries, and it is still on its first connection.
    async fn still_serves(self, rejected: Option<u64>) {
        let reply: HelloResponse = support::bounded(
            "a normal call",
            self.client
                .call(&self.name, "hello", &support::hello("after")),
        )
        .await
        .unwrap();
        assert_eq!(reply.greeting, "hello, after");
        if let Some(rejected) = rejected {
            assert_eq!(self.service_transport.rejected(), rejected);
        }
        assert_eq!(
            self.proxy.accepted(),
            1,
            "the service's connection was dropped and made again"
        );
        // Nothing is left to be redelivered forever.
        let probe = self.hostile_connection.open_channel().await.unwrap();
        let shared = QueueOptions {
            auto_delete: true,
            ..Default::default()
        };
        let left = probe
            .queue_declare(&self.name, shared, FieldTable::new())
            .await
            .unwrap();
        assert_eq!(left, 0, "messages left in the work queue");
        self.running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_not_utf8_are_rejected_without_requeue_and_counted() {
    let target = target().await;
    let mut bad_reply_to = request(&target, "hello", "m-1");
    bad_reply_to.reply_to = Some(not_utf8());
    let mut bad_message_id = request(&target, "hello", "m-2");
    bad_message_id.message_id = Some(not_utf8());
    let mut bad_correlation_id = request(&target, "hello", "m-3");
    bad_correlation_id.correlation_id = Some(not_utf8());
    for properties in [&bad_reply_to, &bad_message_id, &bad_correlation_id] {
        target.publish(properties, br#"{"name":"x"}"#).await;
    }
    // Work-queue order: the call in `still_serves` is handled after the three were refused.
    target.still_serves(Some(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_headers_are_read_leniently_or_refused() {
    let mut target = target().await;

    // Header names and values that are not UTF-8: skipped and read lossily, then served.
    let mut odd = request(&target, "hello", "m-odd");
    if let Some(headers) = odd.headers.as_mut() {
        headers.insert(not_utf8(), FieldValue::text("skipped"));
        headers.insert(
            "x-lossy",
            FieldValue::LongString(Bytes::from_static(&[0xff])),
        );
    }
    target.publish(&odd, br#"{"name":"odd"}"#).await;
    let delivery = support::bounded("the reply", target.answers.next())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&delivery.body).contains("hello, odd"));

    // Wrong field types: the endpoint header is a table, so there is no endpoint.
    let mut wrong_types = request(&target, "hello", "m-types");
    let mut headers = FieldTable::new();
    headers.insert("messageType", FieldValue::Array(vec![FieldValue::I8(1)]));
    headers.insert("service", FieldValue::F64(1.5));
    headers.insert("endpoint", FieldValue::Table(FieldTable::new()));
    headers.insert("deadline", FieldValue::Timestamp(u64::MAX));
    wrong_types.headers = Some(headers);
    target.publish(&wrong_types, b"{}").await;
    let error = target.error_answer().await;
    assert_eq!(error.code, codes::UNKNOWN_ENDPOINT);

    // An unknown message type is taken for a request (the contract's default).
    let mut unknown_type = request(&target, "hello", "m-unknown");
    if let Some(headers) = unknown_type.headers.as_mut() {
        *headers = headers
            .iter()
            .filter(|(name, _)| name.as_bytes() != b"messageType")
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        headers.insert("messageType", FieldValue::text("bogus"));
    }
    target.publish(&unknown_type, br#"{"name":"u"}"#).await;
    let delivery = support::bounded("the reply", target.answers.next())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&delivery.body).contains("hello, u"));

    // Nested 50 deep: refused without requeue.
    let mut table = FieldTable::new();
    for _ in 0..50 {
        let mut outer = FieldTable::new();
        outer.insert("t", FieldValue::Table(table));
        table = outer;
    }
    let mut deep = request(&target, "hello", "m-deep");
    if let Some(headers) = deep.headers.as_mut() {
        headers.insert("nested", FieldValue::Table(table));
    }
    target.publish(&deep, br#"{"name":"deep"}"#).await;
    target.still_serves(Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_input_is_refused_or_answered_without_being_reflected() {
    let mut target = target().await;

    // A body over the service's limit: refused without requeue.
    let big = vec![b' '; MAX_BODY as usize + 1];
    target
        .publish(&request(&target, "hello", "m-big"), &big)
        .await;

    // An endpoint name that fills nearly a whole frame: the answer does not repeat it, so it
    // fits (before, the reply was larger than a frame and the broker closed the connection).
    let huge = "e".repeat(120_000);
    target
        .publish(&request(&target, &huge, "m-huge"), b"{}")
        .await;
    let error = target.error_answer().await;
    assert_eq!(error.code, codes::UNKNOWN_ENDPOINT);
    assert!(error.description.len() < 200, "{}", error.description);

    // A session id over the service's limit: a typed error, the handler does not run.
    let mut long_session = request(&target, "hello", "m-session");
    if let Some(headers) = long_session.headers.as_mut() {
        let session = "s".repeat(kernel_server::DEFAULT_MAX_SESSION_ID + 1);
        headers.insert("sessionID", FieldValue::text(&session));
    }
    target.publish(&long_session, br#"{"name":"s"}"#).await;
    let error = target.error_answer().await;
    assert_eq!(error.code, codes::SESSION_ID_TOO_LONG);

    target.still_serves(Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_stray_replies_and_pings_leave_both_sides_serving() {
    let target = target().await;
    let service_instance = target.service_transport.instance_queue().to_owned();
    let client_instance = target.client_transport.instance_queue().to_owned();
    let mut stray = Properties::default();
    let mut headers = FieldTable::new();
    headers.insert("messageType", FieldValue::text("reply"));
    stray.headers = Some(headers);
    let mut unreadable = Properties::default();
    unreadable.correlation_id = Some(not_utf8());
    let mut ping = Properties::default();
    let mut headers = FieldTable::new();
    headers.insert("messageType", FieldValue::text("heartbeat"));
    ping.headers = Some(headers);
    ping.reply_to = Some("instance-nobody".into());

    // Bounded: 12 000 messages, sent without waiting for each confirm.
    let answers = target.hostile_connection.open_channel().await.unwrap();
    for n in 0..4_000u32 {
        stray.correlation_id = Some(format!("stray-{n}").into());
        for queue in [&service_instance, &client_instance] {
            let properties = if n % 2 == 0 { &stray } else { &unreadable };
            answers
                .basic_publish("h2o.direct", queue, false, properties, b"{}")
                .await
                .unwrap();
        }
        answers
            .basic_publish("h2o", &target.name, false, &ping, b"PING")
            .await
            .unwrap();
    }
    // A synchronous method on the same channel returns once the broker has handled every
    // publish before it, so the pings are in the work queue before the normal call (on
    // another connection, hence not ordered with them) is sent.
    let shared = QueueOptions {
        auto_delete: true,
        ..Default::default()
    };
    answers
        .queue_declare(&target.name, shared, FieldTable::new())
        .await
        .unwrap();
    // Unreadable replies to the service's instance queue are counted as rejected, unless
    // dropped first (its bounds): no exact count.
    target.still_serves(None).await;
}
