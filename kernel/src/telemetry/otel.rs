//! Span export by OTLP/HTTP, with kernel trace ids as OpenTelemetry trace ids.
//!
//! # How a kernel span joins its trace
//!
//! The kernel's `call` and `request` spans carry the call's trace id as a field, `trace_id`
//! (32 lowercase hex digits, a W3C trace id, for every trace a kernel client started). The
//! `tracing-opentelemetry` layer turns every field into an attribute of a span builder and
//! hands the builder, with the parent context it chose, to our [`KernelTracer`]. When the
//! builder is a `call` or `request` span with a W3C `trace_id` that its parent is not already
//! in, the tracer starts it as a root span of that trace: it builds the span with no parent
//! and has [`KernelIdGenerator`] return that trace id for the new trace (through a
//! thread-local that lives for that one synchronous call). A `call` made inside a `request` of
//! the same trace stays the request's child; an H2-style trace id that is not a W3C id is left
//! alone (the span gets a fresh OpenTelemetry trace).
//!
//! The request span is a root of the trace rather than a child of the caller's `call` span:
//! the caller's OpenTelemetry span id does not cross the wire (`traceparent` carries a fresh
//! span id), so there is no parent to point at. A trace view shows the caller's `call` and the
//! callee's `request` side by side under one trace id.
//!
//! Why a tracer and not a layer calling `set_parent`: a layer sees fields, but
//! `OpenTelemetrySpanExt::set_parent` needs a `tracing::Span` handle, which a layer does not
//! have; and the SDK gives a span without a valid parent a trace id from its id generator
//! only, never from the builder.

use std::cell::Cell;
use std::time::Duration;

