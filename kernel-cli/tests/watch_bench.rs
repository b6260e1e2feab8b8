//! `kernel watch`, `kernel services` / `instances` and `kernel bench`.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use kernel_proto::examples::Greeted;
use kernel_transport::{ContentType, Destination, Envelope};
use prost::Message;
use support::{Platform, bounded, unique};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Runs `kernel watch TOPIC --count 1 --for 20s` with `args`, publishes `publication` once
/// the tool says it is subscribed, and answers its stdout.
async fn watch_one(
    platform: &Platform,
    topic: &str,
    args: &[&str],
    publication: Envelope,
) -> String {
    let mut command = platform.command(&["watch", topic, "--count", "1", "--for", "20s"]);
    let mut child = command.args(args).spawn().unwrap();
    // Publish only once the tool is subscribed: it says so on stderr.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = bounded("watch to subscribe", stderr.next_line())
        .await
        .unwrap();
    assert_eq!(ready.as_deref(), Some(format!("watching {topic}").as_str()));
    platform
        .client
        .transport()
        .send(Destination::Topic(topic), publication)
        .await
        .unwrap();
    let output = bounded("watch to exit", child.wait_with_output())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A JSON publication on a topic is printed, decoded, by a running `watch --count 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_publication() {
    let platform = Platform::start().await;
    let topic = unique("test.cli.topic");
    let publication = Envelope::publication(&topic, ContentType::Json, r#"{"answer":42}"#.into());
    let stdout = watch_one(&platform, &topic, &["--json"], publication).await;
    let line: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(line["topic"], topic.as_str());
    assert_eq!(line["message"]["answer"], 42);
}

/// `--type` decodes a protobuf publication (a `Greeted`, from kernel-proto's descriptors)
/// to its proto3 JSON; without it the same bytes are shown raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_type_decodes_a_protobuf_publication() {
    let platform = Platform::start().await;
    let topic = unique("test.cli.greeted");
    let greeted = Greeted {
        name: "ada".into(),
        count: 3,
    };
    let bytes = greeted.encode_to_vec();
    let publication = || Envelope::publication(&topic, ContentType::Protobuf, bytes.clone().into());

    let args = ["--type", "kernel.examples.v1.Greeted", "--json"];
    let stdout = watch_one(&platform, &topic, &args, publication()).await;
    let line: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(line["type"], "kernel.examples.v1.Greeted");
    assert_eq!(
        line["message"],
        serde_json::json!({"name": "ada", "count": "3"})
    );

    let stdout = watch_one(&platform, &topic, &["--json"], publication()).await;
    let line: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(line["type"].is_null(), "{line}");
    assert_eq!(line["message"]["length"], bytes.len());
}

/// `--descriptor-set` adds a team's own types; an unknown type is a usage mistake (exit 2),
/// found before subscribing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_decodes_a_team_type_from_a_descriptor_set() {
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    };

    let platform = Platform::start().await;
    let set = FileDescriptorSet {
        file: vec![FileDescriptorProto {
            name: Some("team/v1/ping.proto".into()),
            package: Some("team.v1".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("Ping".into()),
                field: vec![FieldDescriptorProto {
                    name: Some("ping_id".into()),
                    json_name: Some("pingId".into()),
                    number: Some(1),
                    label: Some(Label::Optional as i32),
                    r#type: Some(Type::String as i32),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    std::fs::create_dir_all(&platform.config_dir).unwrap();
    let file = platform.config_dir.join("team.fds.bin");
    std::fs::write(&file, set.encode_to_vec()).unwrap();
    let file = file.to_str().unwrap();

    let topic = unique("test.cli.ping");
    // Field 1, length-delimited, "abc".
    let payload = vec![0x0a, 3, b'a', b'b', b'c'];
    let publication = Envelope::publication(&topic, ContentType::Protobuf, payload.into());
    let args = ["--descriptor-set", file, "--type", "team.v1.Ping"];
    let stdout = watch_one(&platform, &topic, &args, publication).await;
    // The human line: `TOPIC from SENDER: JSON`.
    assert!(stdout.starts_with(&format!("{topic} from ")), "{stdout}");
    assert!(stdout.ends_with(": {\"pingId\":\"abc\"}\n"), "{stdout}");

    let run = platform
        .run(&["watch", &topic, "--type", "team.v1.Ping", "--for", "5s"])
        .await;
    run.assert_code(2);
    assert!(
        run.stderr().contains("--descriptor-set"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("watching"), "{}", run.stderr());
}

/// `--for` bounds a watch that hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_for_a_while_ends_quietly() {
    let platform = Platform::start().await;
    let run = platform
        .run(&["watch", &unique("test.cli.quiet"), "--for", "500ms"])
        .await;
    run.assert_code(0);
    assert_eq!(run.stdout(), "");
}

/// The greeter (announcing every second) is listed with its version and endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_instances_list_what_is_announced() {
    let platform = Platform::start().await;
    let run = platform.run(&["services", "--wait", "3s", "--json"]).await;
    run.assert_code(0);
    let services = run.json();
    let greeter = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == platform.greeter.as_str())
        .unwrap_or_else(|| panic!("{services}"))
        .clone();
    assert_eq!(greeter["versions"][0], "1.2.3");
    assert!(
        greeter["endpoints"]
            .as_array()
            .unwrap()
            .contains(&"hello".into())
    );

    let run = platform
        .run(&["instances", &platform.greeter, "--wait", "3s"])
        .await;
    run.assert_code(0);
    let table = run.stdout();
    assert!(table.contains("UPPER95"), "{table}");
    assert!(table.contains("hello"), "{table}");
    assert!(
        table.contains(&format!("{} 1.2.3", platform.greeter)),
        "{table}"
    );
}

/// A small bench completes every call and reports throughput and percentiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_throughput_and_latency() {
    let platform = Platform::start().await;
    let run = platform
        .run(&[
            "bench",
            &platform.greeter,
            "hello",
            r#"{"name":"ada"}"#,
            "--count",
            "20",
            "--concurrency",
            "4",
            "--json",
        ])
        .await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["ok"], 20);
    assert_eq!(report["errors"], 0);
    assert!(report["calls_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["p99_ms"].as_f64().unwrap() >= report["p50_ms"].as_f64().unwrap());

    let run = platform
        .run(&["bench", &platform.greeter, "hello", "--count", "5"])
        .await;
    run.assert_code(0);
    assert!(run.stdout().contains("CALLS/S"));
}
