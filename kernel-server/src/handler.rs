//! [`Handler`]: an async function from a typed request to a typed response, and its erasure.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kernel_auth::Scope;
use kernel_errors::Error;
use kernel_transport::{Envelope, Message, codec};

use crate::codes;
use crate::request::{Request, RequestContext};

/// Handles one endpoint: `async fn(Request<Req>) -> Result<Rsp, Error>`.
///
/// Implemented for every async function or closure of that shape; there is nothing to
/// implement by hand. The response type is part of the signature, so a handler cannot answer
/// with the wrong message type: the compiler checks what H2 checked at run time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler",
    note = "a handler is an async fn taking `Request<Req>` and returning `Result<Rsp, kernel_errors::Error>`, where Req and Rsp are prost messages with the protobuf JSON mapping (see kernel-proto)"
)]
pub trait Handler<Req, Rsp>: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, request: Request<Req>) -> impl Future<Output = Result<Rsp, Error>> + Send;
}

impl<F, Fut, Req, Rsp> Handler<Req, Rsp> for F
where
    F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Rsp, Error>> + Send,
{
    fn call(&self, request: Request<Req>) -> impl Future<Output = Result<Rsp, Error>> + Send {
        self(request)
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A handler with its message types erased: payload in, encoded payload out.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    /// Decodes the request (`BadRequest` if it does not decode), runs the handler, and encodes
    /// its response as the request was encoded.
    fn handle(&self, envelope: &Arc<Envelope>, scope: Scope) -> BoxFuture<Result<Bytes, Error>>;
}

pub(crate) struct Typed<H, Req, Rsp> {
    handler: Arc<H>,
    _types: PhantomData<fn(Req) -> Rsp>,
}

impl<H, Req, Rsp> Typed<H, Req, Rsp> {
    pub(crate) fn new(handler: H) -> Self {
        Typed {
            handler: Arc::new(handler),
            _types: PhantomData,
        }
    }
}

impl<H, Req, Rsp> ErasedHandler for Typed<H, Req, Rsp>
where
    H: Handler<Req, Rsp>,
    Req: Message,
    Rsp: Message,
{
    fn handle(&self, envelope: &Arc<Envelope>, scope: Scope) -> BoxFuture<Result<Bytes, Error>> {
        let decoded = codec::decode::<Req>(envelope.content_type, &envelope.payload);
        let context = RequestContext::from_envelope(Arc::clone(envelope), scope);
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let message = decoded.map_err(|e| {
                Error::bad_request(
                    codes::BAD_REQUEST,
                    format!("the request does not decode: {e}"),
                )
            })?;
            let content_type = context.content_type().for_reply();
            let response = handler.call(Request::new(message, context)).await?;
            codec::encode(content_type, &response).map_err(|e| {
                Error::internal_server_error(
                    codes::MARSHAL,
                    format!("cannot encode the response: {e}"),
                )
            })
        })
    }
}
