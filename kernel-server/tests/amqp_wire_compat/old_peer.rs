//! A v1 peer written with lapin alone, as `docs/wire.md` v1 says: what a process not yet
//! upgraded looks like to the kernel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use crate::fixture::{Fixture, fixture, property};
use crate::support;

/// A v1 process written with lapin alone: one connection, its instance queue consumed.
pub(crate) struct OldPeer {
    _connection: Connection,
    pub(crate) channel: Channel,
    pub(crate) instance_queue: String,
    pub(crate) inbox: Consumer,
}

impl OldPeer {
    pub(crate) async fn connect() -> OldPeer {
        let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
        let connection = support::bounded(
            "a lapin connection",
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await
        .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for (name, kind) in [
            ("h2o", ExchangeKind::Direct),
            ("h2o.direct", ExchangeKind::Direct),
            ("h2o.topic", ExchangeKind::Topic),
        ] {
            channel
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await
                .unwrap();
        }
        let instance_queue = format!("instance-{}", kernel_transport::new_message_id());
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let inbox = Self::consume(
            &channel,
            &instance_queue,
            exclusive,
            "h2o.direct",
            &instance_queue,
        )
        .await;
        OldPeer {
            _connection: connection,
            channel,
            instance_queue,
            inbox,
        }
    }

    /// Declares `queue`, binds it to `exchange` with `key` and consumes it (no acks).
    async fn consume(
        channel: &Channel,
        queue: &str,
        options: QueueDeclareOptions,
        exchange: &str,
        key: &str,
    ) -> Consumer {
        channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        channel
            .basic_consume(queue.into(), "".into(), no_ack, FieldTable::default())
            .await
            .unwrap()
    }

    /// Consumes `service`'s work queue (or, with a topic, its subscription queue), declared as
    /// wire.md §3 says.
    pub(crate) async fn serve(&self, service: &str, topic: Option<&str>) -> Consumer {
        let shared = QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        };
        match topic {
            None => Self::consume(&self.channel, service, shared, "h2o", service).await,
            Some(topic) => {
                let queue = format!("{service}:{topic}");
                Self::consume(&self.channel, &queue, shared, "h2o.topic", topic).await
            }
        }
    }

    pub(crate) async fn publish(&self, message: &Fixture) {
        self.channel
            .basic_publish(
                message.exchange.as_str().into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: message.mandatory,
                    ..Default::default()
                },
                &message.payload,
                message.basic_properties(),
            )
            .await
            .unwrap();
    }

    /// A recorded request or ping, readdressed: a fresh message id, this peer's instance
    /// queue, `service`, and a deadline 10 s from now.
    pub(crate) fn replay(&self, name: &'static str, service: &str) -> Fixture {
        let mut message = fixture(name);
        message.routing_key = service.to_owned();
        message.set_property("message_id", &kernel_transport::new_message_id());
        message.set_property("reply_to", &self.instance_queue);
        if message.headers.contains_key("service") {
            message.set_header("service", service);
        }
        if message.headers.contains_key("deadline") {
            let deadline = SystemTime::now() + Duration::from_secs(10);
            let ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis();
            message.set_header("deadline", &ms.to_string());
            message.set_property("expiration", "10000");
        }
        message
    }

    pub(crate) async fn next(&mut self) -> Delivery {
        next(
            &mut self.inbox,
            "a message on the old peer's instance queue",
        )
        .await
    }
}

pub(crate) async fn next(consumer: &mut Consumer, what: &str) -> Delivery {
    support::bounded(what, consumer.next())
        .await
        .expect("the consumer ended")
        .unwrap()
}

/// A recorded answer to `delivery`: correlated with it and sent to its `reply_to`.
pub(crate) fn answer(name: &'static str, delivery: &Delivery) -> Fixture {
    let mut message = fixture(name);
    message.routing_key = property(delivery.properties.reply_to());
    message.set_property(
        "correlation_id",
        &property(delivery.properties.message_id()),
    );
    message
}
