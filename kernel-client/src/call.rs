//! [`Call`]: one request, awaited for its response; the async driver of its attempts.
//!
//! The attempt loop of a call, in order:
//!
//! ```text
//! register the message id with the reply router (once: retries reuse the id)
//! for each attempt while attempts and deadline remain:
//!     the (service, endpoint)'s breaker is open ► fail now with CircuitBroken, send nothing
//!     a retry, and the client's retry budget is empty ► stop: the last error, or Timeout
//!     (the first attempt deposits in the budget instead)
//!     send the request (expiration = what is left of the deadline)
//!         no route / connection lost ──► back off, next attempt (uses up no attempt until
//!                                        undeliverable for one attempt timeout)
//!     wait for a reply, at most min(attempt timeout, what is left of the deadline)
//!     (the last attempt waits for all that is left of the deadline)
//!         reply ──────────────────────► decode as the response type, done
//!         error reply "overloaded" ───► back off, next attempt (the server shed it)
//!         any other error reply ──────► return it: it is the answer
//!         nothing in time ────────────► next attempt (a late reply still counts)
//! after each attempt: its verdict (failure: no reply in time, an internal error) goes to
//! the breaker
//! out of attempts or time: the last retryable error, or Timeout
//! ```
//!
//! The rules (what to do after each attempt) are [`Attempts`](crate::attempts::Attempts), a
//! pure step function; this module sends, waits and sleeps.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use foldhash::HashMap;
use kernel_errors::Error;
use kernel_proto::platform::PlatformError;
use kernel_transport::{
    ContentType, Destination, Envelope, Message, MessageType, TransportError, codec,
    new_message_id, trace,
};

use crate::attempts::{Attempts, Before, Failure, Next, Outcome, Spend};
use crate::breaker::Verdict;
use crate::router::Answer;
use crate::{Client, codes};

/// A request message of any type, encodable in either content type: what lets a [`Call`] be
/// generic over its response alone.
pub(crate) trait Encode: Send + Sync {
    fn encode(&self, content_type: ContentType) -> Result<Bytes, codec::CodecError>;
}

impl<M: Message> Encode for M {
    fn encode(&self, content_type: ContentType) -> Result<Bytes, codec::CodecError> {
        codec::encode(content_type, self)
    }
}

/// The smallest pause before retrying a failure that came back at once (no route, overload).
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The largest such pause.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// One call to an endpoint, not sent yet. Await it for the typed response.
///
/// Built by [`Client::call`]; the settings start from the client's defaults.
///
/// ```
/// # use std::time::Duration;
/// # use kernel_client::Client;
/// # use kernel_proto::platform::{HealthRequest, HealthResponse};
/// # use kernel_transport::InProcessTransport;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let client = Client::new(InProcessTransport::new());
/// let reply = client
///     .call::<HealthResponse>("com.example.users", "health", &HealthRequest::default())
///     .deadline(Duration::from_millis(500))
///     .attempts(2)
///     .json()
///     .session_id("a-session")
///     .await;
/// # assert!(reply.is_err());
/// # }
/// ```
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<'a, Rsp> {
    client: &'a Client,
    service: &'a str,
    endpoint: &'a str,
    request: &'a dyn Encode,
    options: Options,
    _response: PhantomData<fn() -> Rsp>,
}

#[derive(Clone, Debug)]
struct Options {
    deadline: Duration,
    /// A wall-clock time the call must not outlive (the deadline of a request it serves).
    not_after: Option<SystemTime>,
    /// A fixed attempt timeout; `None`: from the client's SLA table.
    attempt_timeout: Option<Duration>,
    attempts: u32,
    content_type: ContentType,
    session_id: String,
    trace_id: String,
    parent_message_id: String,
}

