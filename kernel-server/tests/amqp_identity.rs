//! The sender's identity on a real RabbitMQ (`docs/wire.md` §4.1, `docs/security.md`): every
//! message a kernel transport publishes carries its login as `user_id`, the receiver reads it
//! as `Envelope::user_id`, and the broker refuses a publisher that claims another user's.
//!
//! Uses the test users `cargo xtask services up` makes (`KERNEL_AMQP_URL_ALPHA`,
//! `KERNEL_AMQP_URL_BETA`, docs/services.md "Test users") beside `KERNEL_AMQP_URL` (`guest`).
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use kernel_testkit::{bounded, engine_address, unique};
use kernel_transport::{
    AmqpTransport, ContentType, Deliveries, Destination, Envelope, Source, Transport,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

const ALPHA: &str = "kernel.test.alpha";
const BETA: &str = "kernel.test.beta";

async fn connect(var: &str) -> AmqpTransport {
    let url = engine_address(var);
    bounded(
        &format!("a connection as {var}"),
        AmqpTransport::connect(&url),
    )
    .await
    .unwrap()
}

/// A request to `service` that claims to come from someone else.
fn forged_request(service: &str, claim: &str) -> Envelope {
    let mut request = Envelope::request(service, "who", ContentType::Protobuf, "x".into());
    request.user_id = claim.to_owned();
    request.from = claim.to_owned();
    request
}

async fn next(deliveries: &mut Deliveries, what: &str) -> Envelope {
    let delivery = bounded(what, deliveries.next()).await.unwrap();
    let (envelope, acker) = delivery.into_parts();
    acker.ack().await.unwrap();
    envelope
}

/// Requests through alpha, beta and guest arrive with each one's login as `user_id`, whatever
/// the envelope claimed; so do a reply and a publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_with_its_publishers_login_as_user_id() {
    let (alpha, beta, guest) = (
        connect("KERNEL_AMQP_URL_ALPHA").await,
        connect("KERNEL_AMQP_URL_BETA").await,
        connect("KERNEL_AMQP_URL").await,
    );
    assert_eq!(
        (alpha.user(), beta.user(), guest.user()),
        (ALPHA, BETA, "guest")
    );

    let service = unique("identity");
    let mut work = guest
        .consume(Source::Service {
            name: &service,
            capacity: 8,
        })
        .await
        .unwrap();
    for (sender, expected) in [(&alpha, ALPHA), (&beta, BETA), (&guest, "guest")] {
        let claim = "com.example.admin";
        sender
            .send(
                Destination::Service(&service),
                forged_request(&service, claim),
            )
            .await
            .unwrap();
        let request = next(&mut work, "the request").await;
        assert_eq!(request.user_id, expected, "the claim {claim:?} is not sent");
        assert_eq!(request.from, claim, "from is only what the sender wrote");
    }

    // A reply (on the channel without confirms) from beta to alpha's instance queue.
    let mut inbox = alpha.consume(Source::Instance).await.unwrap();
    let mut reply = forged_request(&service, ALPHA).reply(ContentType::Protobuf, "y".into());
    reply.user_id = ALPHA.to_owned();
    beta.send(Destination::Instance(alpha.instance_queue()), reply)
        .await
        .unwrap();
    let reply = bounded("the reply", inbox.next()).await.unwrap().envelope;
    assert_eq!(reply.user_id, BETA);

    // A publication from alpha to a subscription guest consumes.
    let topic = unique("identity.topic");
    let mut subscription = guest
        .consume(Source::Subscription {
            service: &service,
            topic: &topic,
            capacity: 8,
        })
        .await
        .unwrap();
    let publication = Envelope::publication(&topic, ContentType::Protobuf, "z".into());
    alpha
        .send(Destination::Topic(&topic), publication)
        .await
        .unwrap();
    assert_eq!(
        next(&mut subscription, "the publication").await.user_id,
        ALPHA
    );
}

/// A raw publisher logged in as beta that claims to be alpha is refused: the broker closes
/// its channel (`PRECONDITION_FAILED`) instead of confirming, and the consumer never sees the
/// forged message. A message from beta without `user_id`, published after the refusal, is the
/// first the consumer gets, with an unknown sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_claiming_another_users_id_is_refused_by_the_broker() {
    let guest = connect("KERNEL_AMQP_URL").await;
    let service = unique("identity.forged");
    let mut work = guest
        .consume(Source::Service {
            name: &service,
            capacity: 8,
        })
        .await
        .unwrap();

    let url = engine_address("KERNEL_AMQP_URL_BETA");
    let connection = bounded(
        "a lapin connection as beta",
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .unwrap();
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let forger = connection.create_channel().await.unwrap();
    forger
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let forged = BasicProperties::default().with_user_id(ALPHA.into());
    // The refusal may come as the publish's own error or as its confirm's: either way, never
    // an ack.
    let published = async {
        forger
            .basic_publish(
                "h2o".into(),
                service.as_str().into(),
                mandatory,
                b"forged",
                forged,
            )
            .await?
            .await
    };
    let outcome = bounded("the broker's answer to the forged publish", published).await;
    let error = outcome.expect_err("the broker accepted a forged user_id");
    assert!(
        error.to_string().contains("PRECONDITION_FAILED") || error.to_string().contains("user_id"),
        "refused for another reason: {error}"
    );
    assert!(
        !forger.status().connected(),
        "the forger's channel is closed"
    );

    let honest = connection.create_channel().await.unwrap();
    honest
        .basic_publish(
            "h2o".into(),
            service.as_str().into(),
            mandatory,
            b"marker",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    let first = next(&mut work, "the marker published after the refusal").await;
    assert_eq!(
        first.payload.as_ref(),
        b"marker",
        "the forged message reached the consumer"
    );
    assert_eq!(first.user_id, "", "no user_id: the sender is unknown");
}
