//! `kernel watch`, `kernel services` / `instances` and `kernel bench`.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use kernel_transport::{ContentType, Destination, Envelope};
use support::{Platform, bounded, unique};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A JSON publication on a topic is printed, decoded, by a running `watch --count 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_publication() {
    let platform = Platform::start().await;
    let topic = unique("test.cli.topic");
    let mut child = platform
        .command(&["watch", &topic, "--count", "1", "--for", "20s", "--json"])
        .spawn()
        .unwrap();
    // Publish only once the tool is subscribed: it says so on stderr.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = bounded("watch to subscribe", stderr.next_line())
        .await
        .unwrap();
    assert_eq!(ready.as_deref(), Some(format!("watching {topic}").as_str()));

    let publication = Envelope::publication(&topic, ContentType::Json, r#"{"answer":42}"#.into());
    platform
        .client
        .transport()
        .send(Destination::Topic(&topic), publication)
        .await
        .unwrap();
    let output = bounded("watch to exit", child.wait_with_output())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["topic"], topic.as_str());
    assert_eq!(line["message"]["answer"], 42);
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
