//! The request path: what happens to each delivery a service takes.
//!
//! What happens to each delivery from the service's work queue, in order:
//!
//! ```text
//! heartbeat ping ──────────────────────────► pong to reply_to
//! deadline already passed ─────────────────► dropped, counted (server.dropped.expired)
//! unknown endpoint ────────────────────────► NotFound  kernel.server.unknownendpoint
//! the endpoint's authoriser refuses ───────► Forbidden kernel.auth.notsignedin / badrole
//! payload does not decode (or unknown type) ► BadRequest kernel.server.badrequest
//! handler panics ──────────────────────────► InternalServerError kernel.server.panic
//! handler returns Err(e) ──────────────────► e
//! handler returns Ok(response) ────────────► reply, encoded as the request was
//! ```
//!
//! Replies and error replies go to the request's `reply_to` with `correlation_id` = its
//! message id; the delivery is acked after the reply is sent. A retry (same message id and
//! `reply_to`) is not run again: dropped while the first attempt runs, answered with the kept
//! reply after (see `replies.rs`). Publications on a subscribed
//! topic go to the subscribing endpoint; what it returns is only logged and counted.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use kernel_auth::{Authoriser, Scope};
use kernel_errors::{Error, Kind};
use kernel_proto::platform::PlatformError;
use kernel_transport::{Delivery, Destination, Envelope, clip, codec};

use crate::codes;
use crate::endpoint::Endpoint;
use crate::replies::Seen;
use crate::service::Inner;

/// Answers one request from the work queue, then acks it.
pub(crate) async fn handle_request(inner: &Inner, delivery: Delivery) {
    // Shared with the transport and the handler's `RequestContext`: nobody copies it.
    let (request, acker) = delivery.into_shared();
    let transport = inner.client.transport();
    if request.is_ping() {
        if !request.reply_to.is_empty() {
            let pong = request.pong();
            if let Err(error) = transport
                .send(Destination::Instance(&request.reply_to), pong)
                .await
            {
                tracing::debug!(%error, "could not answer a heartbeat");
            }
        }
    } else if request
        .deadline
        .is_some_and(|deadline| deadline <= SystemTime::now())
    {
        tracing::debug!(
            message_id = clip(&request.message_id),
            endpoint = clip(&request.endpoint),
            "deadline passed before handling: dropped"
        );
        inner.instrumenter.counter("server.dropped.expired", 1, 1.0);
    } else {
        match inner.replies.arrive(&request) {
            Seen::First(ticket) => {
                let started = Instant::now();
                // One span per request handled: what the handler logs says which request.
                // Strings, not `%` values: a text log quotes them (so a name from the wire
                // cannot pass for more fields) and writes them without formatting machinery.
                let span = tracing::info_span!(
                    "request",
                    service = inner.name.as_str(),
                    endpoint = clip(&request.endpoint),
                    caller = clip(&request.from),
                    message_id = clip(&request.message_id),
                    trace_id = clip(crate::request::trace_id(&request)),
                );
                // The signed-in user, if the request had one (for the access log).
                let mut user = None;
                let outcome = tracing::Instrument::instrument(
                    admit_and_dispatch(inner, &request, &mut user),
                    span,
                )
                .await;
                // "Overloaded" says: try again (elsewhere). A retry must be judged afresh,
                // not answered from the cache.
                let shed = matches!(&outcome, Err(e) if e.kind() == Kind::Overloaded);
                let status = outcome.as_ref().map_or_else(Error::http_status, |_| 200);
                let reply = answer(inner, &request, outcome, started.elapsed());
                if let Some(log) = &inner.access_log
                    && !log.record(
                        &request.from,
                        user.as_deref().unwrap_or_default(),
                        &request.endpoint,
                        status,
                        reply.payload.len(),
                    )
                {
                    inner
                        .instrumenter
                        .counter("server.accesslog.dropped", 1, 1.0);
                }
                if shed {
                    inner.replies.forget(ticket);
                } else {
                    inner.replies.answered(ticket, &reply);
                }
                send_reply(transport.as_ref(), &request, reply).await;
            }
            Seen::InFlight => {
                tracing::debug!(
                    message_id = clip(&request.message_id),
                    "retry while the first attempt runs: dropped"
                );
                inner.instrumenter.counter("server.retry.inflight", 1, 1.0);
            }
            Seen::Answered(kept) => {
                tracing::debug!(
                    message_id = clip(&request.message_id),
                    "retry of an answered request: reply sent again"
                );
                inner.instrumenter.counter("server.retry.answered", 1, 1.0);
                send_reply(transport.as_ref(), &request, kept.reply_to(&request)).await;
            }
        }
    }
    if let Err(error) = acker.ack().await {
        tracing::warn!(%error, message_id = clip(&request.message_id), "could not ack a request");
    }
}

