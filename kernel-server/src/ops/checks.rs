//! The health checks every service has.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kernel_client::Client;
use kernel_inst::MemoryInstrumenter;

use super::health::{HealthCheck, Measurements, Unhealthy};
use crate::admission::Admission;

/// How many checks [`builtin`] returns; they come first in a service's list.
pub(crate) const BUILTIN_CHECKS: usize = 3;

/// At most this many open circuits are named in a sample's measurements.
const MAX_CIRCUITS_NAMED: usize = 32;

/// `kernel.transport.connection`, `kernel.client.circuit` and `kernel.resource.capacity`.
pub(crate) fn builtin(
    client: &Client,
    admission: &Arc<Admission>,
    capacity: u16,
    memory: &MemoryInstrumenter,
) -> Vec<HealthCheck> {
    let transport = Arc::clone(client.transport());
    let connection = HealthCheck::new("kernel.transport.connection", move || {
        let status = transport.status();
        async move {
            status
                .map(|()| Measurements::new())
                .map_err(|error| Unhealthy::new(error.to_string()))
        }
    });

    let client = client.clone();
    let circuit = HealthCheck::new("kernel.client.circuit", move || {
        let open = client.open_circuits();
        async move {
            if open.is_empty() {
                return Ok(Measurements::new());
            }
            let mut failed = Unhealthy::new(format!("{} circuits not closed", open.len()));
            for (service, endpoint, state) in open.iter().take(MAX_CIRCUITS_NAMED) {
                failed = failed.measurement(format!("{service}.{endpoint}"), format!("{state:?}"));
            }
            Err(failed)
        }
    });

    let admission = Arc::clone(admission);
    let memory = memory.clone();
    let shed_before = Arc::new(AtomicI64::new(0));
    let resources = HealthCheck::new("kernel.resource.capacity", move || {
        let shed = memory
            .snapshot()
            .counter("server.error.capacity")
            .unwrap_or(0);
        let shed_since = shed - shed_before.swap(shed, Ordering::AcqRel);
        let measured = Measurements::from([
            ("capacity".to_owned(), capacity.to_string()),
            ("inflight".to_owned(), admission.running().to_string()),
            ("shed".to_owned(), shed_since.to_string()),
        ]);
        async move {
            if shed_since > 0 {
                let mut failed = Unhealthy::new(format!(
                    "{shed_since} requests shed for capacity since the last run"
                ));
                for (name, value) in measured {
                    failed = failed.measurement(name, value);
                }
                return Err(failed);
            }
            Ok(measured)
        }
    });
    vec![connection, circuit, resources]
}
