//! What an instance publishes while it serves: announcements on `kernel.monitor.discovery`,
//! health samples on `kernel.monitor.healthcheck`, statistics on `kernel.monitor.stats`.
//!
//! Publications are best effort: one that cannot be sent (the broker is away) is logged and
//! skipped; the next interval sends a fresh one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kernel_proto::platform::{
    Announcement, AnnouncementEvent, HealthCheck as Sample, HealthCheckEvent,
};
use kernel_transport::Message;
use tokio::task::JoinSet;

use super::health::unix_ms;
use super::{DISCOVERY_TOPIC, HEALTHCHECK_TOPIC, Operations, STATS_TOPIC, stats};

/// How long the farewell publications may take at shutdown.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the health checks and the periodic publications until the returned set is dropped.
pub(crate) fn start(ops: &Arc<Operations>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for index in 0..ops.checks.len() {
        let ops = Arc::clone(ops);
        tasks.spawn(async move {
            let slot = &ops.checks[index];
            loop {
                let (sample, new) = slot.run(tokio::time::Instant::now().into_std()).await;
                if new {
                    publish_health(&ops, &sample).await;
                }
                tokio::time::sleep(slot.check.interval).await;
            }
        });
    }
    let announcing = Arc::clone(ops);
    tasks.spawn(async move {
        let mut event = AnnouncementEvent::Started;
        loop {
            publish(
                &announcing,
                DISCOVERY_TOPIC,
                &announcement(&announcing, event),
            )
            .await;
            event = AnnouncementEvent::Running;
            tokio::time::sleep(announcing.announce_interval).await;
        }
    });
    let reporting = Arc::clone(ops);
    tasks.spawn(async move {
        let mut status = "STARTED";
        loop {
            publish(
                &reporting,
                STATS_TOPIC,
                &stats::snapshot(&reporting, status),
            )
            .await;
            status = "RUNNING";
            tokio::time::sleep(reporting.stats_interval).await;
        }
    });
    tasks
}

/// Says goodbye: a `STOPPED` announcement (registries forget the instance at once) and the
/// final statistics, within [`FAREWELL_TIMEOUT`].
pub(crate) async fn farewell(ops: &Operations) {
    let goodbye = async {
        publish(
            ops,
            DISCOVERY_TOPIC,
            &announcement(ops, AnnouncementEvent::Stopped),
        )
        .await;
        publish(ops, STATS_TOPIC, &stats::snapshot(ops, "STOPPED")).await;
    };
    if tokio::time::timeout(FAREWELL_TIMEOUT, goodbye)
        .await
        .is_err()
    {
        tracing::debug!(service = %ops.service, "farewell publications timed out");
    }
}

/// Publishes one health sample.
pub(crate) async fn publish_health(ops: &Operations, sample: &Sample) {
    let event = HealthCheckEvent {
        service_name: ops.service.clone(),
        service_version: ops.version.clone(),
        instance_id: ops.instance_id.clone(),
        hostname: ops.hostname.clone(),
        check: Some(sample.clone()),
    };
    publish(ops, HEALTHCHECK_TOPIC, &event).await;
}

/// The instance's announcement for `event`.
pub(crate) fn announcement(ops: &Operations, event: AnnouncementEvent) -> Announcement {
    Announcement {
        event: event.into(),
        instance_id: ops.instance_id.clone(),
        service_name: ops.service.clone(),
        service_version: ops.version.clone(),
        description: ops.description.clone(),
        hostname: ops.hostname.clone(),
        instance_queue: ops.client.transport().instance_queue().to_owned(),
        endpoints: ops.endpoints().to_vec(),
        timestamp_unix_ms: unix_ms(SystemTime::now()),
        interval_ms: u64::try_from(ops.announce_interval.as_millis()).unwrap_or(u64::MAX),
        started_unix_ms: unix_ms(ops.started_at),
    }
}

async fn publish<M: Message>(ops: &Operations, topic: &str, message: &M) {
    if let Err(error) = ops.client.publish(topic, message).await {
        tracing::debug!(service = %ops.service, %topic, %error, "monitoring publication not sent");
    }
}
