//! The `stats` snapshot: counts and latencies per endpoint from the in-memory aggregator.

use std::time::Duration;

use kernel_inst::TimingSummary;
use kernel_proto::platform::{EndpointStats, Latency, StatsResponse};

use super::Operations;

/// The prefix of the counters of error replies by code (`server.error.<code>`).
const ERROR_COUNTER: &str = "server.error.";

/// The instance's statistics since it started, with `status` (`RUNNING`, or `STARTED` /
/// `STOPPED` on the monitoring topic).
///
/// Per endpoint: requests answered with a reply (`success.<endpoint>` timings, which H2 also
/// used for client faults: `BadRequest` and `NotFound` count here), requests answered with
/// another error (`error.<endpoint>`), the latency of successes over the recent window, and the
/// declared SLA. Error replies by code from the `server.error.<code>` counters.
pub(crate) fn snapshot(ops: &Operations, status: &str) -> StatsResponse {
    let recorded = ops.memory.snapshot();
    let endpoints = ops
        .endpoints()
        .iter()
        .map(|endpoint| {
            let success = recorded.timing(&format!("success.{}", endpoint.name));
            let error = recorded.timing(&format!("error.{}", endpoint.name));
            EndpointStats {
                name: endpoint.name.clone(),
                success_count: success.map_or(0, |t| t.count),
                error_count: error.map_or(0, |t| t.count),
                latency: success.map(latency),
                sla: Some(Latency {
                    mean_ms: endpoint.mean_ms,
                    p95_ms: endpoint.upper95_ms,
                    p99_ms: 0.0,
                }),
            }
        })
        .collect();
    let error_counts = recorded
        .counters()
        .iter()
        .filter_map(|(name, count)| {
            let code = name.strip_prefix(ERROR_COUNTER)?;
            // Codes are dotted; H2's `server.error.capacity` (counted beside the code
            // `kernel.server.capacity`) is not one.
            code.contains('.').then_some(())?;
            Some((code.to_owned(), u64::try_from(*count).unwrap_or(0)))
        })
        .collect();
    StatsResponse {
        instance_id: ops.instance_id.clone(),
        service_name: ops.service.clone(),
        service_version: ops.version.clone(),
        uptime_ms: u64::try_from(ops.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        endpoints,
        error_counts,
        status: status.to_owned(),
        hostname: ops.hostname.clone(),
    }
}

fn latency(timing: &TimingSummary) -> Latency {
    Latency {
        mean_ms: ms(timing.mean),
        p95_ms: ms(timing.p95),
        p99_ms: ms(timing.p99),
    }
}

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
