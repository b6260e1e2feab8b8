//! [`Request`]: what a handler receives.

use std::sync::Arc;
use std::time::SystemTime;

use kernel_auth::{Scope, User};
use kernel_client::{Call, Client};
use kernel_transport::{ContentType, Envelope, Message};

/// A decoded request and everything the caller sent with it.
///
/// A handler is a plain async function, so a unit test can call it with a hand-made request:
///
/// ```
/// use kernel_errors::Error;
/// use kernel_proto::platform::{LoadedConfigRequest, LoadedConfigResponse};
/// use kernel_server::{Request, RequestContext};
///
/// async fn loaded_config(request: Request<LoadedConfigRequest>) -> Result<LoadedConfigResponse, Error> {
///     let caller = request.caller();
///     Ok(LoadedConfigResponse { config: format!(r#"{{"asked_by":"{caller}"}}"#) })
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let request = Request::new(LoadedConfigRequest {}, RequestContext::default());
/// let reply = loaded_config(request).await.unwrap();
/// assert_eq!(reply.config, r#"{"asked_by":""}"#);
/// # }
/// ```
#[derive(Debug)]
pub struct Request<T> {
    message: T,
    context: RequestContext,
}

/// Who sent a request, when they stop waiting, and the rest of its headers.
///
/// It shares the received envelope rather than copying its fields: making one per request,
/// or cloning one, copies none of them.
#[derive(Clone, Default)]
pub struct RequestContext {
    /// The request as received (its payload is decoded into the [`Request`]'s message).
    envelope: Arc<Envelope>,
    scope: Scope,
}

/// What the accessors show, without the payload (the [`Request`]'s message is its decoded
/// form) and without the session id (a key to the caller's session), which shows only whether
/// there was one.
impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let envelope = &self.envelope;
        f.debug_struct("RequestContext")
            .field("service", &envelope.service)
            .field("endpoint", &envelope.endpoint)
            .field("message_id", &envelope.message_id)
            .field("caller", &envelope.from)
            .field(
                "session_id",
                &(!envelope.session_id.is_empty()).then_some("<redacted>"),
            )
            .field("trace_id", &trace_id(envelope))
            .field("parent_message_id", &envelope.parent_message_id)
            .field("topic", &envelope.topic)
            .field("deadline", &envelope.deadline)
            .field("content_type", &envelope.content_type)
            .field("headers", &envelope.headers)
            .field("scope", &self.scope)
            .finish()
    }
}

impl RequestContext {
    /// The context of a received envelope.
    pub(crate) fn from_envelope(envelope: Arc<Envelope>, scope: Scope) -> Self {
        RequestContext { envelope, scope }
    }
}

/// The request's trace: its `traceID`, else the trace of its W3C `traceparent`, else none.
pub(crate) fn trace_id(envelope: &Envelope) -> &str {
    if envelope.trace_id.is_empty() {
        envelope
            .headers
            .get(kernel_transport::trace::TRACEPARENT)
            .and_then(|parent| kernel_transport::trace::trace_id_of(parent))
            .unwrap_or_default()
    } else {
        &envelope.trace_id
    }
}

impl<T> Request<T> {
    /// A request carrying `message`, as the server builds it; useful to call handlers in tests.
    pub fn new(message: T, context: RequestContext) -> Self {
        Request { message, context }
    }

    /// The decoded message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// Takes the decoded message.
    pub fn into_message(self) -> T {
        self.message
    }

    /// Splits the request into its message and context.
    pub fn into_parts(self) -> (T, RequestContext) {
        (self.message, self.context)
    }

    /// The context: caller, session, trace, deadline, headers.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    /// The calling service (`from` header); empty if the caller did not say.
    pub fn caller(&self) -> &str {
        self.context.caller()
    }

    /// The caller's session id; empty if none.
    pub fn session_id(&self) -> &str {
        &self.context.envelope.session_id
    }

    /// The trace id; empty if none.
    pub fn trace_id(&self) -> &str {
        trace_id(&self.context.envelope)
    }

    /// When the caller stops waiting; work past it is wasted.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.context.envelope.deadline
    }

    /// The request's message id (for a publication, the publication's).
    pub fn message_id(&self) -> &str {
        self.context.message_id()
    }

    /// The endpoint called (empty for a publication).
    pub fn endpoint(&self) -> &str {
        &self.context.envelope.endpoint
    }

    /// The topic, for a publication (empty for a request).
    pub fn topic(&self) -> &str {
        &self.context.envelope.topic
    }

    /// A header the wire contract does not name, if the caller sent it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.context.envelope.headers.get(name).map(String::as_str)
    }

    /// Who the request acts for: its signed-in user (recovered from its session before the
    /// endpoint's authoriser ran, unless the endpoint is open) and the calling service.
    pub fn scope(&self) -> &Scope {
        &self.context.scope
    }

    /// The scope, to sign a user in or out from a handler.
    pub fn scope_mut(&mut self) -> &mut Scope {
        &mut self.context.scope
    }

    /// The signed-in user, if any.
    pub fn user(&self) -> Option<&User> {
        self.context.scope.auth_user()
    }

    /// A call made on behalf of this request; see [`RequestContext::call`].
    pub fn call<'a, Rsp: Message>(
        &self,
        client: &'a Client,
        service: &'a str,
        endpoint: &'a str,
        request: &'a impl Message,
    ) -> Call<'a, Rsp> {
        self.context.call(client, service, endpoint, request)
    }
}

