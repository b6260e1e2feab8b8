//! Every request a service handles, and every call a client makes, runs in a `tracing` span
//! naming it: what a handler logs says which request it was handling. (Its own test binary: it
//! installs a global subscriber.)
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[macro_use]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kernel_errors::Error;
use kernel_proto::examples::{HelloRequest, HelloResponse};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::InProcessBroker;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's name and fields.
type Span = (String, HashMap<String, String>);

/// An event's message and its spans, innermost first.
type Event = (String, Vec<Span>);

/// Span fields by span id, and every event.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<HashMap<u64, Span>>>,
    events: Arc<Mutex<Vec<Event>>>,
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let name = attrs.metadata().name().to_owned();
        self.spans
            .lock()
            .unwrap()
            .insert(id.into_u64(), (name, fields.0));
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = self.spans.lock().unwrap();
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .filter_map(|span| spans.get(&span.id().into_u64()).cloned())
                    .collect()
            })
            .unwrap_or_default();
        self.events.lock().unwrap().push((message, scope));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_logs_inside_its_request_span_inside_the_call_span() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let broker = InProcessBroker::new();
    let name = support::unique("traced");
    let hello = |request: Request<HelloRequest>| async move {
        tracing::info!("handling");
        Ok::<_, Error>(HelloResponse {
            greeting: format!("hello, {}", request.message().name),
            served_by: String::new(),
        })
    };
    let server_side = kernel_client::Client::new(broker.connect());
    let service = Service::builder(&name, &server_side)
        .endpoint(Endpoint::new("hello", hello).open())
        .build()
        .unwrap();
    let running = support::serve(service).await;
    let client = kernel_client::Client::new(broker.connect()).calling_as("test.tracer");
    let reply: HelloResponse = client
        .call(&name, "hello", &support::hello("ada"))
        .trace_id("trace-7")
        .await
        .unwrap();
    assert_eq!(reply.greeting, "hello, ada");
    running.stop().await;

    let events = recorder.events.lock().unwrap();
    let (_, scope) = events
        .iter()
        .find(|(message, _)| message == "handling")
        .expect("the handler's event was recorded");
    let (span, fields) = scope.first().expect("the event is inside a span");
    assert_eq!(span, "request");
    assert_eq!(fields.get("service"), Some(&name));
    assert_eq!(fields.get("endpoint").map(String::as_str), Some("hello"));
    assert_eq!(
        fields.get("caller").map(String::as_str),
        Some("test.tracer")
    );
    assert_eq!(fields.get("trace_id").map(String::as_str), Some("trace-7"));
    assert!(fields.get("message_id").is_some_and(|id| !id.is_empty()));
    let spans = recorder.spans.lock().unwrap();
    assert!(
        spans.values().any(|(span, fields)| span == "call"
            && fields.get("service") == Some(&name)
            && fields.get("caller").map(String::as_str) == Some("test.tracer")),
        "the client's call span"
    );
}
