//! `kernel call`, `kernel health` and exit codes, against services on the real RabbitMQ.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use support::Platform;

/// A JSON request reaches the endpoint and its reply is printed as JSON, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_the_json_reply() {
    let platform = Platform::start().await;
    let run = platform
        .run(&["call", &platform.greeter, "hello", r#"{"name":"ada"}"#])
        .await;
    run.assert_code(0);
    assert_eq!(run.json()["greeting"], "hello ada");
}

/// An error reply prints kind, code and description and exits 1; `--json` prints it as
/// JSON on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_is_printed_and_exits_1() {
    let platform = Platform::start().await;
    let request = r#"{"name":"nobody"}"#;
    let run = platform
        .run(&["call", &platform.greeter, "hello", request])
        .await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("NOT_FOUND"), "{stderr}");
    assert!(stderr.contains("com.example.nobody"), "{stderr}");
    assert!(stderr.contains("nobody is here"), "{stderr}");

    let run = platform
        .run(&["call", &platform.greeter, "hello", request, "--json"])
        .await;
    run.assert_code(1);
    let error = run.json();
    assert_eq!(error["kind"], "NOT_FOUND");
    assert_eq!(error["code"], "com.example.nobody");
    assert_eq!(error["description"], "nobody is here");
}

/// No such service is exit 3 (nobody answered); a request that is not JSON, or no broker,
/// is exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_usage_mistakes_have_their_own_exit_codes() {
    let platform = Platform::start().await;
    let nobody = support::unique("test.cli.nobody");
    let run = platform
        .run(&["call", &nobody, "hello", "{}", "--timeout", "1s"])
        .await;
    run.assert_code(3);
    assert!(run.stderr().contains("NO_ROUTE") || run.stderr().contains("TIMEOUT"));

    platform
        .run(&["call", &platform.greeter, "hello", "{not json"])
        .await
        .assert_code(2);
    let run = platform
        .command(&["call", &platform.greeter, "hello"])
        .env_remove("KERNEL_AMQP_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
}

/// `health` is open: a table of the checks without signing in, and JSON with `--json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_a_table_anonymously() {
    let platform = Platform::start().await;
    let run = platform.run(&["health", &platform.greeter]).await;
    run.assert_code(0);
    let table = run.stdout();
    assert!(
        table.contains(&format!("service   {}", platform.greeter)),
        "{table}"
    );
    assert!(table.contains("healthy   yes"), "{table}");
    assert!(table.contains("CHECK"), "{table}");
    assert!(table.contains("kernel.transport.connection"), "{table}");
    assert!(
        !table.contains('\x1b'),
        "piped output is not coloured: {table:?}"
    );

    let run = platform.run(&["health", &platform.greeter, "--json"]).await;
    run.assert_code(0);
    let health = run.json();
    assert_eq!(health["serviceName"], platform.greeter.as_str());
    assert_eq!(health["healthy"], true);
}

/// `completions` prints a script for the shell, with no broker needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_need_no_broker() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kernel"))
        .args(["completions", "bash"])
        .env_remove("KERNEL_AMQP_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(script.contains("kernel__subcmd__call"), "{script}");
}

/// Colour is off in a pipe (stdout and stderr alike) and on with `--color always`, which
/// `NO_COLOR` does not override; `--color always` never colours JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_when_asked_or_on_a_terminal() {
    let platform = Platform::start().await;
    let run = platform
        .run(&["health", &platform.greeter, "--color", "always"])
        .await;
    run.assert_code(0);
    let table = run.stdout();
    assert!(table.contains("\x1b[32mhealthy\x1b[0m"), "{table:?}");

    let run = platform
        .run(&["call", &platform.greeter, "hello", r#"{"name":"nobody"}"#])
        .await;
    run.assert_code(1);
    assert!(!run.stderr().contains('\x1b'), "{:?}", run.stderr());
    let run = platform
        .command(&["call", &platform.greeter, "hello", r#"{"name":"nobody"}"#])
        .args(["--color", "always"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("NOT_FOUND\x1b[0m"), "{stderr:?}");

    let run = platform
        .run(&["health", &platform.greeter, "--json", "--color", "always"])
        .await;
    run.assert_code(0);
    assert_eq!(run.json()["healthy"], true);
}

/// `--check` fetches the endpoint's schema: a valid request is sent and its response
/// checked; a request with a field of the wrong type is refused with exit 4 and never sent
/// (the service's statistics count only the valid call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_check_refuses_a_request_that_does_not_match_the_schema() {
    let platform = Platform::start().await;
    let run = platform
        .run(&[
            "call",
            "--check",
            &platform.greeter,
            "hello",
            r#"{"name":"ada"}"#,
        ])
        .await;
    run.assert_code(0);
    assert_eq!(run.json()["greeting"], "hello ada");

    let wrong = r#"{"name":42}"#;
    let run = platform
        .run(&["call", "--check", &platform.greeter, "hello", wrong])
        .await;
    run.assert_code(4);
    let stderr = run.stderr();
    assert!(stderr.contains("the request does not match"), "{stderr}");
    assert!(stderr.contains("at /name"), "{stderr}");
    assert_eq!(run.stdout(), "");

    let run = platform
        .run(&[
            "call",
            "--check",
            &platform.greeter,
            "hello",
            wrong,
            "--json",
        ])
        .await;
    run.assert_code(4);
    let violation = run.json();
    assert_eq!(violation["kind"], "SCHEMA_VIOLATION");
    assert_eq!(violation["side"], "request");
    assert_eq!(violation["violations"][0]["path"], "/name");

    // Only the valid request reached `hello`.
    platform.login_ada().await;
    let hello = hello_stats(&platform).await;
    assert_eq!(hello["successCount"], "1", "{hello}");
    assert!(hello["errorCount"].is_null(), "{hello}");

    // Sent without --check, the same request does reach it (the count above would see it):
    // the service refuses it itself.
    let run = platform
        .run(&["call", &platform.greeter, "hello", wrong])
        .await;
    run.assert_code(1);
    assert!(run.stderr().contains("BAD_REQUEST"), "{}", run.stderr());
    let hello = hello_stats(&platform).await;
    assert_eq!(hello["successCount"], "2", "{hello}");

    // An endpoint the service does not have is its NOT_FOUND, from the schema request.
    platform
        .run(&["call", "--check", &platform.greeter, "nosuch"])
        .await
        .assert_code(1);
}

/// The `hello` row of the greeter's `stats` (the tool must be signed in as ada).
async fn hello_stats(platform: &Platform) -> serde_json::Value {
    let run = platform.run(&["stats", &platform.greeter, "--json"]).await;
    run.assert_code(0);
    let stats = run.json();
    stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "hello")
        .unwrap_or_else(|| panic!("no hello in {stats}"))
        .clone()
}
