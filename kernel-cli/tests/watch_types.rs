//! `kernel watch` decodes a publication by the type something names, with no flag: the type
//! the topic's announced subscribers expect (the registry), or the one the platform publishes
//! on its own topics; raw when nothing names one. On the real RabbitMQ.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use kernel_proto::examples::Greeted;
use kernel_transport::{ContentType, Envelope};
use prost::Message;
use support::{Platform, Watching, bounded, unique};
use tokio::sync::mpsc::UnboundedReceiver;

fn greeted(topic: &str) -> (Envelope, usize) {
    let bytes = Greeted {
        name: "ada".into(),
        count: 3,
    }
    .encode_to_vec();
    let length = bytes.len();
    (
        Envelope::publication(topic, ContentType::Protobuf, bytes.into()),
        length,
    )
}

/// A platform with an audit service subscribed to `<name>.#` (it announces that it takes a
/// `Greeted` there), and `kernel watch <name>.greeted --json --count 1 --for 30s <args>`:
/// the platform, the topic, the watch, and what the auditor records.
async fn audited_watch(
    name: &str,
    args: &[&str],
) -> (Platform, String, Watching, UnboundedReceiver<Greeted>) {
    let mut platform = Platform::start().await;
    let prefix = unique(name);
    let recorded = platform.start_audit(&format!("{prefix}.#")).await;
    let topic = format!("{prefix}.greeted");
    let mut all = vec!["--json", "--count", "1", "--for", "30s"];
    all.extend_from_slice(args);
    let watching = platform.watch(&topic, &all).await;
    (platform, topic, watching, recorded)
}

/// The line for the publication of [`greeted`], decoded by the auditor's announcement.
fn assert_greeted_from_the_registry(line: &serde_json::Value) {
    assert_eq!(line["type"], "kernel.examples.v1.Greeted", "{line}");
    assert_eq!(line["type_from"], "registry", "{line}");
    assert_eq!(
        line["message"],
        serde_json::json!({"name": "ada", "count": "3"})
    );
}

/// A subscriber announces that it takes a `Greeted` on `PREFIX.#`: a protobuf publication on
/// `PREFIX.greeted` is decoded as one, with no `--type`. The watch may receive it before it
/// hears the announcement (every half second); it then holds it until it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_decodes_by_the_type_a_subscriber_announces() {
    let (platform, topic, mut watching, mut recorded) = audited_watch("cli.audited", &[]).await;
    let (publication, _) = greeted(&topic);
    platform.publish(&topic, publication).await;

    let line = watching.next_json().await;
    assert_eq!(line["topic"], topic.as_str());
    assert_greeted_from_the_registry(&line);
    assert_eq!(watching.exit_code().await, Some(0));
    // The subscriber whose announcement named the type got the publication too.
    let heard = bounded("the subscriber to record the publication", recorded.recv())
        .await
        .unwrap();
    assert_eq!(heard.name, "ada");
}

/// The platform's own topics need no flag: announcements on `kernel.monitor.discovery` are
/// decoded as `Announcement` (here the test greeter's, which announces every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_decodes_a_platform_topic_with_no_flag() {
    let platform = Platform::start().await;
    let mut watching = platform
        .watch("kernel.monitor.discovery", &["--json", "--for", "30s"])
        .await;
    let line = watching
        .next_json_where("/message/serviceName", &platform.greeter)
        .await;
    assert_eq!(line["type"], "kernel.platform.v1.Announcement", "{line}");
    assert_eq!(line["type_from"], "platform", "{line}");
    assert_eq!(line["message"]["serviceVersion"], "1.2.3", "{line}");
}