impl RequestContext {
    /// The calling service; empty if the caller did not say.
    pub fn caller(&self) -> &str {
        &self.envelope.from
    }

    /// The id of the request being handled, to pass on as the parent of calls made for it.
    pub fn message_id(&self) -> &str {
        &self.envelope.message_id
    }

    /// The id of the request the caller was handling when it called, if it said.
    pub fn parent_message_id(&self) -> &str {
        &self.envelope.parent_message_id
    }

    /// How the request was encoded (the reply uses the same).
    pub fn content_type(&self) -> ContentType {
        self.envelope.content_type
    }

    /// The service the request was addressed to.
    pub fn service(&self) -> &str {
        &self.envelope.service
    }

    /// A call made on behalf of this request, as H2's `ScopedRequest`: it carries the
    /// request's session and trace ids, names this request as its parent, and ends no later
    /// than this request's deadline (the caller will not wait longer for anything it causes).
    /// The rest, `from` included, comes from `client` (give a service's handlers a client
    /// made with [`Client::calling_as`] the service's name); the builder's setters still
    /// apply, and [`Call::not_after`] can only bring the end forward.
    ///
    /// ```
    /// use kernel_client::Client;
    /// use kernel_errors::Error;
    /// use kernel_proto::platform::{HealthRequest, HealthResponse};
    /// use kernel_server::{Endpoint, Request, Service};
    /// use kernel_transport::InProcessTransport;
    ///
    /// let client = Client::new(InProcessTransport::new());
    /// // Healthy if the users service is: asked for this request's session and trace, and
    /// // given up when this request's caller gives up.
    /// async fn check(calls: Client, request: Request<HealthRequest>) -> Result<HealthResponse, Error> {
    ///     request
    ///         .call::<HealthResponse>(&calls, "com.example.users", "health", &HealthRequest::default())
    ///         .attempts(1)
    ///         .await
    /// }
    /// let calls = client.calling_as("com.example.frontend");
    /// let service = Service::builder("com.example.frontend", &client)
    ///     .endpoint(Endpoint::with_state("check", calls, check).open())
    ///     .build()?;
    /// # drop(service);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn call<'a, Rsp: Message>(
        &self,
        client: &'a Client,
        service: &'a str,
        endpoint: &'a str,
        request: &'a impl Message,
    ) -> Call<'a, Rsp> {
        // The scope's user, if a handler signed one in; else the session the request named.
        let session_id = self.scope.auth_user().map_or_else(
            || self.envelope.session_id.clone(),
            |user| user.session_id().to_owned(),
        );
        let call = client
            .call(service, endpoint, request)
            .session_id(session_id)
            .trace_id(trace_id(&self.envelope))
            .parent_message_id(self.envelope.message_id.as_str());
        match self.envelope.deadline {
            Some(at) => call.not_after(at),
            None => call,
        }
    }
}

#[cfg(test)]
mod tests {
    use kernel_transport::trace;

    use super::*;

    fn received() -> Arc<Envelope> {
        let trace_id = trace::new_trace_id();
        let mut envelope = Envelope::request(
            "com.example.greeter",
            "hello",
            ContentType::Protobuf,
            "payload-bytes".into(),
        );
        envelope.from = "com.example.web".into();
        envelope.session_id = "secret-session".into();
        envelope.headers.insert(
            trace::TRACEPARENT.into(),
            trace::traceparent(&trace_id).expect("a W3C trace id"),
        );
        Arc::new(envelope)
    }

    #[test]
    fn the_context_reads_the_received_envelope() {
        let envelope = received();
        let request = Request::new(
            (),
            RequestContext::from_envelope(Arc::clone(&envelope), Scope::anonymous()),
        );
        assert_eq!(request.caller(), "com.example.web");
        assert_eq!(request.endpoint(), "hello");
        assert_eq!(request.message_id(), envelope.message_id);
        assert_eq!(request.session_id(), "secret-session");
        // No traceID header: the trace of the W3C traceparent.
        let traceparent = &envelope.headers[trace::TRACEPARENT];
        assert_eq!(Some(request.trace_id()), trace::trace_id_of(traceparent));
        assert_eq!(
            request.header(trace::TRACEPARENT),
            Some(traceparent.as_str())
        );
        assert_eq!(request.context().service(), "com.example.greeter");
    }

    #[test]
    fn debug_shows_neither_the_session_id_nor_the_payload() {
        let envelope = received();
        let context = RequestContext::from_envelope(Arc::clone(&envelope), Scope::anonymous());
        let shown = format!("{context:?}");
        assert!(!shown.contains("secret-session"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("payload"), "{shown}");
        let trace_id = trace::trace_id_of(&envelope.headers[trace::TRACEPARENT]).unwrap();
        assert!(shown.contains(trace_id), "{shown}");
        assert!(shown.contains("com.example.web"), "{shown}");
    }
}