impl<Rsp> std::fmt::Debug for Call<'_, Rsp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a, Rsp: Message> Call<'a, Rsp> {
    pub(crate) fn new(
        client: &'a Client,
        service: &'a str,
        endpoint: &'a str,
        request: &'a dyn Encode,
    ) -> Self {
        let defaults = client.inner().defaults;
        Call {
            client,
            service,
            endpoint,
            request,
            options: Options {
                deadline: defaults.deadline,
                not_after: None,
                attempt_timeout: defaults.attempt_timeout,
                attempts: defaults.attempts,
                content_type: defaults.content_type,
                session_id: String::new(),
                trace_id: String::new(),
                parent_message_id: String::new(),
            },
            _response: PhantomData,
        }
    }

    /// How long the call may take in all, attempts included.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.options.deadline = deadline;
        self
    }

    /// Ends the call no later than `at`, whatever its deadline: for a call made while handling
    /// a request, the time that request's caller stops waiting. A time already past fails
    /// the call with `Timeout` without sending it. Only tightens: given twice, the earlier
    /// time holds.
    ///
    /// ```
    /// # use std::time::{Duration, SystemTime};
    /// # use kernel_client::Client;
    /// # use kernel_errors::Kind;
    /// # use kernel_proto::platform::{HealthRequest, HealthResponse};
    /// # use kernel_transport::InProcessTransport;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let client = Client::new(InProcessTransport::new());
    /// let gave_up = SystemTime::now() - Duration::from_secs(1);
    /// let error = client
    ///     .call::<HealthResponse>("com.example.users", "health", &HealthRequest::default())
    ///     .not_after(gave_up)
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(error.kind(), Kind::Timeout);
    /// # }
    /// ```
    pub fn not_after(mut self, at: SystemTime) -> Self {
        self.options.not_after = Some(self.options.not_after.map_or(at, |earlier| earlier.min(at)));
        self
    }

    /// How long each attempt of this call waits for its reply, fixed, instead of the
    /// SLA-derived timeout (never past the deadline).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.options.attempt_timeout = Some(timeout);
        self
    }

    /// How many times the request is sent at most; values below 1 mean 1.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.options.attempts = attempts.max(1);
        self
    }

    /// Encodes the request (and so the reply) as JSON, in the protobuf JSON mapping.
    pub fn json(mut self) -> Self {
        self.options.content_type = ContentType::Json;
        self
    }

    /// Sends the caller's session id (`sessionID` header).
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.options.session_id = session_id.into();
        self
    }

    /// Makes the call part of trace `trace_id` (the `traceID` header; also `traceparent` when
    /// it is a W3C trace id). Without one, each call starts a new trace
    /// ([`trace::new_trace_id`]); a handler's calls made with `request.call(..)` pass on its
    /// request's trace.
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.options.trace_id = trace_id.into();
        self
    }

    /// Names the request being handled when this call is made (`parentMessageID` header).
    pub fn parent_message_id(mut self, message_id: impl Into<String>) -> Self {
        self.options.parent_message_id = message_id.into();
        self
    }

    async fn run(self, message_id: String) -> Result<Rsp, Error> {
        let payload = self
            .request
            .encode(self.options.content_type)
            .map_err(|e| {
                Error::bad_request(codes::MARSHAL, format!("cannot encode the request: {e}"))
            })?;
        let mut request = Envelope {
            message_type: MessageType::Request,
            message_id,
            content_type: self.options.content_type,
            service: self.service.to_owned(),
            endpoint: self.endpoint.to_owned(),
            payload,
            ..Envelope::default()
        };
        request.session_id = self.options.session_id.clone();
        request.trace_id = self.options.trace_id.clone();
        if let Some(traceparent) = trace::traceparent(&request.trace_id) {
            request
                .headers
                .insert(trace::TRACEPARENT.to_owned(), traceparent);
        }
        request.parent_message_id = self.options.parent_message_id.clone();
        let reply = execute(self.client, request, &self.options).await?;
        codec::decode(reply.content_type, &reply.payload).map_err(|e| {
            Error::bad_response(codes::UNMARSHAL, format!("cannot decode the reply: {e}"))
                .with_context(self.service)
                .with_context(self.endpoint)
        })
    }
}