/// Sends a reply (or error reply) to the request's `reply_to`, if it has one.
async fn send_reply(
    transport: &dyn kernel_transport::Transport,
    request: &Envelope,
    reply: Envelope,
) {
    if request.reply_to.is_empty() {
        tracing::debug!(
            message_id = clip(&request.message_id),
            "request without reply_to: answer dropped"
        );
    } else if let Err(error) = transport
        .send(Destination::Instance(&request.reply_to), reply)
        .await
    {
        tracing::warn!(%error, message_id = clip(&request.message_id), "could not send the reply");
    }
}

/// Waits for a slot (at most the endpoint's mean latency, and never past the request's
/// deadline), then dispatches; `Overloaded` (`kernel.server.capacity`) if no slot came.
async fn admit_and_dispatch(
    inner: &Inner,
    request: &Arc<Envelope>,
    user: &mut Option<String>,
) -> Result<bytes::Bytes, Error> {
    let mean = inner
        .endpoints
        .get(&request.endpoint)
        .map_or(crate::DEFAULT_MEAN_TIME, |endpoint| endpoint.mean_time);
    let left = request
        .deadline
        .and_then(|deadline| deadline.duration_since(SystemTime::now()).ok())
        .unwrap_or(mean);
    let inst = inner.instrumenter.as_ref();
    // One key per caller for the first MAX_CALLER_METRICS callers seen, `other` for the rest:
    // the same bounded set names the metrics and shares out the capacity, so a flood that
    // rotates through invented `from` values competes as one caller.
    let caller = inner.caller_metrics.caller(&request.from);
    let Some(_slot) = inner
        .admission
        .admit(Arc::clone(&caller.name), mean.min(left))
        .await
    else {
        inst.gauge(
            &caller.tokens_gauge,
            inner.admission.slots_left(&caller.name) as f64,
            1.0,
        );
        inst.counter("server.error.capacity", 1, 1.0);
        return Err(Error::overloaded(
            codes::CAPACITY,
            format!("{} is out of capacity", inner.name),
        ));
    };
    inst.gauge(
        &caller.tokens_gauge,
        inner.admission.slots_left(&caller.name) as f64,
        1.0,
    );
    inst.gauge(
        "server.inflightrequests",
        inner.admission.running() as f64,
        1.0,
    );
    dispatch(inner, request, user).await
}

/// Finds the endpoint and runs its handler, turning a panic into an internal error.
async fn dispatch(
    inner: &Inner,
    request: &Arc<Envelope>,
    user: &mut Option<String>,
) -> Result<bytes::Bytes, Error> {
    if !request.service.is_empty() && request.service != inner.name {
        return Err(Error::not_found(
            codes::WRONG_SERVICE,
            format!("this is {}, not {:?}", inner.name, clip(&request.service)),
        ));
    }
    if request.session_id.len() > inner.max_session_id {
        return Err(Error::bad_request(
            codes::SESSION_ID_TOO_LONG,
            format!(
                "a session id of {} bytes is over the limit of {}",
                request.session_id.len(),
                inner.max_session_id
            ),
        ));
    }
    let endpoint = inner.endpoints.get(&request.endpoint).ok_or_else(|| {
        Error::not_found(
            codes::UNKNOWN_ENDPOINT,
            format!(
                "{} has no endpoint {:?}",
                inner.name,
                clip(&request.endpoint)
            ),
        )
    })?;
    let scope = authorise(inner, endpoint, request).await?;
    *user = scope.auth_user().map(|signed_in| signed_in.id().to_owned());
    run_handler(inner, endpoint, request, scope).await
}

