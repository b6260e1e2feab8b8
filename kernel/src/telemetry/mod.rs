//! Log output and span export: [`init`] installs the process's `tracing` subscriber from a
//! [`LogConfig`] and hands back a [`Telemetry`] guard.
//!
//! The kernel's crates only emit: every call has a `call` span and every handled request a
//! `request` span, each with `service`, `endpoint`, `caller`, `message_id` and `trace_id`. What
//! becomes of them is the application's choice, made once in `main`:
//!
//! ```no_run
//! # fn main() -> Result<(), kernel::Error> {
//! // `no_run`: installs the process-wide subscriber, which a doctest must not do.
//! let mut config = kernel::telemetry::LogConfig::default(); // or the `[log]` section
//! config.format = kernel::telemetry::LogFormat::Json;
//! let _telemetry = kernel::telemetry::init("com.example.greeter", &config)?;
//! tracing::info!("started"); // one JSON object on stdout
//! # Ok(()) }
//! ```
//!
//! With the `otel` feature and `otlp_endpoint` set, spans are also exported to an
//! OpenTelemetry collector by OTLP/HTTP, and a `call` or `request` span belongs to the
//! OpenTelemetry trace whose id is its kernel `trace_id`: the id in the logs, in the `traceID`
//! header and in the tracing UI is one and the same.
//!
//! Nothing here is global until [`init`] is called: libraries never install a subscriber.

use std::io::IsTerminal;

use kernel_errors::Error;
use serde::{Deserialize, Serialize};
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::INVALID_CONFIG;

#[cfg(feature = "otel")]
mod otel;
mod text;

/// The code of [`init`] called when the process already has a global `tracing` subscriber
/// (a second [`init`], or another library's `tracing_subscriber::fmt().init()`).
pub const ALREADY_INSTALLED: &str = "kernel.telemetry.installed";

/// The environment variable that, when set and not empty, replaces [`LogConfig::filter`].
pub const RUST_LOG: &str = "RUST_LOG";

/// How a process logs, and where its spans go: the `[log]` section of the configuration.
///
/// Every field has a default, so an empty section (or none) means text lines on stdout at
/// `info`. Unknown keys are refused, so a typo fails at start instead of being ignored.
///
/// ```
/// use kernel::telemetry::{LogConfig, LogFormat};
///
/// let config: LogConfig = serde_json::from_str(r#"{ "format": "json", "filter": "debug" }"#)?;
/// assert_eq!(config.format, LogFormat::Json);
/// assert_eq!(config.filter, "debug");
/// assert_eq!(LogConfig::default().filter, "info");
///
/// let typo = serde_json::from_str::<LogConfig>(r#"{ "format": "yaml" }"#).unwrap_err();
/// assert!(typo.to_string().contains("yaml"), "{typo}");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// The shape of each log line on stdout. Default [`LogFormat::Text`].
    pub format: LogFormat,
    /// Which spans and events are kept: an [`EnvFilter`] directive such as `info` or
    /// `warn,kernel_client=debug`. Default `info`. The `RUST_LOG` environment variable, when
    /// set and not empty, wins over this value, so an operator can turn up one process's
    /// logging without editing its configuration. The filter applies to exported spans too.
    pub filter: String,
    /// The OpenTelemetry collector to export spans to, by OTLP over HTTP with protobuf bodies:
    /// its base URL, such as `http://127.0.0.1:4318` (`/v1/traces` is appended). Default none:
    /// no export. Plain `http://` only; run the collector (or its agent) beside the service.
    /// Spans are sent in batches (every 5 s, the first after 10 s; `OTEL_BSP_*` variables
    /// tune it) and when the [`Telemetry`] guard is dropped; a failed export is logged.
    /// A build without the `otel` feature refuses this key as unknown.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub otlp_endpoint: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            filter: "info".to_owned(),
            #[cfg(feature = "otel")]
            otlp_endpoint: None,
        }
    }
}

/// The shape of a log line: `text` or `json` in configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event, prefixed by its spans and their fields (in colour
    /// when stdout is a terminal). Every control character of every value (a newline, a
    /// terminal escape) is written as an escape (`\n`, `\x1b`), so text from the wire cannot
    /// forge a line or drive the terminal of whoever reads the log. The default.
    #[default]
    Text,
    /// One JSON object per line, for log collectors: `timestamp`, `level`, `target`,
    /// `fields` (the event's, with `message`), `span` (the innermost span: its `name` and
    /// fields) and `spans` (every open span, outermost first), so a handler's line carries the
    /// `service`, `endpoint` and `trace_id` of its `request` span.
    Json,
}

/// Keeps span export running; dropping it flushes the spans not yet sent and stops the
/// exporter. Hold it for the life of the process (`let _telemetry = ...` in `main`).
///
/// Without an exporter (no `otel` feature, or no `otlp_endpoint`) it holds
/// nothing, and the subscriber [`init`] installed keeps logging after it is dropped.
///
/// # Drop
/// With an exporter, dropping blocks until the spans still queued reach the collector, at
/// most 10 s, so the spans of the last requests are not lost at shutdown. A collector that
/// does not answer in time costs those spans (and a `warn` line), never a hung exit.
#[must_use = "dropping the guard stops span export"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    export: Option<otel::Export>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Telemetry");
        #[cfg(feature = "otel")]
        debug.field("exporting", &self.export.is_some());
        debug.finish()
    }
}

