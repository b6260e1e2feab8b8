//! The reply router: the one consumer of a process's instance queue.
//!
//! It hands each reply or error to the call waiting for its correlation id, and each request
//! the transport hands back as returned (no queue took it) to the call that sent it; answers
//! heartbeat pings, and counts replies nobody waits for (`client.reply.stray`). When the instance queue's
//! stream ends (the transport closed), every waiting call is told at once.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use foldhash::HashMap;
use kernel_inst::Instrumenter;
use kernel_transport::{Deliveries, Destination, Envelope, MessageType, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Answers kept for one call until it reads them: one per attempt is the norm; more (a
/// broker user replaying replies to a call) are dropped and counted as stray, so that nobody
/// can grow a waiting call's memory.
pub const ANSWERS_PER_CALL: usize = 16;

/// What a waiting call can be told.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A reply or an error reply correlated with the call's message id, as its delivery
    /// shared it. Not inline: a call's channel allocates its slots in a block of 32 when it is
    /// made, and an envelope is a few hundred bytes, so an unboxed answer made every call
    /// allocate over ten kilobytes for the one reply it nearly always gets.
    Reply(Arc<Envelope>),
    /// The call's request came back from the broker: no queue took it.
    Returned,
}

/// Calls waiting for a reply, by message id.
#[derive(Debug, Default)]
pub(crate) struct Pending(Mutex<HashMap<String, mpsc::Sender<Answer>>>);

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, mpsc::Sender<Answer>>> {
        // Each critical section is one map operation: nothing is left half done by a panic.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a call: every answer correlated with `message_id` goes to it until the
    /// returned registration is dropped (one registration serves all the call's attempts).
    pub(crate) fn register(self: &Arc<Self>, message_id: &str) -> Registration {
        let (sender, receiver) = mpsc::channel(ANSWERS_PER_CALL);
        self.lock().insert(message_id.to_owned(), sender);
        Registration {
            pending: Arc::clone(self),
            message_id: message_id.to_owned(),
            receiver,
        }
    }

    /// Hands an answer to its call; false if no call waits for it.
    fn complete(&self, envelope: Arc<Envelope>) -> bool {
        let sender = self.lock().get(&envelope.correlation_id).cloned();
        sender.is_some_and(|sender| sender.try_send(Answer::Reply(envelope)).is_ok())
    }

    /// Tells the call that sent `message_id` that its request found no queue.
    fn returned(&self, message_id: &str) -> bool {
        let sender = self.lock().get(message_id).cloned();
        sender.is_some_and(|sender| sender.try_send(Answer::Returned).is_ok())
    }

    /// Tells every waiting call that no answer will come.
    fn fail_all(&self) {
        self.lock().clear();
    }
}

/// One call's claim on its answers. Dropping it stops waiting; later answers count as stray.
#[derive(Debug)]
pub(crate) struct Registration {
    pending: Arc<Pending>,
    message_id: String,
    receiver: mpsc::Receiver<Answer>,
}

impl Registration {
    /// The next answer, or `None` if none can come (the router stopped).
    pub(crate) async fn reply(&mut self) -> Option<Answer> {
        self.receiver.recv().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.message_id);
    }
}

/// The running router; aborts its task when dropped (with the last `Client` clone).
#[derive(Debug)]
pub(crate) struct Router {
    task: JoinHandle<()>,
}

impl Router {
    pub(crate) fn start(
        mut deliveries: Deliveries,
        pending: Arc<Pending>,
        transport: Arc<dyn Transport>,
        instrumenter: Arc<dyn Instrumenter>,
    ) -> Self {
        let task = tokio::spawn(async move {
            while let Some(delivery) = deliveries.next().await {
                if delivery.is_returned() {
                    let (request, _) = delivery.into_parts();
                    if !pending.returned(&request.message_id) {
                        tracing::debug!("a returned request nobody waits for any more");
                    }
                    continue;
                }
                let (envelope, _no_ack_needed) = delivery.into_shared();
                route(
                    envelope,
                    &pending,
                    transport.as_ref(),
                    instrumenter.as_ref(),
                )
                .await;
            }
            tracing::warn!("the instance queue's consumer ended; waiting calls fail");
            pending.fail_all();
        });
        Router { task }
    }

    /// Whether the router still runs (the transport has not closed its instance queue).
    pub(crate) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn route(
    envelope: Arc<Envelope>,
    pending: &Pending,
    transport: &dyn Transport,
    instrumenter: &dyn Instrumenter,
) {
    if envelope.is_ping() {
        if !envelope.reply_to.is_empty() {
            let pong = envelope.pong();
            if let Err(error) = transport
                .send(Destination::Instance(&envelope.reply_to), pong)
                .await
            {
                tracing::debug!(%error, "could not answer a heartbeat");
            }
        }
        return;
    }
    match envelope.message_type {
        MessageType::Reply | MessageType::Error => {
            if !pending.complete(envelope) {
                tracing::debug!("stray reply dropped: no call waits for its correlation id");
                instrumenter.counter("client.reply.stray", 1, 1.0);
            }
        }
        other => {
            tracing::debug!(message_type = %other, "unexpected message on the instance queue");
            instrumenter.counter("client.reply.unexpected", 1, 1.0);
        }
    }
}