/// The request's scope, if the endpoint's authoriser admits it: its session recovered (unless
/// the endpoint is open), the calling service's verified identity, the rules in force.
async fn authorise(inner: &Inner, endpoint: &Endpoint, request: &Envelope) -> Result<Scope, Error> {
    let mut scope = match &inner.auth {
        Some(auth) => auth.scope(&inner.name, &endpoint.name, caller_identity(request)),
        None => Scope::anonymous(),
    };
    if endpoint.authoriser == Authoriser::Open {
        return Ok(scope);
    }
    if inner.auth.is_some()
        && !request.session_id.is_empty()
        && let Err(error) = scope.recover_session(&request.session_id).await
    {
        // The login service could not answer: the request goes on without a user (and is
        // refused below unless a rule admits it), as H2 did.
        tracing::warn!(%error, endpoint = %endpoint.name, "could not recover the request's session");
    }
    endpoint.authoriser.authorise(&scope).inspect_err(|_| {
        if !scope.is_auth() && scope.caller_service().is_some() {
            inner
                .instrumenter
                .counter("auth.servicetoservice.failed", 1, 1.0);
        }
    })?;
    Ok(scope)
}

/// The calling service as the broker verified it (the `user_id` property RabbitMQ checks
/// against the publisher's login; the in-process broker stamps it too), if known. Never the
/// `from` header, which any publisher can write.
fn caller_identity(request: &Envelope) -> Option<&str> {
    Some(request.user_id.as_str()).filter(|user| !user.is_empty())
}

async fn run_handler(
    inner: &Inner,
    endpoint: &Endpoint,
    request: &Arc<Envelope>,
    scope: Scope,
) -> Result<bytes::Bytes, Error> {
    let handler = Arc::clone(&endpoint.handler);
    match AssertUnwindSafe(async { handler.handle(request, scope).await })
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(endpoint = %endpoint.name, message_id = clip(&request.message_id), %reason, "handler panicked");
            inner.instrumenter.counter("runtime.panic", 1, 1.0);
            Err(Error::internal_server_error(
                codes::PANIC,
                format!("{}.{} failed", inner.name, endpoint.name),
            ))
        }
    }
}

/// The reply or error reply for an outcome, recording it (H2's names).
fn answer(
    inner: &Inner,
    request: &Envelope,
    outcome: Result<bytes::Bytes, Error>,
    elapsed: Duration,
) -> Envelope {
    let inst = inner.instrumenter.as_ref();
    let content_type = request.content_type.for_reply();
    // Metric names come from the endpoints served, never from the wire: a request for an
    // endpoint that does not exist has no per-endpoint timing.
    let endpoint = inner.endpoints.get(&request.endpoint);
    let timing = |success: bool| {
        if let Some(endpoint) = endpoint {
            let bucket = if success {
                &endpoint.buckets.success
            } else {
                &endpoint.buckets.error
            };
            inst.timing(bucket, elapsed, 1.0);
        }
    };
    match outcome {
        Ok(payload) => {
            timing(true);
            request.reply(content_type, payload)
        }
        Err(error) => {
            inst.counter(&inner.error_metrics.counter(error.code()), 1, 1.0);
            // Client faults do not count against the endpoint's error latency (as in H2).
            timing(matches!(error.kind(), Kind::BadRequest | Kind::NotFound));
            if error.kind() == Kind::InternalServerError {
                tracing::warn!(endpoint = clip(&request.endpoint), %error, "internal error");
            } else {
                tracing::debug!(endpoint = clip(&request.endpoint), %error, "error reply");
            }
            let payload =
                codec::encode(content_type, &PlatformError::from(&error)).unwrap_or_else(|_| {
                    prost::Message::encode_to_vec(&PlatformError::from(&error)).into()
                });
            request.error_reply(content_type, payload)
        }
    }
}

/// Hands one publication to its subscribing endpoint, then acks it.
pub(crate) async fn handle_publication(inner: &Inner, endpoint: &str, delivery: Delivery) {
    let (publication, acker) = delivery.into_shared();
    if let Some(endpoint) = inner.endpoints.get(endpoint) {
        let started = Instant::now();
        let authorised = match authorise(inner, endpoint, &publication).await {
            Ok(scope) => run_handler(inner, endpoint, &publication, scope).await,
            Err(error) => Err(error),
        };
        match authorised {
            Ok(_) => inner
                .instrumenter
                .timing(&endpoint.buckets.success, started.elapsed(), 1.0),
            Err(error) => {
                tracing::warn!(topic = clip(&publication.topic), endpoint = %endpoint.name, %error, "publication handler failed");
                inner
                    .instrumenter
                    .counter(&inner.error_metrics.counter(error.code()), 1, 1.0);
            }
        }
    }
    if let Err(error) = acker.ack().await {
        tracing::warn!(%error, "could not ack a publication");
    }
}
