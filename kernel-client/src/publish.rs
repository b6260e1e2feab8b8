//! [`Publish`]: one publication, awaited to send.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use kernel_errors::Error;
use kernel_transport::{ContentType, Destination, Envelope, Message, codec};

use crate::{Client, codes};

/// A publication, not sent yet. Await it to send.
///
/// Built by [`Client::publish`].
#[must_use = "a publication is not sent until it is awaited"]
pub struct Publish<'a, M> {
    client: &'a Client,
    topic: &'a str,
    message: &'a M,
    content_type: ContentType,
    session_id: String,
}

impl<M> std::fmt::Debug for Publish<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<'a, M: Message> Publish<'a, M> {
    pub(crate) fn new(client: &'a Client, topic: &'a str, message: &'a M) -> Self {
        Publish {
            client,
            topic,
            message,
            content_type: client.inner().defaults.content_type,
            session_id: String::new(),
        }
    }

    /// Encodes the message as JSON.
    pub fn json(mut self) -> Self {
        self.content_type = ContentType::Json;
        self
    }

    /// Sends the publisher's session id (`sessionID` header).
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = session_id.into();
        self
    }

    async fn run(self) -> Result<(), Error> {
        let payload = codec::encode(self.content_type, self.message).map_err(|e| {
            Error::bad_request(
                codes::MARSHAL,
                format!("cannot encode the publication: {e}"),
            )
        })?;
        let inner = self.client.inner();
        let mut publication = Envelope::publication(self.topic, self.content_type, payload);
        publication.from = self.client.caller().to_owned();
        publication.session_id = self.session_id;
        publication.reply_to = inner.transport.instance_queue().to_owned();
        inner
            .transport
            .send(Destination::Topic(self.topic), publication)
            .await?;
        inner
            .instrumenter
            .counter(&format!("client.publish.{}", self.topic), 1, 1.0);
        Ok(())
    }
}

impl<'a, M: Message> IntoFuture for Publish<'a, M> {
    type Output = Result<(), Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
