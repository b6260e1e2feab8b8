//! [`MockClient`]: a [`Client`] whose calls are answered by stubs, for users' unit tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kernel_errors::Error;
use kernel_proto::platform::PlatformError;
use kernel_transport::{
    Deliveries, Destination, Envelope, InProcessTransport, Message, Source, Transport,
    TransportError, codec,
};

use crate::Client;

/// The code of the error a call to an endpoint with no stub gets.
pub const NO_STUB: &str = "kernel.mock.notfound";

type Stub = Box<dyn Fn(&Envelope) -> Result<bytes::Bytes, Error> + Send + Sync>;

/// Answers calls with stubs instead of services, and counts them.
///
/// Build it with [`stub`](Self::stub)s, take a [`Client`] from it, and hand that client to the
/// code under test. Calls to an endpoint with no stub fail with `NotFound`
/// ([`NO_STUB`]). Stubs run in the caller's task; a stub's `Err` reaches the caller as an error
/// reply would, so retry rules apply as in production.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use kernel_client::MockClient;
/// use kernel_errors::{Error, Kind};
/// use kernel_proto::platform::{LoadedConfigRequest, LoadedConfigResponse};
///
/// let mock = MockClient::new()
///     .stub("com.example.config", "loadedconfig", |_: LoadedConfigRequest| {
///         Ok(LoadedConfigResponse { config: "{}".into() })
///     })
///     .stub("com.example.broken", "loadedconfig", |_: LoadedConfigRequest| {
///         Err::<LoadedConfigResponse, _>(Error::forbidden("com.example.nope", "no"))
///     });
/// let client = mock.client();
///
/// let reply: LoadedConfigResponse =
///     client.call("com.example.config", "loadedconfig", &LoadedConfigRequest {}).await.unwrap();
/// assert_eq!(reply.config, "{}");
/// let denied: Result<LoadedConfigResponse, _> =
///     client.call("com.example.broken", "loadedconfig", &LoadedConfigRequest {}).await;
/// assert_eq!(denied.unwrap_err().kind(), Kind::Forbidden);
/// assert_eq!(mock.calls("com.example.config", "loadedconfig"), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct MockClient {
    transport: MockTransport,
    client: Client,
}

impl Default for MockClient {
    fn default() -> Self {
        let transport = MockTransport::default();
        // One client per transport: it owns the instance queue's consumer.
        let client = Client::new(transport.clone());
        MockClient { transport, client }
    }
}

#[derive(Clone, Default)]
struct MockTransport {
    replies: InProcessTransport,
    stubs: Arc<Mutex<HashMap<(String, String), Stub>>>,
    calls: Arc<Mutex<HashMap<(String, String), usize>>>,
}

impl std::fmt::Debug for MockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockClient").finish_non_exhaustive()
    }
}

impl MockClient {
    /// A mock with no stubs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers calls to `service`'s `endpoint` with `stub`.
    #[must_use]
    pub fn stub<Req, Rsp, F>(self, service: &str, endpoint: &str, stub: F) -> Self
    where
        Req: Message,
        Rsp: Message,
        F: Fn(Req) -> Result<Rsp, Error> + Send + Sync + 'static,
    {
        let answer: Stub = Box::new(move |request: &Envelope| {
            let decoded = codec::decode::<Req>(request.content_type, &request.payload)
                .map_err(|e| Error::bad_request("kernel.mock.badrequest", e.to_string()))?;
            let response = stub(decoded)?;
            codec::encode(request.content_type.for_reply(), &response)
                .map_err(|e| Error::internal_server_error("kernel.mock.marshal", e.to_string()))
        });
        self.transport
            .stubs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((service.to_owned(), endpoint.to_owned()), answer);
        self
    }

    /// A client whose calls go to the stubs (clones of one client: call this as often as
    /// needed).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// How many requests reached `service`'s `endpoint` (retries count).
    pub fn calls(&self, service: &str, endpoint: &str) -> usize {
        let calls = self
            .transport
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        calls
            .get(&(service.to_owned(), endpoint.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Transport for MockTransport {
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        let Destination::Service(service) = destination else {
            return Ok(()); // publications and pongs go nowhere
        };
        let key = (service.to_owned(), envelope.endpoint.clone());
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default() += 1;
        let answer = {
            let stubs = self.stubs.lock().unwrap_or_else(PoisonError::into_inner);
            match stubs.get(&key) {
                Some(stub) => stub(&envelope),
                None => Err(Error::not_found(
                    NO_STUB,
                    format!("no stub for {}.{}", key.0, key.1),
                )),
            }
        };
        let content_type = envelope.content_type.for_reply();
        let reply = match answer {
            Ok(payload) => envelope.reply(content_type, payload),
            Err(error) => {
                let payload = codec::encode(content_type, &PlatformError::from(&error))
                    .map_err(|e| TransportError::Broker(Box::new(e)))?;
                envelope.error_reply(content_type, payload)
            }
        };
        self.replies
            .send(Destination::Instance(&envelope.reply_to), reply)
            .await
    }

    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError> {
        self.replies.consume(source).await
    }

    fn instance_queue(&self) -> &str {
        self.replies.instance_queue()
    }
}