/// Installs the process's global `tracing` subscriber, as `config` says, for the service
/// `service` (the `service.name` of exported spans).
///
/// Log lines go to stdout. `log` records (from crates that use the `log` facade) go to the
/// same subscriber unless the application installed its own `log` logger.
///
/// # Errors
/// `InternalServerError` with code [`INVALID_CONFIG`] if the filter
/// (from `RUST_LOG` or [`LogConfig::filter`], named in the message) does not parse, or the
/// OTLP endpoint is not an `http://` URL; with code [`ALREADY_INSTALLED`] if the process
/// already has a global subscriber (a second call, say). Never panics.
///
/// # Examples
/// ```no_run
/// # fn main() -> Result<(), kernel::Error> {
/// // `no_run`: installs the process-wide subscriber, which a doctest must not do.
/// let _telemetry = kernel::telemetry::init("com.example.greeter", &Default::default())?;
/// let again = kernel::telemetry::init("com.example.greeter", &Default::default());
/// assert_eq!(again.unwrap_err().code(), kernel::telemetry::ALREADY_INSTALLED);
/// # Ok(()) }
/// ```
pub fn init(service: &str, config: &LogConfig) -> Result<Telemetry, Error> {
    let ansi = std::io::stdout().is_terminal();
    install(service, config, std::io::stdout, ansi)
}

/// [`init`] with log lines written to `writer` instead of stdout, without colour. For tests.
///
/// # Errors
/// As for [`init`].
#[doc(hidden)]
pub fn init_with_writer<W>(service: &str, config: &LogConfig, writer: W) -> Result<Telemetry, Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(service, config, writer, false)
}

/// The subscriber [`init`] would install, with log lines written to `writer`, as a
/// [`Dispatch`] for [`tracing::dispatcher::with_default`]; `RUST_LOG` is ignored, so that a
/// test does not depend on its environment. For tests.
///
/// # Errors
/// As for [`init`], except [`ALREADY_INSTALLED`].
#[doc(hidden)]
pub fn dispatch_with_writer<W>(
    service: &str,
    config: &LogConfig,
    writer: W,
) -> Result<(Dispatch, Telemetry), Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    dispatch(service, config, None, writer, false)
}

fn install<W>(service: &str, config: &LogConfig, writer: W, ansi: bool) -> Result<Telemetry, Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Checked first, so that a second call builds no exporter; `set_global_default` below
    // still decides if two threads race.
    if tracing::dispatcher::has_been_set() {
        return Err(already_installed());
    }
    let rust_log = std::env::var(RUST_LOG).ok();
    let (dispatch, telemetry) = dispatch(service, config, rust_log.as_deref(), writer, ansi)?;
    tracing::dispatcher::set_global_default(dispatch).map_err(|_| already_installed())?;
    // An application that installed its own `log` logger keeps it; that is not an error.
    let _ = tracing_log::LogTracer::init();
    Ok(telemetry)
}

fn already_installed() -> Error {
    Error::internal_server_error(
        ALREADY_INSTALLED,
        "a global tracing subscriber is already installed; call kernel::telemetry::init once, \
         before anything else installs one",
    )
}

/// Builds the subscriber: the filter, then the log lines, then (with `otel`) span export.
fn dispatch<W>(
    service: &str,
    config: &LogConfig,
    rust_log: Option<&str>,
    writer: W,
    ansi: bool,
) -> Result<(Dispatch, Telemetry), Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = env_filter(config, rust_log)?;
    let lines = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(text::TextFields)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(lines);

    #[cfg(feature = "otel")]
    {
        let export = match &config.otlp_endpoint {
            Some(endpoint) => Some(otel::Export::start(service, endpoint)?),
            None => None,
        };
        let layer = export.as_ref().map(otel::Export::layer);
        let subscriber = subscriber.with(layer);
        Ok((Dispatch::new(subscriber), Telemetry { export }))
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = service;
        Ok((Dispatch::new(subscriber), Telemetry {}))
    }
}

/// The filter: `RUST_LOG` when set and not empty, else [`LogConfig::filter`].
fn env_filter(config: &LogConfig, rust_log: Option<&str>) -> Result<EnvFilter, Error> {
    let (directives, from) = match rust_log.filter(|value| !value.trim().is_empty()) {
        Some(value) => (value, RUST_LOG),
        None => (config.filter.as_str(), "log.filter"),
    };
    EnvFilter::builder().parse(directives).map_err(|e| {
        Error::internal_server_error(
            INVALID_CONFIG,
            format!("log filter {directives:?} (from {from}) is invalid: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_the_configured_filter_when_set() {
        let config = LogConfig {
            filter: "nonsense=[".to_owned(),
            ..LogConfig::default()
        };
        assert!(env_filter(&config, Some("debug")).is_ok());

        let error = env_filter(&config, None).unwrap_err();
        assert_eq!(error.code(), INVALID_CONFIG);
        assert!(error.description().contains("nonsense=["), "{error}");
        assert!(error.description().contains("log.filter"), "{error}");

        let error = env_filter(&config, Some("  ")).unwrap_err();
        assert!(error.description().contains("log.filter"), "{error}");
    }

    #[test]
    fn a_bad_rust_log_is_named_in_the_error() {
        let error = env_filter(&LogConfig::default(), Some("kernel=loud")).unwrap_err();
        assert_eq!(error.code(), INVALID_CONFIG);
        assert!(error.description().contains("kernel=loud"), "{error}");
        assert!(error.description().contains(RUST_LOG), "{error}");
    }
}