impl<'a, Rsp: Message> IntoFuture for Call<'a, Rsp> {
    type Output = Result<Rsp, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(mut self) -> Self::IntoFuture {
        // Every call belongs to a trace: a new one unless the caller (a handler passing on
        // its request's) names one.
        if self.options.trace_id.is_empty() {
            self.options.trace_id = trace::new_trace_id();
        }
        // The request's id is made here, so that the span has every field when it opens: a
        // field recorded later costs the text log a second formatting pass.
        let message_id = new_message_id();
        // One span per call: what a handler or the client logs during it says which call.
        let span = tracing::info_span!(
            "call",
            service = self.service,
            endpoint = self.endpoint,
            caller = self.client.caller(),
            trace_id = kernel_transport::clip(&self.options.trace_id),
            message_id = message_id.as_str(),
        );
        Box::pin(tracing::Instrument::instrument(self.run(message_id), span))
    }
}

/// Metric names of one (service, endpoint), built once per call.
/// The metric names of one (service, endpoint) pair (H2's).
#[derive(Debug)]
pub(crate) struct Buckets {
    success: String,
    error: String,
    timed_out: String,
}

impl Buckets {
    fn new(service: &str, endpoint: &str) -> Self {
        let base = format!("client.{service}.{endpoint}");
        Buckets {
            success: format!("{base}.success"),
            timed_out: format!("{base}.error.timedOut"),
            error: base + ".error",
        }
    }
}

/// The most (service, endpoint) pairs whose metric names are kept; calls to further pairs make
/// theirs per call. A program calls a fixed set of endpoints, far fewer than this.
const MAX_BUCKETS: usize = 1024;

/// [`Buckets`] by service, then endpoint: made on a pair's first call, not on every call.
#[derive(Debug, Default)]
pub(crate) struct BucketCache {
    /// How many pairs are kept, and the pairs.
    known: std::sync::RwLock<(usize, BucketMap)>,
}

type BucketMap = HashMap<String, HashMap<String, Arc<Buckets>>>;

impl BucketCache {
    fn get(&self, service: &str, endpoint: &str) -> Arc<Buckets> {
        {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(buckets) = known.1.get(service).and_then(|e| e.get(endpoint)) {
                return Arc::clone(buckets);
            }
        }
        let buckets = Arc::new(Buckets::new(service, endpoint));
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        let (count, map) = &mut *known;
        if *count < MAX_BUCKETS {
            let endpoints = map.entry(service.to_owned()).or_default();
            if !endpoints.contains_key(endpoint) {
                endpoints.insert(endpoint.to_owned(), Arc::clone(&buckets));
                *count += 1;
            }
        }
        buckets
    }
}

const BUDGET_EXHAUSTED: &str = "client.retry.budgetexhausted";

