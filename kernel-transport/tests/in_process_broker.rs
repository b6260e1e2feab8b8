//! The in-process broker keeps the wire contract's queue semantics.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::sync::Arc;
use std::time::Duration;

use kernel_transport::{
    ContentType, Deliveries, Destination, Envelope, InProcessBroker, InProcessTransport, Source,
    Transport, TransportError,
};

/// Consumes the work queue of the service `svc` with the given prefetch.
async fn work_queue(transport: &InProcessTransport, capacity: u16) -> Deliveries {
    transport
        .consume(Source::Service {
            name: "svc",
            capacity,
        })
        .await
        .unwrap()
}

fn request(service: &str, n: u8) -> Envelope {
    Envelope::request(service, "ep", ContentType::Protobuf, vec![n].into())
}

/// A consumer never holds more than its capacity unacked; acking one lets the next through.
#[tokio::test]
async fn prefetch_bounds_unacked_deliveries() {
    let broker = InProcessBroker::new();
    let (server, client) = (broker.connect(), broker.connect());
    let mut work = work_queue(&server, 2).await;
    for n in 0..3 {
        client
            .send(Destination::Service("svc"), request("svc", n))
            .await
            .unwrap();
    }
    let first = work.next().await.unwrap();
    let _second = work.next().await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(50), work.next()).await;
    assert!(
        third.is_err(),
        "a third delivery arrived while two were unacked"
    );
    first.into_parts().1.ack().await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), work.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.envelope.payload.as_ref(), [2]);
}

/// A rejected delivery with requeue comes back.
#[tokio::test]
async fn rejected_deliveries_are_requeued() {
    let broker = InProcessBroker::new();
    let (server, client) = (broker.connect(), broker.connect());
    let mut work = work_queue(&server, 1).await;
    client
        .send(Destination::Service("svc"), request("svc", 7))
        .await
        .unwrap();
    let (envelope, acker) = work.next().await.unwrap().into_parts();
    acker.reject(true).await.unwrap();
    let again = work.next().await.unwrap();
    assert_eq!(again.envelope.message_id, envelope.message_id);
}

/// Competing consumers: each request goes to exactly one of them.
#[tokio::test]
async fn consumers_of_a_work_queue_compete() {
    let broker = InProcessBroker::new();
    let (a, b, client) = (broker.connect(), broker.connect(), broker.connect());
    let mut work_a = work_queue(&a, 100).await;
    let mut work_b = work_queue(&b, 100).await;
    for n in 0..10 {
        client
            .send(Destination::Service("svc"), request("svc", n))
            .await
            .unwrap();
    }
    let mut held = Vec::new(); // unsettled deliveries would go back to the queue when dropped
    while held.len() < 10 {
        tokio::select! {
            Some(d) = work_a.next() => held.push(d),
            Some(d) = work_b.next() => held.push(d),
        }
    }
    let mut seen: Vec<u8> = held.iter().map(|d| d.envelope.payload[0]).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    let extra = tokio::time::timeout(Duration::from_millis(20), work_a.next()).await;
    assert!(extra.is_err(), "a request was delivered twice");
}

/// The work queue goes with its last consumer, and requests then fail with no route.
#[tokio::test]
async fn the_last_consumer_leaving_deletes_the_queue() {
    let broker = InProcessBroker::new();
    let (server, client) = (broker.connect(), broker.connect());
    let work = work_queue(&server, 1).await;
    client
        .send(Destination::Service("svc"), request("svc", 1))
        .await
        .unwrap();
    drop(work);
    let error = client
        .send(Destination::Service("svc"), request("svc", 2))
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::NoRoute { destination } if destination == "svc"));
}

/// Topic subscriptions follow AMQP patterns; each subscription gets its own copy.
#[tokio::test]
async fn publications_reach_every_matching_subscription() {
    let broker = InProcessBroker::new();
    let (a, b, publisher) = (broker.connect(), broker.connect(), broker.connect());
    let mut exact = a
        .consume(Source::Subscription {
            service: "a",
            topic: "x.created",
            capacity: 8,
        })
        .await
        .unwrap();
    let mut pattern = b
        .consume(Source::Subscription {
            service: "b",
            topic: "x.*",
            capacity: 8,
        })
        .await
        .unwrap();
    let publication = Envelope::publication("x.created", ContentType::Json, "{}".into());
    publisher
        .send(Destination::Topic("x.created"), publication.clone())
        .await
        .unwrap();
    assert_eq!(
        exact.next().await.unwrap().envelope.message_id,
        publication.message_id
    );
    assert_eq!(
        pattern.next().await.unwrap().envelope.message_id,
        publication.message_id
    );
    // Nobody subscribed: not an error, just nobody gets it.
    publisher
        .send(Destination::Topic("y.created"), publication)
        .await
        .unwrap();
}

