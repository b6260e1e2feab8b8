//! The transport conformance suite on a real RabbitMQ (`KERNEL_AMQP_URL`, from
//! `cargo xtask services up`).

#[macro_use]
mod support;

use support::amqp;

conformance_suite!(amqp());
