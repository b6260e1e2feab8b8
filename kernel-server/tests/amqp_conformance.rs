//! The transport conformance suite on a real RabbitMQ (`KERNEL_AMQP_URL`, from
//! `cargo xtask services up`).

#[macro_use]
mod support;

use std::sync::Arc;

use kernel_transport::{AmqpTransport, Transport};

/// Each "process" is its own AMQP connection to the broker under test.
struct Amqp(String);

impl support::Harness for Amqp {
    async fn connect(&self) -> Arc<dyn Transport> {
        let transport = support::bounded("an AMQP connection", AmqpTransport::connect(&self.0))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.0));
        Arc::new(transport)
    }
}

fn amqp() -> Amqp {
    Amqp(kernel_testkit::engine_address("KERNEL_AMQP_URL"))
}

conformance_suite!(amqp());