/// Nothing names the type of a publication on a topic nobody subscribes to: once `--wait`
/// has passed with no subscriber heard, it is shown raw, with no type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_raw_bytes_when_nothing_names_the_type() {
    let platform = Platform::start().await;
    let topic = unique("cli.unnamed");
    let mut watching = platform
        .watch(
            &topic,
            &["--json", "--count", "1", "--for", "30s", "--wait", "1s"],
        )
        .await;
    let (publication, length) = greeted(&topic);
    platform.publish(&topic, publication).await;

    let line = watching.next_json().await;
    assert!(line["type"].is_null(), "{line}");
    assert!(line["type_from"].is_null(), "{line}");
    assert_eq!(line["message"]["length"], length, "{line}");
    assert!(line["message"]["base64"].is_string(), "{line}");
    assert!(line["message"].get("error").is_none(), "{line}");
    assert_eq!(watching.exit_code().await, Some(0));
}

/// `--type` wins over what subscribers announce: the same publication, under a subscriber
/// that announces `Greeted`, decoded as another type names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_type_flag_wins_over_the_registry() {
    let (platform, topic, mut watching, _recorded) = audited_watch(
        "cli.flagged",
        &["--type", "kernel.examples.v1.HelloRequest"],
    )
    .await;
    let (publication, _) = greeted(&topic);
    platform.publish(&topic, publication).await;
    let line = watching.next_json().await;
    assert_eq!(line["type"], "kernel.examples.v1.HelloRequest", "{line}");
    assert_eq!(line["type_from"], "flag", "{line}");
    // Field 1 of a Greeted is HelloRequest's field 1 too: the name.
    assert_eq!(line["message"]["name"], "ada", "{line}");
    assert_eq!(watching.exit_code().await, Some(0));
}

/// Anyone who can publish can announce: hostile announcements on `kernel.monitor.discovery`
/// (bytes that are no announcement, a forged subscriber of `#` naming a type nobody has, and
/// subscribers of the very topic with a known type in announcements over the bounds: an
/// instance id of 100,000 bytes, 5,000 endpoints) neither stop the watch nor name the type.
/// (A forged subscriber within the bounds naming a type the tool has is believed until a more
/// specific real one is heard: `docs/cli.md` says so.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_announcements_neither_stop_the_watch_nor_name_the_type() {
    use kernel_proto::platform::{Announcement, AnnouncementEvent, EndpointInfo};

    let (platform, topic, mut watching, _recorded) = audited_watch("cli.hostile", &[]).await;

    let discovery = kernel_server::DISCOVERY_TOPIC;
    let announce = |announcement: Announcement| {
        Envelope::publication(
            discovery,
            ContentType::Protobuf,
            announcement.encode_to_vec().into(),
        )
    };
    let subscriber = |pattern: &str, message_type: &str| EndpointInfo {
        name: "forged".into(),
        subscribe: pattern.into(),
        request_type: message_type.into(),
        ..Default::default()
    };
    let forged = |instance_id: String, endpoints: Vec<EndpointInfo>| Announcement {
        event: AnnouncementEvent::Running.into(),
        instance_id,
        service_name: "com.example.forger".into(),
        endpoints,
        ..Default::default()
    };
    let hostile = [
        Envelope::publication(discovery, ContentType::Protobuf, vec![0xff; 64].into()),
        Envelope::publication(discovery, ContentType::Json, "{\"instanceId\":".into()),
        // Both more specific than the real subscriber's pattern, with a type the tool knows:
        // only their bounds keep them out.
        announce(forged(
            "x".repeat(100_000),
            vec![subscriber(&topic, "kernel.examples.v1.HelloRequest")],
        )),
        announce(forged(
            unique("forger"),
            vec![subscriber("#", "no.such.Type")],
        )),
        announce(forged(
            unique("forger"),
            (0..5_000)
                .map(|_| subscriber(&topic, "kernel.examples.v1.HelloRequest"))
                .collect(),
        )),
    ];
    for envelope in hostile {
        platform.publish(discovery, envelope).await;
    }
    let (publication, _) = greeted(&topic);
    platform.publish(&topic, publication).await;

    assert_greeted_from_the_registry(&watching.next_json().await);
    assert_eq!(watching.exit_code().await, Some(0));
}
