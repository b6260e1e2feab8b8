//! `kernel health SERVICE` and `kernel stats SERVICE`: the default endpoints as tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel_proto::platform::{
    HealthPriority, HealthRequest, HealthResponse, HealthStatus, StatsRequest, StatsResponse,
};

use super::{out, out_json};
use crate::colour::{BAD, GOOD, WARN};
use crate::context::Context;
use crate::failure::Failure;
use crate::table::{Cell, Table, ms};

pub(crate) async fn health(context: &Context, service: &str, run_now: bool) -> Result<(), Failure> {
    let client = context.client().await?;
    let session = context.session()?;
    let request = HealthRequest { run_now };
    let call = client.call::<HealthResponse>(service, "health", &request);
    let health = match session {
        Some(session) => call.session_id(session).await?,
        None => call.await?,
    };
    if context.global.json {
        return out_json(&health);
    }
    let paint = context.paint();
    out(format_args!(
        "service   {}\ninstance  {}\nhealthy   {}\n\n",
        health.service_name,
        health.instance_id,
        if health.healthy {
            paint.paint("yes", GOOD)
        } else {
            paint.paint("NO", BAD)
        }
    ));
    let mut table = Table::new(["CHECK", "STATUS", "PRIORITY", "AGE", "DETAIL"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    for check in &health.checks {
        let status = match HealthStatus::try_from(check.status) {
            Ok(HealthStatus::Healthy) => Cell::styled("healthy", GOOD),
            Ok(HealthStatus::Unhealthy) => Cell::styled("UNHEALTHY", BAD),
            _ => Cell::styled("unknown", WARN),
        };
        let priority = match HealthPriority::try_from(check.priority) {
            Ok(HealthPriority::Pager) => "pager",
            Ok(HealthPriority::Email) => "email",
            Ok(HealthPriority::Warning) => "warning",
            _ => "-",
        };
        let age = u128::try_from(check.timestamp_unix_ms)
            .ok()
            .filter(|at| *at > 0)
            .map_or_else(|| "-".to_owned(), |at| age(now.saturating_sub(at)));
        let mut detail: Vec<String> = check
            .measurements
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        detail.sort();
        if !check.error_message.is_empty() {
            detail.insert(0, check.error_message.clone());
        }
        table.styled_row(vec![
            check.id.clone().into(),
            status,
            priority.to_owned().into(),
            age.into(),
            detail.join(" ").into(),
        ]);
    }
    out(table.render(paint));
    Ok(())
}

fn age(ms: u128) -> String {
    let secs = ms / 1000;
    if secs < 120 {
        format!("{secs}s")
    } else {
        format!("{}m", secs / 60)
    }
}

pub(crate) async fn stats(context: &Context, service: &str) -> Result<(), Failure> {
    let client = context.client().await?;
    let session = context.session()?;
    let call = client.call::<StatsResponse>(service, "stats", &StatsRequest {});
    let stats = match session {
        Some(session) => call.session_id(session).await?,
        None => call.await?,
    };
    if context.global.json {
        return out_json(&stats);
    }
    let paint = context.paint();
    let uptime = Duration::from_millis(stats.uptime_ms).as_secs();
    out(format_args!(
        "service   {} {}\ninstance  {} on {}\nstatus    {}, up {}s\n\n",
        stats.service_name,
        stats.service_version,
        stats.instance_id,
        stats.hostname,
        stats.status,
        uptime
    ));
    let mut table = Table::new([
        "ENDPOINT", "OK", "ERRORS", "MEAN", "P95", "P99", "SLA MEAN", "SLA P95",
    ]);
    for endpoint in &stats.endpoints {
        let latency = endpoint.latency.unwrap_or_default();
        let sla = endpoint.sla.unwrap_or_default();
        table.styled_row(vec![
            endpoint.name.clone().into(),
            endpoint.success_count.to_string().into(),
            count_of_errors(endpoint.error_count),
            ms(latency.mean_ms).into(),
            ms(latency.p95_ms).into(),
            ms(latency.p99_ms).into(),
            ms(sla.mean_ms).into(),
            ms(sla.p95_ms).into(),
        ]);
    }
    out(table.render(paint));
    if !stats.error_counts.is_empty() {
        let mut errors = Table::new(["ERROR CODE", "COUNT"]);
        let mut counts: Vec<_> = stats.error_counts.iter().collect();
        counts.sort();
        for (code, count) in counts {
            errors.row(vec![code.clone(), count.to_string()]);
        }
        out(format_args!("\n{}", errors.render(paint)));
    }
    Ok(())
}

/// A count of errors, red unless it is zero.
pub(crate) fn count_of_errors(count: u64) -> Cell {
    let style = if count == 0 { Default::default() } else { BAD };
    Cell::styled(count.to_string(), style)
}
