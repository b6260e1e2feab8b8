//! [`Context`]: what a command runs with: the global flags, a client on the broker, the
//! session to send.

use std::sync::Arc;
use std::time::Duration;

use kernel_client::Client;
use kernel_transport::AmqpTransport;

use crate::cli::Global;
use crate::colour::Paint;
use crate::failure::Failure;
use crate::session;

/// The name the tool calls as (the `from` header).
pub(crate) const CALLER: &str = "kernel.cli";

#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) global: Global,
}

impl Context {
    /// A client on the broker `--amqp-url` names. Calls are sent once (no retries) and wait
    /// at most `--timeout`.
    pub(crate) async fn client(&self) -> Result<Client, Failure> {
        let url =
            self.global.amqp_url.as_deref().ok_or_else(|| {
                Failure::usage("no broker: pass --amqp-url or set KERNEL_AMQP_URL")
            })?;
        let transport = tokio::time::timeout(Duration::from_secs(10), AmqpTransport::connect(url))
            .await
            .map_err(|_| {
                Failure::Platform(kernel_errors::Error::connection_lost(
                    "kernel.cli.connect",
                    "RabbitMQ did not accept the connection within 10 s",
                ))
            })?
            .map_err(|e| Failure::Platform(e.into()))?;
        let client = Client::builder(Arc::new(transport) as Arc<dyn kernel_transport::Transport>)
            .calling_as(CALLER)
            .deadline(self.global.timeout)
            .attempts(1)
            .without_breaker()
            .without_retry_budget()
            .build()
            .map_err(|e| Failure::usage(e.to_string()))?;
        Ok(client)
    }

    /// Colour for the human output on stdout.
    pub(crate) fn paint(&self) -> Paint {
        Paint::stdout(&self.global)
    }

    /// The session to send: `--session`, else the saved one; none with `--anonymous`.
    pub(crate) fn session(&self) -> Result<Option<String>, Failure> {
        if self.global.anonymous {
            return Ok(None);
        }
        if let Some(session) = &self.global.session {
            return Ok(Some(session.clone()));
        }
        Ok(session::load()?.map(|saved| saved.session_id))
    }
}
