//! `kernel::telemetry`: log lines as configured, typed errors for bad configuration and a
//! second install, and (feature `otel`) spans exported in the trace their kernel trace id names.
//!
//! Only `a_second_init_is_a_typed_error` installs the global subscriber; every other test runs
//! its own subscriber on its thread (`tracing::dispatcher::with_default`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io;
use std::sync::{Arc, Mutex};

use figment::Figment;
use figment::providers::{Format, Toml};
use kernel::telemetry::{self, LogConfig, LogFormat};
use tracing_subscriber::fmt::MakeWriter;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Log output kept in memory, one `String` per line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap();
        String::from_utf8(bytes.clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn config(format: LogFormat, filter: &str) -> LogConfig {
    let mut config = LogConfig::default();
    config.format = format;
    config.filter = filter.to_owned();
    config
}

/// Runs `f` with the subscriber `config` describes, and returns what it logged.
fn logged(config: &LogConfig, f: impl FnOnce()) -> Vec<String> {
    let output = Captured::default();
    let (dispatch, _telemetry) =
        telemetry::dispatch_with_writer("com.example.greeter", config, output.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, f);
    output.lines()
}

fn handle_a_request() {
    let request = tracing::info_span!(
        "request",
        service = "com.example.greeter",
        endpoint = "hello",
        caller = "com.example.web",
        message_id = "m-1",
        trace_id = TRACE,
    );
    let _request = request.enter();
    tracing::info!(user = 42, "handled");
    let _db = tracing::info_span!("db", table = "users").entered();
    tracing::warn!("slow query");
}

/// A JSON line is one object carrying the event, the innermost span and every open span, so a
/// handler's line names its request even from inside a span of its own.
#[test]
fn json_lines_carry_the_fields_of_the_request_span() {
    let lines = logged(&config(LogFormat::Json, "info"), handle_a_request);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();

    let handled = &events[0];
    assert_eq!(handled["level"], "INFO");
    assert_eq!(handled["fields"]["message"], "handled");
    assert_eq!(handled["fields"]["user"], 42);
    assert_eq!(handled["span"]["name"], "request");
    assert_eq!(handled["span"]["service"], "com.example.greeter");
    assert_eq!(handled["span"]["endpoint"], "hello");
    assert_eq!(handled["span"]["trace_id"], TRACE);

    let slow = &events[1];
    assert_eq!(slow["fields"]["message"], "slow query");
    assert_eq!(slow["span"]["name"], "db");
    assert_eq!(slow["spans"][0]["name"], "request");
    assert_eq!(slow["spans"][0]["trace_id"], TRACE);
    assert_eq!(slow["spans"][1]["table"], "users");
}

/// A text line names its spans and their fields, without colour codes in a file.
#[test]
fn text_lines_name_the_request_span_and_its_trace() {
    let lines = logged(&config(LogFormat::Text, "info"), handle_a_request);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("request{"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("trace_id=\"{TRACE}\"")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("handled user=42"), "{}", lines[0]);
    assert!(!lines[0].contains('\u{1b}'), "{}", lines[0]);
    // The whole shape: every span field as name=value, an event's message bare, then its own.
    let span = format!(
        r#"request{{service="com.example.greeter" endpoint="hello" caller="com.example.web" message_id="m-1" trace_id="{TRACE}"}}"#
    );
    assert!(
        lines[0].contains(&format!("{span}: telemetry: handled user=42")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(&format!(
            r#"{span}:db{{table="users"}}: telemetry: slow query"#
        )),
        "{}",
        lines[1]
    );
}

/// Text lines escape what could drive a terminal: a message carrying an escape sequence (from
/// a caller's input, say) reaches a log file that people `tail` as text, not as a command.
#[test]
fn text_lines_escape_terminal_control_characters() {
    let lines = logged(&config(LogFormat::Text, "info"), || {
        let from_the_wire = "\u{1b}[2J\u{7}name";
        tracing::warn!("unknown endpoint {from_the_wire}");
    });
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(!lines[0].contains('\u{1b}'), "{:?}", lines[0]);
    assert!(!lines[0].contains('\u{7}'), "{:?}", lines[0]);
    assert!(
        lines[0].ends_with(r"unknown endpoint \x1b[2J\x07name"),
        "{:?}",
        lines[0]
    );
}

/// A span's fields are escaped too, and so is a newline anywhere, including a field given with
/// `%`, which text lines do not quote: a name from the wire logged that way is still one line.
#[test]
fn text_lines_escape_span_fields_and_newlines() {
    let from_the_wire = "web\n2026-12-03T00:00:00Z  INFO forged\u{1b}[2J\u{9b}";
    let lines = logged(&config(LogFormat::Text, "info"), || {
        let _request = tracing::info_span!("request", caller = %from_the_wire).entered();
        tracing::info!(endpoint = %from_the_wire, "bad endpoint {from_the_wire}");
    });
    assert_eq!(lines.len(), 1, "a field forged a line: {lines:#?}");
    let escaped = r"web\n2026-12-03T00:00:00Z  INFO forged\x1b[2J\u{9b}";
    assert!(
        lines[0].contains(&format!("request{{caller={escaped}}}: ")),
        "{:?}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(&format!("bad endpoint {escaped} endpoint={escaped}")),
        "{:?}",
        lines[0]
    );
    assert!(!lines[0].chars().any(char::is_control), "{:?}", lines[0]);
}

/// A string field is quoted with its own quotes and backslashes escaped: a caller named
/// `web" endpoint="admin` cannot make its line say that it called `admin`.
#[test]
fn text_lines_quote_string_fields_so_they_cannot_pass_for_more_fields() {
    let from_the_wire = r#"web" endpoint="admin\"#;
    let lines = logged(&config(LogFormat::Text, "info"), || {
        let _request =
            tracing::info_span!("request", caller = from_the_wire, endpoint = "hello").entered();
        tracing::info!("handled");
    });
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(r#"request{caller="web\" endpoint=\"admin\\" endpoint="hello"}: "#),
        "{:?}",
        lines[0]
    );
}

/// An error field is followed by its sources, as tracing-subscriber writes them; `log.*`
/// metadata (from `log` records) is not repeated as fields.
#[test]
fn text_lines_name_an_errors_sources_and_skip_log_metadata() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("reply not sent")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    let lines = logged(&config(LogFormat::Text, "info"), || {
        let error = Outer(std::io::Error::other("broker\ngone"));
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            log.target = "x",
            "failed"
        );
    });
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].ends_with(r"failed error=reply not sent error.sources=[broker\ngone]"),
        "{:?}",
        lines[0]
    );
}

