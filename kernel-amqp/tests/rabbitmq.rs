//! kernel-amqp against a real RabbitMQ (`cargo xtask services up`): the protocol paths the
//! transport uses, and the inputs a strict client cannot read.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use bytes::Bytes;
use futures_util::StreamExt;
use kernel_amqp::{
    Channel, Confirmation, ConnectOptions, Connection, Consumer, DecodeError, Error, FieldTable,
    FieldValue, Limits, Properties, QueueOptions, ShortString,
};
use kernel_testkit::{bounded, engine_address, unique};

fn url() -> String {
    engine_address("KERNEL_AMQP_URL")
}

async fn connect(limits: Limits) -> Connection {
    let options = ConnectOptions::from_url(&url()).unwrap().limits(limits);
    bounded("connecting", Connection::connect(options))
        .await
        .unwrap()
}

/// A channel with a fresh auto-deleted queue, consumed with acks.
async fn queue(connection: &Connection) -> (Channel, String, Consumer) {
    let channel = connection.open_channel().await.unwrap();
    let name = unique("amqp");
    let options = QueueOptions {
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(&name, options, FieldTable::new())
        .await
        .unwrap();
    channel.basic_qos(10).await.unwrap();
    let consumer = channel
        .basic_consume(&name, &name, false, 10)
        .await
        .unwrap();
    (channel, name, consumer)
}

#[tokio::test]
async fn a_message_goes_round_with_confirms_and_acks() {
    let connection = connect(Limits::default()).await;
    let (channel, name, mut consumer) = queue(&connection).await;
    let publisher = connection.open_channel().await.unwrap();
    publisher.confirm_select().await.unwrap();
    let mut headers = FieldTable::new();
    headers.insert("service", FieldValue::text("greeter"));
    let mut properties = Properties::default();
    properties.message_id = Some("m-1".into());
    properties.headers = Some(headers);
    // Larger than one frame: split and reassembled.
    let body = vec![7u8; 300_000];
    let confirmed = publisher
        .basic_publish("", &name, true, &properties, &body)
        .await
        .unwrap();
    assert_eq!(confirmed, Confirmation::Ack);

    let delivery = bounded("the delivery", consumer.next()).await.unwrap();
    assert_eq!(delivery.properties.as_ref().unwrap(), &properties);
    assert_eq!(delivery.body.len(), body.len());
    assert_eq!(delivery.routing_key.as_bytes(), name.as_bytes());
    channel
        .basic_ack(delivery.delivery_tag, false)
        .await
        .unwrap();

    let unroutable = publisher
        .basic_publish("", &unique("nobody"), true, &properties, b"x")
        .await
        .unwrap();
    assert_eq!(unroutable, Confirmation::Returned);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn without_confirms_a_mandatory_message_nobody_takes_comes_back_on_returns() {
    let connection = connect(Limits::default()).await;
    let (channel, name, mut consumer) = queue(&connection).await;
    let publisher = connection.open_channel().await.unwrap();
    let mut returns = publisher.returns(4).await.unwrap();
    let mut properties = Properties::default();
    properties.message_id = Some("lost-1".into());
    let nobody = unique("nobody");
    // No confirm mode: the publish is queued, not confirmed.
    let sent = publisher
        .basic_publish("", &nobody, true, &properties, b"lost")
        .await
        .unwrap();
    assert_eq!(sent, Confirmation::NotRequested);
    let returned = bounded("the returned message", returns.next())
        .await
        .unwrap();
    assert_eq!(returned.code, 312, "NO_ROUTE");
    assert_eq!(returned.routing_key.as_bytes(), nobody.as_bytes());
    assert_eq!(
        returned.properties.unwrap().message_id,
        Some("lost-1".into())
    );
    assert_eq!(&returned.body[..], b"lost");

    // A routable mandatory message is delivered, and nothing comes back for it.
    properties.message_id = Some("found-1".into());
    publisher
        .basic_publish("", &name, true, &properties, b"found")
        .await
        .unwrap();
    let delivery = bounded("the delivery", consumer.next()).await.unwrap();
    assert_eq!(&delivery.body[..], b"found");
    channel
        .basic_ack(delivery.delivery_tag, false)
        .await
        .unwrap();
    assert!(
        futures_util::FutureExt::now_or_never(returns.next()).is_none(),
        "a delivered message came back"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn strings_that_are_not_utf8_arrive_as_bytes() {
    let connection = connect(Limits::default()).await;
    let (channel, name, mut consumer) = queue(&connection).await;
    let bad = ShortString::from(Bytes::from_static(&[0xc3, 0x28, 0xff]));
    let mut headers = FieldTable::new();
    headers.insert(
        bad.clone(),
        FieldValue::LongString(Bytes::from_static(&[0xfe])),
    );
    let mut properties = Properties::default();
    properties.message_id = Some(bad.clone());
    properties.reply_to = Some(bad.clone());
    properties.correlation_id = Some(bad.clone());
    properties.headers = Some(headers);
    channel
        .basic_publish("", &name, false, &properties, b"")
        .await
        .unwrap();
    let delivery = bounded("the delivery", consumer.next()).await.unwrap();
    let received = delivery.properties.unwrap();
    assert_eq!(received.reply_to, Some(bad.clone()));
    assert_eq!(received.message_id, Some(bad));
    channel
        .basic_ack(delivery.delivery_tag, false)
        .await
        .unwrap();
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn deep_tables_and_large_bodies_arrive_as_malformed_and_the_connection_stays() {
    let connection = connect(Limits::default().max_body(1024)).await;
    let (channel, name, mut consumer) = queue(&connection).await;

    let mut table = FieldTable::new();
    for _ in 0..50 {
        let mut outer = FieldTable::new();
        outer.insert("t", FieldValue::Table(table));
        table = outer;
    }
    let mut deep = Properties::default();
    deep.headers = Some(table);
    channel
        .basic_publish("", &name, false, &deep, b"deep")
        .await
        .unwrap();
    channel
        .basic_publish("", &name, false, &Properties::default(), &[1u8; 4096])
        .await
        .unwrap();
    channel
        .basic_publish("", &name, false, &Properties::default(), b"fine")
        .await
        .unwrap();

    let first = bounded("the deep one", consumer.next()).await.unwrap();
    assert!(
        matches!(first.properties, Err(DecodeError::TooDeep(_))),
        "{first:?}"
    );
    let second = bounded("the large one", consumer.next()).await.unwrap();
    assert!(
        matches!(
            second.properties,
            Err(DecodeError::TooLarge { size: 4096, .. })
        ),
        "{second:?}"
    );
    assert!(second.body.is_empty());
    let third = bounded("the fine one", consumer.next()).await.unwrap();
    assert_eq!(&third.body[..], b"fine");
    for delivery in [first, second] {
        channel
            .basic_reject(delivery.delivery_tag, false)
            .await
            .unwrap();
    }
    channel.basic_ack(third.delivery_tag, false).await.unwrap();
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn what_cannot_be_sent_is_refused_before_it_is_sent() {
    let connection = connect(Limits::default()).await;
    let (channel, name, mut consumer) = queue(&connection).await;
    let mut headers = FieldTable::new();
    headers.insert("big", FieldValue::text(&"x".repeat(connection.frame_max())));
    let mut properties = Properties::default();
    properties.headers = Some(headers);
    let refused = channel
        .basic_publish("", &name, false, &properties, b"")
        .await;
    assert!(
        matches!(refused, Err(Error::TooLarge { .. })),
        "{refused:?}"
    );
    let long = channel
        .basic_publish("", &"q".repeat(256), false, &Properties::default(), b"")
        .await;
    assert!(
        matches!(long, Err(Error::ShortStringTooLong { len: 256 })),
        "{long:?}"
    );

    channel
        .basic_publish("", &name, false, &Properties::default(), b"after")
        .await
        .unwrap();
    let delivery = bounded("the delivery", consumer.next()).await.unwrap();
    assert_eq!(&delivery.body[..], b"after");
}

#[tokio::test]
async fn a_channel_the_broker_closes_fails_alone() {
    let connection = connect(Limits::default()).await;
    let channel = connection.open_channel().await.unwrap();
    let name = unique("exchange");
    channel
        .exchange_declare(&name, kernel_amqp::ExchangeKind::Direct, false)
        .await
        .unwrap();
    let conflict = channel
        .exchange_declare(&name, kernel_amqp::ExchangeKind::Topic, false)
        .await;
    assert!(
        matches!(conflict, Err(Error::ChannelClosed { code: 406, .. })),
        "{conflict:?}"
    );
    let after = channel.basic_qos(1).await;
    assert!(
        matches!(after, Err(Error::ChannelClosed { .. })),
        "{after:?}"
    );
    let other = connection.open_channel().await.unwrap();
    other.queue_delete(&unique("absent")).await.unwrap();
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn a_wrong_password_is_access_refused() {
    let url = url().replacen("guest:guest", "guest:wrong", 1);
    let options = ConnectOptions::from_url(&url).unwrap();
    let refused = bounded("the refusal", Connection::connect(options)).await;
    assert!(
        matches!(refused, Err(Error::AccessRefused(_))),
        "{refused:?}"
    );
}

/// RabbitMQ sends a content header as one frame whatever the consumer's frame size: a header
/// larger than our frame_max is read whole up to the header limit, skipped beyond it, and the
/// connection stays in step either way.
#[tokio::test]
async fn headers_larger_than_a_frame_are_read_or_skipped_never_fatal() {
    let small_frames = |limits: Limits| async move {
        let options = ConnectOptions::from_url(&url())
            .unwrap()
            .frame_max(8192)
            .limits(limits);
        bounded("connecting", Connection::connect(options))
            .await
            .unwrap()
    };
    let publisher = connect(Limits::default()).await;
    let publishing = publisher.open_channel().await.unwrap();
    let mut headers = FieldTable::new();
    headers.insert("big", FieldValue::text(&"x".repeat(50_000)));
    let mut big = Properties::default();
    big.headers = Some(headers);

    for (limits, readable) in [
        (Limits::default(), true),
        (Limits::default().max_header(16 * 1024), false),
    ] {
        let consumer = small_frames(limits).await;
        let (channel, name, mut deliveries) = queue(&consumer).await;
        publishing
            .basic_publish("", &name, false, &big, b"body")
            .await
            .unwrap();
        publishing
            .basic_publish("", &name, false, &Properties::default(), b"next")
            .await
            .unwrap();
        let first = bounded("the big one", deliveries.next()).await.unwrap();
        assert_eq!(first.properties.is_ok(), readable, "{:?}", first.properties);
        if !readable {
            assert!(matches!(
                first.properties,
                Err(DecodeError::TooLarge {
                    what: "headers",
                    ..
                })
            ));
        }
        let next = bounded("the next one", deliveries.next()).await.unwrap();
        assert_eq!(&next.body[..], b"next");
        channel.basic_ack(next.delivery_tag, true).await.unwrap();
        assert!(!consumer.is_closed());
    }
}