use kernel_errors::Error;
use opentelemetry::trace::{SpanBuilder, TraceContextExt, TraceId, Tracer, TracerProvider};
use opentelemetry::{Context, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::INVALID_CONFIG;

/// The names of the kernel's spans that carry a `trace_id` field.
const KERNEL_SPANS: [&str; 2] = ["call", "request"];

/// How long one export (one HTTP request to the collector) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long dropping the guard waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running exporter: the tracer provider and the runtime its batches are sent from.
#[derive(Debug)]
pub(super) struct Export {
    provider: SdkTracerProvider,
    /// A runtime of its own (one worker thread), so that export works whatever runtime the
    /// application has or lacks, and so that a final flush from `drop`, even on a
    /// current-thread runtime's only thread, never waits on a runtime it is blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Export {
    /// Starts exporting to the collector at `endpoint` (base URL) as `service`.
    pub(super) fn start(service: &str, endpoint: &str) -> Result<Self, Error> {
        let traces = traces_url(endpoint)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kernel-otel-export")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::internal_server_error(INVALID_CONFIG, "cannot start the span exporter")
                    .with_source(e)
            })?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| {
                Error::internal_server_error(
                    INVALID_CONFIG,
                    format!("log.otlp_endpoint {endpoint:?} cannot be used: {e}"),
                )
            })?;
        // The batch processor spawns its loop on the current runtime: ours.
        let processor = {
            let _entered = runtime.enter();
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build()
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_id_generator(KernelIdGenerator::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        Ok(Export {
            provider,
            runtime: Some(runtime),
        })
    }

    /// The layer turning spans into OpenTelemetry spans for this exporter.
    pub(super) fn layer<S>(&self) -> OpenTelemetryLayer<S, KernelTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = KernelTracer {
            inner: self.provider.tracer("kernel"),
        };
        tracing_opentelemetry::layer().with_tracer(tracer)
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        // `shutdown` sends what is queued and waits for the collector, batch after batch, with
        // no overall bound of its own (the async processor ignores its timeout): wait for it
        // from a thread, at most SHUTDOWN_TIMEOUT.
        let provider = self.provider.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let waiting = std::thread::Builder::new()
            .name("kernel-otel-shutdown".to_owned())
            .spawn(move || {
                let _ = done.send(provider.shutdown());
            });
        let outcome = match waiting {
            Ok(_) => finished
                .recv_timeout(SHUTDOWN_TIMEOUT)
                .map_err(|_| format!("gave up after {SHUTDOWN_TIMEOUT:?}"))
                .and_then(|shutdown| shutdown.map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "spans not yet exported may be lost");
        }
        // Ends an export still running. Not `drop`: dropping a runtime inside another
        // runtime's task panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `<endpoint>/v1/traces`, for an `http://` base URL.
fn traces_url(endpoint: &str) -> Result<String, Error> {
    if !endpoint.starts_with("http://") {
        return Err(Error::internal_server_error(
            INVALID_CONFIG,
            format!(
                "log.otlp_endpoint must be an http:// URL (the collector's OTLP/HTTP port, \
                 e.g. http://127.0.0.1:4318), not {endpoint:?}"
            ),
        ));
    }
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// The SDK's tracer, starting kernel spans in the trace their `trace_id` field names.
#[derive(Debug)]
pub(super) struct KernelTracer {
    inner: SdkTracer,
}

impl Tracer for KernelTracer {
    type Span = <SdkTracer as Tracer>::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        let Some(trace_id) = kernel_trace_id(&builder) else {
            return self.inner.build_with_context(builder, parent_cx);
        };
        let parent = parent_cx.span();
        let parent = parent.span_context();
        if parent.is_valid() && parent.trace_id() == trace_id {
            return self.inner.build_with_context(builder, parent_cx);
        }
        NEXT_TRACE_ID.set(Some(trace_id));
        let span = self.inner.build_with_context(builder, &Context::new());
        NEXT_TRACE_ID.set(None);
        span
    }
}

/// The trace id a kernel span names: its `trace_id` attribute, if a W3C trace id.
fn kernel_trace_id(builder: &SpanBuilder) -> Option<TraceId> {
    if !KERNEL_SPANS.contains(&builder.name.as_ref()) {
        return None;
    }
    let value = builder
        .attributes
        .as_ref()?
        .iter()
        .find(|attribute| attribute.key.as_str() == "trace_id")
        .map(|attribute| &attribute.value)?;
    let Value::String(text) = value else {
        return None;
    };
    w3c_trace_id(text.as_str())
}

/// `text` as a trace id if it is 32 lowercase hex digits, not all zero (the W3C format).
fn w3c_trace_id(text: &str) -> Option<TraceId> {
    let well_formed =
        text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let id = TraceId::from_hex(text).ok().filter(|_| well_formed)?;
    (id != TraceId::INVALID).then_some(id)
}

thread_local! {
    /// The trace id [`KernelTracer`] wants for the span it is building on this thread.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Random ids, except for the trace [`KernelTracer`] is starting a kernel span in.
#[derive(Debug, Default)]
struct KernelIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for KernelIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .take()
            .unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.random.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;

    use super::*;

    #[test]
    fn only_w3c_trace_ids_of_kernel_spans_are_taken() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let span = |name: &'static str, trace_id: &str| {
            SpanBuilder::from_name(name)
                .with_attributes([KeyValue::new("trace_id", trace_id.to_owned())])
        };
        assert_eq!(
            kernel_trace_id(&span("request", id)),
            Some(TraceId::from_hex(id).unwrap())
        );
        assert!(kernel_trace_id(&span("call", id)).is_some());
        assert_eq!(kernel_trace_id(&span("db", id)), None);
        for not_w3c in [
            "h2-style-trace",
            "00000000000000000000000000000000",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "",
        ] {
            assert_eq!(
                kernel_trace_id(&span("request", not_w3c)),
                None,
                "{not_w3c}"
            );
        }
    }

    #[test]
    fn the_endpoint_is_a_base_url() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        let error = traces_url("https://collector:4318").unwrap_err();
        assert_eq!(error.code(), INVALID_CONFIG);
        assert!(error.description().contains("https://collector:4318"));
    }
}
