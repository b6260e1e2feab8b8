//! `kernel::telemetry`: log lines as configured, typed errors for bad configuration and a
//! second install.
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
        trace_id = %TRACE,
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
        lines[0].contains(&format!("trace_id={TRACE}")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("handled user=42"), "{}", lines[0]);
    assert!(!lines[0].contains('\u{1b}'), "{}", lines[0]);
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