/// The longest deadline a call accepts; longer ones are cut to it (a deadline is a promise to
/// wait, and `Instant` arithmetic must not overflow).
const MAX_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// Sends `request` until a reply, a final error, or the end of attempts or deadline.
async fn execute(
    client: &Client,
    mut request: Envelope,
    options: &Options,
) -> Result<Envelope, Error> {
    let inner = client.inner();
    let inst = inner.instrumenter.as_ref();
    let buckets = inner.buckets.get(&request.service, &request.endpoint);
    // One reading of each clock: the deadline sent is then never later than `not_after`.
    let (started, now) = (Instant::now(), SystemTime::now());
    let mut budget = options.deadline.min(MAX_DEADLINE);
    if let Some(at) = options.not_after {
        budget = budget.min(at.duration_since(now).unwrap_or_default());
    }
    let deadline = started + budget;
    request.deadline = Some(now + budget);
    request.reply_to = inner.transport.instance_queue().to_owned();
    request.from = client.caller().to_owned();
    // What the transport stamps anyway (it never trusts an envelope's `user_id`): said here,
    // the in-process broker can queue the request as it is instead of copying it to stamp it.
    request.user_id = inner.transport.user().to_owned();
    // Every attempt sends this same envelope.
    let request = Arc::new(request);

    // The first call starts the reply router: that, too, counts against the deadline.
    match tokio::time::timeout(budget, client.start()).await {
        Ok(started) => started?,
        Err(_elapsed) => return Err(record(inst, timed_out(&request, budget))),
    }
    let mut registration = inner.pending.register(&request.message_id);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_jitter()
        .without_max_times()
        .build();
    // Attempt n waits this long (never past the deadline): fixed if the call or the client
    // says so, else from the endpoint's SLA, longer for later attempts.
    let learned = inner
        .learned
        .get()
        .filter(|_| options.attempt_timeout.is_none())
        .and_then(|registry| registry.upper95(&request.service, &request.endpoint));
    let attempt_timeout = |attempt: u32| {
        options.attempt_timeout.unwrap_or_else(|| {
            inner
                .timeouts
                .get_learned(&request.service, &request.endpoint, attempt, learned)
        })
    };
    let mut attempts = Attempts::new(options.attempts, attempt_timeout(1));
    // Looked up once per call: the key's breaker, unless it has none.
    let circuit = inner.breakers.circuit(&request.service, &request.endpoint);

    while attempts.start() {
        let attempt_started = Instant::now();
        let Some(remaining) = deadline
            .checked_duration_since(attempt_started)
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        let now = attempt_started.into_std();
        let (admitted, mut ticket) = match &circuit {
            None => (true, None),
            Some(circuit) => {
                let ticket = circuit.admit(now);
                (ticket.is_some(), ticket)
            }
        };
        let budget = |spend| match (&inner.budget, spend) {
            (None, _) => true,
            (Some(budget), Spend::Deposit) => {
                budget.deposit(now);
                true
            }
            (Some(budget), Spend::Withdraw) => budget.withdraw(now),
        };
        match attempts.before(admitted, budget) {
            Before::Send => {}
            Before::Fail(failure) => return Err(record_failure(inst, failure, &request)),
            Before::OutOfBudget => {
                inst.counter(BUDGET_EXHAUSTED, 1, 1.0);
                break;
            }
        }
        let destination = Destination::Service(&request.service);
        let sent = tokio::time::timeout(
            remaining,
            inner
                .transport
                .send_shared(destination, Arc::clone(&request)),
        )
        .await;
        let outcome = match sent {
            Err(_elapsed) => break,
            Ok(Err(error)) => Outcome::SendFailed(Error::from(error)),
            Ok(Ok(())) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = if attempts.is_last() {
                    left
                } else {
                    attempt_timeout(attempts.number()).min(left)
                };
                match tokio::time::timeout(wait, registration.reply()).await {
                    Err(_elapsed) => Outcome::TimedOut,
                    Ok(None) => {
                        // No answer can come any more: sending again would only run the
                        // request again on the server.
                        let error = Error::connection_lost(
                            codes::ROUTER_STOPPED,
                            "the reply router stopped while the call was waiting",
                        );
                        return Err(record(inst, in_context(error, &request)));
                    }
                    Ok(Some(Answer::Returned)) => {
                        Outcome::SendFailed(Error::from(TransportError::NoRoute {
                            destination: request.service.clone(),
                        }))
                    }
                    Ok(Some(Answer::Reply(reply))) if reply.message_type == MessageType::Error => {
                        Outcome::ErrorReply(decode_error(&reply))
                    }
                    Ok(Some(Answer::Reply(reply))) => {
                        if let Some(ticket) = ticket.take() {
                            ticket.record(Verdict::Success, Instant::now().into_std());
                        }
                        inst.timing(&buckets.success, attempt_started.elapsed(), 1.0);
                        // The router held the only other reference: no copy.
                        return Ok(Arc::unwrap_or_clone(reply));
                    }
                }
            }
        };
        inst.timing(&buckets.error, attempt_started.elapsed(), 1.0);
        let now = Instant::now().into_std();
        if let Some(ticket) = ticket.take() {
            ticket.record(outcome.verdict(), now);
        }
        match attempts.after(outcome, attempt_started.into_std(), now) {
            Next::Retry { pause: false } => {}
            Next::Retry { pause: true } => {
                if attempts.more() {
                    let pause = backoff.next().unwrap_or(MAX_BACKOFF);
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(pause.min(left)).await;
                }
            }
            Next::Fail(failure) => return Err(record_failure(inst, failure, &request)),
        }
    }

    match attempts.exhausted() {
        // The last retryable error, in context whether raised here or relayed (overloaded).
        Some(Failure { error, remote }) => {
            let error = in_context(error, &request);
            Err(if remote {
                record_remote(inst, error)
            } else {
                record(inst, error)
            })
        }
        None => {
            inst.timing(&buckets.timed_out, started.elapsed(), 1.0);
            Err(record(inst, timed_out(&request, budget)))
        }
    }
}

