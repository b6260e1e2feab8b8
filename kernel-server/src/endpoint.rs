//! [`Endpoint`]: a name, a handler, its declared latency, and optionally a topic.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kernel_auth::Authoriser;
use kernel_errors::Error;
use kernel_transport::Message;

use crate::handler::{ErasedHandler, Handler, Typed};
use crate::request::Request;

/// The mean latency an endpoint declares unless told otherwise.
pub const DEFAULT_MEAN_TIME: Duration = Duration::from_millis(100);
/// The 95th-percentile latency an endpoint declares unless told otherwise.
pub const DEFAULT_UPPER95: Duration = Duration::from_millis(200);

/// One endpoint of a service: its name, its handler, and what it promises.
///
/// The declared mean and 95th-percentile latencies are the endpoint's service level: callers
/// size their attempt timeouts from the latter, and admission control (a later layer) lets a
/// request wait at most the mean for capacity. An endpoint that [`subscribe`](Self::subscribe)s
/// to a topic also receives that topic's publications (its handler's response is discarded).
///
/// ```
/// use std::time::Duration;
/// use kernel_errors::Error;
/// use kernel_proto::platform::{LoadedConfigRequest, LoadedConfigResponse};
/// use kernel_server::{Endpoint, Request};
///
/// async fn config(_: Request<LoadedConfigRequest>) -> Result<LoadedConfigResponse, Error> {
///     Ok(LoadedConfigResponse::default())
/// }
///
/// let endpoint = Endpoint::new("config", config)
///     .mean_time(Duration::from_millis(5))
///     .upper95(Duration::from_millis(20));
/// assert_eq!(endpoint.name(), "config");
/// ```
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) name: String,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) mean_time: Duration,
    pub(crate) upper95: Duration,
    pub(crate) subscribe: Option<String>,
    pub(crate) request_type: String,
    pub(crate) response_type: String,
    pub(crate) authoriser: Authoriser,
    /// Its timings' names, made once.
    pub(crate) buckets: Buckets,
}

/// The names an endpoint's timings are recorded under (H2's): `success.<endpoint>` and
/// `error.<endpoint>`.
#[derive(Clone, Debug)]
pub(crate) struct Buckets {
    pub(crate) success: String,
    pub(crate) error: String,
}

impl Buckets {
    fn new(endpoint: &str) -> Self {
        Buckets {
            success: format!("success.{endpoint}"),
            error: format!("error.{endpoint}"),
        }
    }
}

impl Endpoint {
    /// An endpoint named `name` served by `handler`.
    pub fn new<H, Req, Rsp>(name: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Req, Rsp>,
        Req: Message,
        Rsp: Message,
    {
        let name = name.into();
        Endpoint {
            buckets: Buckets::new(&name),
            name,
            handler: Arc::new(Typed::new(handler)),
            mean_time: DEFAULT_MEAN_TIME,
            upper95: DEFAULT_UPPER95,
            subscribe: None,
            request_type: <Req as prost::Name>::full_name(),
            response_type: <Rsp as prost::Name>::full_name(),
            authoriser: Authoriser::default(),
        }
    }

    /// An endpoint named `name` whose handler also takes shared state: `handler(state, request)`
    /// gets a clone of `state` for each request (wrap it in an `Arc` if cloning it is not
    /// cheap), as axum's `State` does. Handlers need not capture anything.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use kernel_errors::Error;
    /// use kernel_proto::examples::{HelloRequest, HelloResponse};
    /// use kernel_server::{Endpoint, Request};
    ///
    /// struct Greeter { greeted: AtomicU64 }
    ///
    /// async fn hello(greeter: Arc<Greeter>, request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    ///     let n = greeter.greeted.fetch_add(1, Ordering::Relaxed) + 1;
    ///     Ok(HelloResponse { greeting: format!("hello #{n}, {}", request.message().name), served_by: String::new() })
    /// }
    ///
    /// let state = Arc::new(Greeter { greeted: AtomicU64::new(0) });
    /// let endpoint = Endpoint::with_state("hello", state, hello);
    /// assert_eq!(endpoint.name(), "hello");
    /// ```
    pub fn with_state<S, H, Fut, Req, Rsp>(name: impl Into<String>, state: S, handler: H) -> Self
    where
        S: Clone + Send + Sync + 'static,
        H: Fn(S, Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rsp, Error>> + Send + 'static,
        Req: Message,
        Rsp: Message,
    {
        Self::new(name, move |request: Request<Req>| {
            handler(state.clone(), request)
        })
    }

    /// Declares the mean latency; default [`DEFAULT_MEAN_TIME`].
    #[must_use]
    pub fn mean_time(mut self, mean: Duration) -> Self {
        self.mean_time = mean;
        self
    }

    /// Declares the 95th-percentile latency; default [`DEFAULT_UPPER95`].
    #[must_use]
    pub fn upper95(mut self, upper95: Duration) -> Self {
        self.upper95 = upper95;
        self
    }

    /// Who may call it; default [`Authoriser::admin`] (a user, or a service by rule, with the
    /// `ADMIN` role), as in H2: an endpoint is closed unless declared otherwise.
    #[must_use]
    pub fn authoriser(mut self, authoriser: Authoriser) -> Self {
        self.authoriser = authoriser;
        self
    }

    /// Anyone may call it, signed in or not (`authoriser(Authoriser::Open)`).
    #[must_use]
    pub fn open(self) -> Self {
        self.authoriser(Authoriser::Open)
    }

    /// The endpoint's authoriser.
    pub fn declared_authoriser(&self) -> &Authoriser {
        &self.authoriser
    }

    /// Also delivers publications on `topic` (AMQP topic patterns allowed) to this handler.
    #[must_use]
    pub fn subscribe(mut self, topic: impl Into<String>) -> Self {
        self.subscribe = Some(topic.into());
        self
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared mean latency.
    pub fn declared_mean_time(&self) -> Duration {
        self.mean_time
    }

    /// The declared 95th-percentile latency.
    pub fn declared_upper95(&self) -> Duration {
        self.upper95
    }

    /// The topic this endpoint subscribes to, if any.
    pub fn subscription(&self) -> Option<&str> {
        self.subscribe.as_deref()
    }

    /// The full protobuf name of the request message (e.g. `kernel.examples.v1.HelloRequest`).
    pub fn request_type(&self) -> &str {
        &self.request_type
    }

    /// The full protobuf name of the response message.
    pub fn response_type(&self) -> &str {
        &self.response_type
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("mean_time", &self.mean_time)
            .field("upper95", &self.upper95)
            .field("subscribe", &self.subscribe)
            .field("request_type", &self.request_type)
            .field("response_type", &self.response_type)
            .field("authoriser", &self.authoriser)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a valid endpoint name: non-empty lowercase ASCII letters, digits, `_`,
/// `-` and `.` (H2 required lowercase too).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}