/// A process's instance queue has one consumer; bad names are typed errors.
#[tokio::test]
async fn instance_queues_have_one_consumer_and_names_are_checked() {
    let transport = InProcessBroker::new().connect();
    let _replies = transport.consume(Source::Instance).await.unwrap();
    assert!(matches!(
        transport.consume(Source::Instance).await,
        Err(TransportError::InstanceQueueTaken)
    ));
    let error = transport
        .send(Destination::Service(""), request("", 0))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        TransportError::InvalidName {
            what: "service",
            ..
        }
    ));
}

/// A delivery dropped without being settled (its handler died) goes back to the queue and
/// frees its prefetch slot.
#[tokio::test]
async fn unsettled_deliveries_return_to_the_queue() {
    let broker = InProcessBroker::new();
    let (server, client) = (broker.connect(), broker.connect());
    let mut work = work_queue(&server, 1).await;
    client
        .send(Destination::Service("svc"), request("svc", 9))
        .await
        .unwrap();
    let first = work.next().await.unwrap();
    let id = first.envelope.message_id.clone();
    drop(first);
    let again = tokio::time::timeout(Duration::from_secs(5), work.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.envelope.message_id, id);
    again.into_parts().1.ack().await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(20), work.next()).await;
    assert!(nothing.is_err(), "an acked delivery came back");
}

/// An envelope sent shared that already names its sender is queued as it is, not copied (a
/// call's request, which its retries send again); one that claims another sender is stamped
/// on a copy, and the sender's own stays as it was.
#[tokio::test]
async fn a_shared_envelope_is_queued_without_a_copy_unless_it_must_be_stamped() {
    let broker = InProcessBroker::new();
    let a = broker.connect_as("a");
    let mut work = work_queue(&a, 4).await;

    let mut honest = request("svc", 1);
    honest.user_id = "a".into();
    let honest = Arc::new(honest);
    a.send_shared(Destination::Service("svc"), Arc::clone(&honest))
        .await
        .unwrap();
    let delivery = work.next().await.unwrap();
    assert!(Arc::ptr_eq(&delivery.envelope, &honest), "copied");

    let mut forged = request("svc", 2);
    forged.user_id = "b".into();
    let forged = Arc::new(forged);
    a.send_shared(Destination::Service("svc"), Arc::clone(&forged))
        .await
        .unwrap();
    let delivery = work.next().await.unwrap();
    assert_eq!(delivery.envelope.user_id, "a", "the claim of b is replaced");
    assert_eq!(forged.user_id, "b", "the sender's envelope is not changed");
}

/// The broker stamps the sender's login on everything it sends, as RabbitMQ enforces: a
/// request, its reply and a publication each arrive with the sending transport's user, not
/// the one the envelope claims; `connect` logs in as `guest`.
#[tokio::test]
async fn every_envelope_arrives_with_its_senders_user_whatever_it_claimed() {
    let broker = InProcessBroker::new();
    let (a, b) = (broker.connect_as("a"), broker.connect_as("b"));
    let guest = broker.connect();
    assert_eq!((a.user(), b.user(), guest.user()), ("a", "b", "guest"));
    assert_eq!(InProcessBroker::DEFAULT_USER, "guest");

    let mut work = work_queue(&b, 4).await;
    let mut forged = request("svc", 1);
    forged.user_id = "b".into();
    a.send(Destination::Service("svc"), forged).await.unwrap();
    let delivery = work.next().await.unwrap();
    assert_eq!(delivery.envelope.user_id, "a", "the claim of b is replaced");

    let mut replies = a.consume(Source::Instance).await.unwrap();
    let mut reply = delivery
        .envelope
        .reply(ContentType::Protobuf, vec![2].into());
    reply.user_id = "a".into();
    b.send(Destination::Instance(a.instance_queue()), reply)
        .await
        .unwrap();
    assert_eq!(replies.next().await.unwrap().envelope.user_id, "b");

    let mut audit = b
        .consume(Source::Subscription {
            service: "audit",
            topic: "t",
            capacity: 4,
        })
        .await
        .unwrap();
    let publication = Envelope::publication("t", ContentType::Protobuf, vec![3].into());
    guest
        .send(Destination::Topic("t"), publication)
        .await
        .unwrap();
    assert_eq!(audit.next().await.unwrap().envelope.user_id, "guest");

    // A name no AMQP property can carry arrives as unknown, as it would on RabbitMQ.
    let long = broker.connect_as(&"x".repeat(256));
    long.send(Destination::Service("svc"), request("svc", 4))
        .await
        .unwrap();
    assert_eq!(work.next().await.unwrap().envelope.user_id, "");
}

/// A transport seen through `Arc<dyn Transport>` still says who it is.
#[test]
fn the_user_is_visible_through_a_shared_dyn_transport() {
    let transport: std::sync::Arc<dyn Transport> =
        std::sync::Arc::new(InProcessBroker::new().connect_as("svc.a"));
    assert_eq!(transport.user(), "svc.a");
    assert_eq!(std::sync::Arc::new(transport).user(), "svc.a");
}