/// Adds the service and endpoint called as context.
fn in_context(error: Error, request: &Envelope) -> Error {
    error
        .with_context(&request.service)
        .with_context(&request.endpoint)
}

fn timed_out(request: &Envelope, budget: Duration) -> Error {
    let error = Error::timeout(
        codes::TIMEOUT,
        format!(
            "no reply from {}.{} within {:?}",
            request.service, request.endpoint, budget
        ),
    );
    in_context(error, request)
}

/// Counts an error this client raised (`client.error.<code>`: its codes are a fixed set) and
/// returns it.
fn record(inst: &dyn kernel_inst::Instrumenter, error: Error) -> Error {
    inst.counter(&format!("client.error.{}", error.code()), 1, 1.0);
    error
}

/// Counts the error that ends a call early: raised here (in context) or answered by a server
/// (returned as the server sent it).
fn record_failure(
    inst: &dyn kernel_inst::Instrumenter,
    failure: Failure,
    request: &Envelope,
) -> Error {
    if failure.remote {
        // An error reply is returned as the server sent it.
        record_remote(inst, failure.error)
    } else {
        record(inst, in_context(failure.error, request))
    }
}

/// Counts an error a service answered with (`client.error.remote.<KIND>`) and returns it. Its
/// code came off the wire, so it does not name the metric: any broker user can send any code.
fn record_remote(inst: &dyn kernel_inst::Instrumenter, error: Error) -> Error {
    inst.counter(
        &format!("client.error.remote.{}", error.kind().as_str()),
        1,
        1.0,
    );
    error
}

/// The error an error reply carries; `BadResponse` if it does not decode.
fn decode_error(reply: &Envelope) -> Error {
    match codec::decode::<PlatformError>(reply.content_type, &reply.payload) {
        Ok(message) => Error::from(message),
        Err(e) => Error::bad_response(codes::BAD_RESPONSE, format!("undecodable error reply: {e}"))
            .with_context(&reply.service)
            .with_context(&reply.endpoint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_made_once_per_pair_and_the_cache_is_bounded() {
        let cache = BucketCache::default();
        let first = cache.get("com.example.a", "hello");
        assert_eq!(first.success, "client.com.example.a.hello.success");
        assert_eq!(first.error, "client.com.example.a.hello.error");
        assert_eq!(first.timed_out, "client.com.example.a.hello.error.timedOut");
        assert!(Arc::ptr_eq(&first, &cache.get("com.example.a", "hello")));
        for n in 0..2 * MAX_BUCKETS {
            cache.get("com.example.many", &format!("e{n}"));
        }
        assert_eq!(cache.known.read().unwrap().0, MAX_BUCKETS);
        // Past the bound, names are still right, made per call.
        let late = cache.get("com.example.late", "x");
        assert_eq!(late.success, "client.com.example.late.x.success");
        assert!(!Arc::ptr_eq(&late, &cache.get("com.example.late", "x")));
    }
}