/// The filter keeps what it names and nothing else.
#[test]
fn the_filter_drops_what_it_excludes() {
    let lines = logged(&config(LogFormat::Text, "warn"), handle_a_request);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("slow query"), "{}", lines[0]);
}

/// A filter that does not parse fails with the configuration code, naming the filter.
#[test]
fn an_invalid_filter_is_a_typed_error_naming_it() {
    let error = telemetry::dispatch_with_writer(
        "com.example.greeter",
        &config(LogFormat::Text, "info,kernel=loud"),
        Captured::default(),
    )
    .unwrap_err();
    assert_eq!(error.code(), kernel::INVALID_CONFIG);
    assert!(error.description().contains("info,kernel=loud"), "{error}");
}

/// The `[log]` section of a TOML configuration reads into `LogConfig`; a bad value or an unknown
/// key is refused with a message naming it.
#[test]
fn log_config_reads_the_log_section_and_refuses_what_it_does_not_know() {
    let read = |toml: &str| {
        Figment::from(Toml::string(toml))
            .extract_inner::<LogConfig>("log")
            .map_err(|e| e.to_string())
    };

    let config = read("[log]\nformat = \"json\"\nfilter = \"debug\"").unwrap();
    assert_eq!(config.format, LogFormat::Json);
    assert_eq!(config.filter, "debug");
    assert_eq!(read("[log]").unwrap(), LogConfig::default());

    let bad_format = read("[log]\nformat = \"yaml\"").unwrap_err();
    assert!(bad_format.contains("yaml"), "{bad_format}");
    let typo = read("[log]\nfiltre = \"debug\"").unwrap_err();
    assert!(typo.contains("filtre"), "{typo}");

    let json: LogConfig =
        serde_json::from_str(r#"{ "format": "json", "filter": "debug" }"#).unwrap();
    assert_eq!(json, config);
    assert_eq!(
        serde_json::from_value::<LogConfig>(serde_json::to_value(&json).unwrap()).unwrap(),
        json
    );
}

/// The process has one global subscriber: installing a second is a typed error, not a panic.
#[test]
fn a_second_init_is_a_typed_error() {
    let output = Captured::default();
    let config = config(LogFormat::Text, "info");
    let _telemetry =
        telemetry::init_with_writer("com.example.greeter", &config, output.clone()).unwrap();
    let error = telemetry::init("com.example.greeter", &config).unwrap_err();
    assert_eq!(error.code(), telemetry::ALREADY_INSTALLED);

    // The first one is still the one installed.
    tracing::info!("still here");
    assert!(
        output
            .lines()
            .iter()
            .any(|line| line.contains("still here")),
        "{:#?}",
        output.lines()
    );
}

#[cfg(feature = "otel")]
mod otel {
    //! Span export to a fake OTLP/HTTP collector on 127.0.0.1:0 that decodes what it receives.

    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use prost::Message;

    use super::*;

    /// The fields of `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest` a
    /// collector reads, by their tag numbers in the OTLP protos: decoding with messages of our
    /// own also checks the exporter's wire format.
    mod otlp {
        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct ExportTraceServiceRequest {
            #[prost(message, repeated, tag = "1")]
            pub(super) resource_spans: Vec<ResourceSpans>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct ResourceSpans {
            #[prost(message, optional, tag = "1")]
            pub(super) resource: Option<Resource>,
            #[prost(message, repeated, tag = "2")]
            pub(super) scope_spans: Vec<ScopeSpans>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct Resource {
            #[prost(message, repeated, tag = "1")]
            pub(super) attributes: Vec<KeyValue>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct KeyValue {
            #[prost(string, tag = "1")]
            pub(super) key: String,
            #[prost(message, optional, tag = "2")]
            pub(super) value: Option<AnyValue>,
        }

        /// Only `string_value` (tag 1) of the `oneof`; other variants are skipped.
        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct AnyValue {
            #[prost(string, tag = "1")]
            pub(super) string_value: String,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct ScopeSpans {
            #[prost(message, repeated, tag = "2")]
            pub(super) spans: Vec<Span>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct Span {
            #[prost(bytes = "vec", tag = "1")]
            pub(super) trace_id: Vec<u8>,
            #[prost(bytes = "vec", tag = "2")]
            pub(super) span_id: Vec<u8>,
            #[prost(bytes = "vec", tag = "4")]
            pub(super) parent_span_id: Vec<u8>,
            #[prost(string, tag = "5")]
            pub(super) name: String,
            #[prost(message, repeated, tag = "9")]
            pub(super) attributes: Vec<KeyValue>,
        }
    }

    /// One exported span as the collector saw it, ids in lowercase hex.
    #[derive(Debug, Clone)]
    struct Exported {
        service: String,
        name: String,
        trace_id: String,
        span_id: String,
        parent_span_id: String,
        attributes: HashMap<String, String>,
    }

    /// Accepts OTLP/HTTP requests on 127.0.0.1:0, answers 200, and sends each span it decodes.
    fn start_collector() -> (String, mpsc::Receiver<Exported>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (spans, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let spans = spans.clone();
                std::thread::spawn(move || serve(stream, &spans));
            }
        });
        (endpoint, received)
    }

    /// HTTP/1.1 requests on one connection until it closes: headers, a `content-length` body.
    fn serve(stream: TcpStream, spans: &mpsc::Sender<Exported>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            assert!(
                request_line.starts_with("POST /v1/traces "),
                "{request_line}"
            );
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            for span in decode(&body) {
                let _ = spans.send(span);
            }
            writer
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        }
    }

    fn decode(body: &[u8]) -> Vec<Exported> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let strings = |attributes: &[otlp::KeyValue]| {
            attributes
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().map(|v| v.string_value.clone());
                    (kv.key.clone(), value.unwrap_or_default())
                })
                .collect::<HashMap<_, _>>()
        };
        let request = otlp::ExportTraceServiceRequest::decode(body).unwrap();
        let mut exported = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            let service = strings(&resource.attributes)
                .remove("service.name")
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                exported.push(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: strings(&span.attributes),
                });
            }
        }
        exported
    }

    /// Waits at most five seconds for `count` spans.
    fn receive(spans: &mpsc::Receiver<Exported>, count: usize) -> Vec<Exported> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut received = Vec::new();
        while received.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match spans.recv_timeout(left) {
                Ok(span) => received.push(span),
                Err(_) => panic!("waited 5 s for {count} spans, got {received:#?}"),
            }
        }
        received
    }

    fn exporting_to(endpoint: String) -> LogConfig {
        let mut config = config(LogFormat::Text, "info");
        config.otlp_endpoint = Some(endpoint);
        config
    }

    /// A `call` or `request` span is exported in the trace its `trace_id` field names. Nested in
    /// a request of the same trace, a call is the request's child; in another trace, a root of
    /// that one. A non-W3C trace id is left alone. The guard is dropped on a current-thread runtime's only thread, as at the end
    /// of `#[tokio::main]`, and still flushes.
    #[tokio::test(flavor = "current_thread")]
    async fn exported_kernel_spans_belong_to_the_kernel_trace() {
        const OTHER: &str = "0af7651916cd43dd8448eb211c80319c";
        let (endpoint, spans) = start_collector();
        let (dispatch, telemetry) = telemetry::dispatch_with_writer(
            "com.example.greeter",
            &exporting_to(endpoint),
            Captured::default(),
        )
        .unwrap();

        tracing::dispatcher::with_default(&dispatch, || {
            let request = tracing::info_span!(
                "request",
                service = "com.example.greeter",
                endpoint = "hello",
                trace_id = %TRACE,
            );
            let _request = request.enter();
            tracing::info_span!("call", service = "com.example.users", trace_id = %TRACE)
                .in_scope(|| {});
            tracing::info_span!("call", service = "com.example.audit", trace_id = %OTHER)
                .in_scope(|| {});
            drop(_request);
            tracing::info_span!("request", service = "h2", trace_id = "h2-style-trace")
                .in_scope(|| {});
        });
        drop(telemetry);

        let spans = receive(&spans, 4);
        let find = |name: &str, service: &str| {
            spans
                .iter()
                .find(|s| s.name == name && s.attributes["service"] == service)
                .unwrap_or_else(|| panic!("no {name} span of {service} in {spans:#?}"))
        };
        let request = find("request", "com.example.greeter");
        let same_trace_call = find("call", "com.example.users");
        let other_trace_call = find("call", "com.example.audit");
        let h2 = find("request", "h2");

        assert!(spans.iter().all(|s| s.service == "com.example.greeter"));
        assert_eq!(request.trace_id, TRACE);
        assert_eq!(request.parent_span_id, "", "a root of the trace");
        assert_eq!(request.attributes["trace_id"], TRACE);
        assert_eq!(same_trace_call.trace_id, TRACE);
        assert_eq!(same_trace_call.parent_span_id, request.span_id);
        assert_eq!(other_trace_call.trace_id, OTHER);
        assert_eq!(other_trace_call.parent_span_id, "");
        // An H2 trace id is no W3C one: the span gets a fresh OpenTelemetry trace.
        assert!(![TRACE, OTHER].contains(&h2.trace_id.as_str()), "{h2:?}");
        assert_eq!(h2.trace_id.len(), 32);
        assert_eq!(h2.parent_span_id, "");
    }

    /// The spans the kernel itself opens, for a call through the in-process broker, are
    /// exported in the call's trace: the trace id the handler sees is the OpenTelemetry one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_real_call_and_its_request_share_the_kernel_trace() {
        use kernel::proto::examples::{HelloRequest, HelloResponse};
        use kernel::{Client, Endpoint, Error, Request, Service};

        async fn hello(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
            Ok(HelloResponse {
                greeting: request.trace_id().to_owned(),
                served_by: String::new(),
            })
        }

        let (endpoint, spans) = start_collector();
        let (dispatch, telemetry) = telemetry::dispatch_with_writer(
            "com.example.greeter",
            &exporting_to(endpoint),
            Captured::default(),
        )
        .unwrap();
        // A current-thread runtime: every task runs on this thread, under this subscriber.
        let default = tracing::dispatcher::set_default(&dispatch);

        let client =
            Client::new(kernel::transport::InProcessTransport::new()).calling_as("com.example.web");
        let service = Service::builder("com.example.greeter", &client)
            .endpoint(Endpoint::new("hello", hello).open())
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(service.serve_with_shutdown(async {
            stopped.await.ok();
        }));
        tokio::task::yield_now().await;
        let reply: HelloResponse = kernel_testkit::bounded(
            "the hello reply",
            client.call(
                "com.example.greeter",
                "hello",
                &HelloRequest { name: "ada".into() },
            ),
        )
        .await
        .unwrap();
        stop.send(()).ok();
        kernel_testkit::bounded("the service to stop", running)
            .await
            .unwrap()
            .unwrap();
        drop(default);
        drop(telemetry);

        let trace_id = reply.greeting;
        assert_eq!(trace_id.len(), 32, "{trace_id:?}");
        let spans = receive(&spans, 2);
        let call = spans.iter().find(|s| s.name == "call").unwrap();
        let request = spans.iter().find(|s| s.name == "request").unwrap();
        assert_eq!(call.trace_id, trace_id);
        assert_eq!(request.trace_id, trace_id);
        assert_eq!(call.attributes["endpoint"], "hello");
        assert_eq!(request.attributes["caller"], "com.example.web");
    }

    /// An endpoint the exporter cannot use fails `init` with the configuration code.
    #[test]
    fn an_https_endpoint_is_a_typed_error() {
        let error = telemetry::dispatch_with_writer(
            "com.example.greeter",
            &exporting_to("https://collector.internal:4318".to_owned()),
            Captured::default(),
        )
        .unwrap_err();
        assert_eq!(error.code(), kernel::INVALID_CONFIG);
        assert!(
            error
                .description()
                .contains("https://collector.internal:4318")
        );
    }

    /// With no collector listening, dropping the guard returns instead of hanging.
    #[test]
    fn dropping_the_guard_returns_when_the_collector_is_down() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let (dispatch, telemetry) = telemetry::dispatch_with_writer(
            "com.example.greeter",
            &exporting_to(endpoint),
            Captured::default(),
        )
        .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("request", trace_id = %TRACE).in_scope(|| {});
        });

        let (dropped, done) = mpsc::channel();
        std::thread::spawn(move || {
            drop(telemetry);
            dropped.send(()).unwrap();
        });
        done.recv_timeout(Duration::from_secs(30))
            .expect("the guard was not dropped within 30 s");
    }
}
