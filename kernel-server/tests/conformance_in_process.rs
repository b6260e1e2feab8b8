//! The transport conformance suite on the in-process broker (the embedded default).

#[macro_use]
mod support;

conformance_suite!(support::InProcess(kernel_transport::InProcessBroker::new()));
