//! `kernel watch`, `kernel services` / `instances` and `kernel bench`.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use kernel_proto::examples::Greeted;
use kernel_transport::{ContentType, Envelope};
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
    platform.publish(topic, publication).await;
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
/// to its proto3 JSON; without it (and no subscriber to name the type) the same bytes are
/// shown raw.
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
    assert_eq!(line["type_from"], "flag");
    assert_eq!(
        line["message"],
        serde_json::json!({"name": "ada", "count": "3"})
    );

    // Nobody subscribes to the topic, and `--wait 0s` waits for no announcement.
    let args = ["--json", "--wait", "0s"];
    let stdout = watch_one(&platform, &topic, &args, publication()).await;
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

/// A small bench completes every call and reports throughput, percentiles and a histogram
/// holding every call; no progress bar reaches a stderr that is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_throughput_latency_and_a_histogram() {
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
            "--duration",
            "60s",
            "--json",
        ])
        .await;
    run.assert_code(0);
    assert_eq!(run.stderr(), "", "no progress bar in a pipe");
    let report = run.json();
    assert_eq!(report["ok"], 20);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["stopped_by"], "count");
    assert!(report["calls_per_second"].as_f64().unwrap() > 0.0);
    let ms = |name: &str| {
        report[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {report}"))
    };
    assert!(ms("p50_ms") > 0.0);
    assert!(ms("p90_ms") >= ms("p50_ms"));
    assert!(ms("p99_ms") >= ms("p90_ms"));
    assert!(ms("p999_ms") >= ms("p99_ms"));
    assert!(ms("max_ms") >= ms("p999_ms"));
    assert!(ms("mean_ms") > 0.0);
    let histogram = report["histogram"].as_array().unwrap();
    let calls: u64 = histogram.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(calls, 20, "{report}");
    let bounds: Vec<f64> = histogram
        .iter()
        .map(|b| b["le_ms"].as_f64().unwrap())
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
    assert!(*bounds.last().unwrap() >= ms("max_ms") * 0.999, "{report}");
    assert_eq!(report["error_codes"], serde_json::json!({}));

    let run = platform
        .run(&["bench", &platform.greeter, "hello", "--count", "5"])
        .await;
    run.assert_code(0);
    let text = run.stdout();
    assert!(text.contains("CALLS/S"), "{text}");
    assert!(text.contains("P99.9"), "{text}");
    assert!(text.contains("LATENCY"), "{text}");
    assert!(text.contains('#'), "{text}");
}

/// `--duration` alone bounds a run by time: it stops starting calls when the time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_for_a_duration_stops_when_the_time_is_up() {
    let platform = Platform::start().await;
    let run = platform
        .run(&[
            "bench",
            &platform.greeter,
            "hello",
            r#"{"name":"ada"}"#,
            "--duration",
            "300ms",
            "--concurrency",
            "2",
            "--json",
        ])
        .await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["stopped_by"], "duration");
    assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
    let seconds = report["seconds"].as_f64().unwrap();
    // Until the deadline, plus the calls in flight then (each within the 5 s --timeout).
    assert!((0.3..5.3).contains(&seconds), "{report}");

    // A request the service refuses: every call fails, the run exits 1 with the first
    // error, and the errors are counted by code.
    let run = platform
        .run(&[
            "bench",
            &platform.greeter,
            "hello",
            r#"{"name":"nobody"}"#,
            "--count",
            "3",
            "--json",
        ])
        .await;
    run.assert_code(1);
    assert!(
        run.stderr().contains("com.example.nobody"),
        "{}",
        run.stderr()
    );
    // One JSON document on stdout: the report.
    let report = run.json();
    assert_eq!(report["ok"], 0);
    assert_eq!(report["errors"], 3);
    assert_eq!(report["error_codes"]["com.example.nobody"], 3);
    assert_eq!(report["histogram"], serde_json::json!([]));
}
