//! [`Registry`]: which services and instances are up, learned from their announcements.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use kernel_errors::Error;
use kernel_proto::platform::{Announcement, AnnouncementEvent};
use kernel_transport::{Deliveries, Source, codec};

use crate::Client;

/// The topic instances announce themselves on.
pub const DISCOVERY_TOPIC: &str = "kernel.monitor.discovery";
/// How long an instance may stay silent before a registry forgets it, unless told otherwise
/// (three of the default ten-second announcements).
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(30);
/// The most instances a registry keeps; announcements of further ones are dropped and counted.
pub const MAX_INSTANCES: usize = 10_000;
/// The most endpoints kept per instance.
pub const MAX_ENDPOINTS: usize = 256;
/// The longest name (service, instance, endpoint, version) an announcement may carry.
pub const MAX_NAME: usize = 255;

/// What a [`Registry`] knows of one running instance.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Instance {
    /// The instance's id (`server-<service>-<uuid>`).
    pub id: String,
    /// The service it serves.
    pub service: String,
    /// The service's version.
    pub version: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its endpoints, by name.
    pub endpoints: Vec<EndpointSla>,
    /// When it started (its own clock).
    pub started_at: SystemTime,
    /// When this registry last heard from it.
    pub last_seen: Instant,
}

/// An endpoint and the service level its instance declares.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointSla {
    /// The endpoint's name.
    pub name: String,
    /// Its declared mean latency.
    pub mean: Duration,
    /// Its declared 95th-percentile latency.
    pub upper95: Duration,
    /// The topic it subscribes to, if any.
    pub subscribe: Option<String>,
    /// The full protobuf name of its request message.
    pub request_type: String,
    /// The full protobuf name of its response message.
    pub response_type: String,
}

/// Which services and instances are up, with which endpoints and SLAs, learned by listening to
/// the announcements every service publishes on [`DISCOVERY_TOPIC`]: no central process.
///
/// An instance announces itself when it starts, every few seconds while it runs, and when it
/// stops; the registry forgets it on its farewell, or once it has been silent for the
/// [`silence`](RegistryBuilder::silence) period. Starting a registry also teaches its client
/// the endpoints' SLAs: a call to an endpoint whose upper-95 latency was announced sizes its
/// attempt timeouts from it, unless the client declares one itself
/// ([`AttemptTimeouts`](crate::AttemptTimeouts)).
///
/// Announcements are only as trustworthy as the broker's users: anyone who can publish can
/// announce. The registry bounds what it keeps ([`MAX_INSTANCES`], [`MAX_ENDPOINTS`],
/// [`MAX_NAME`]) and drops, and counts, what it cannot read; learned attempt timeouts stay
/// within the client's bounds and never outlive a call's deadline.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kernel_errors::Error> {
/// use kernel_client::{Client, Registry};
/// use kernel_transport::InProcessTransport;
///
/// let client = Client::new(InProcessTransport::new());
/// let registry = Registry::start(&client).await?;
/// assert!(registry.services().is_empty(), "nobody has announced anything yet");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
    _listening: Arc<Listening>,
}

/// Builds a [`Registry`]; see [`Registry::builder`].
#[derive(Debug)]
#[must_use]
pub struct RegistryBuilder {
    client: Client,
    silence: Duration,
}

pub(crate) struct Shared {
    /// Service name → instance id → instance.
    instances: RwLock<HashMap<String, HashMap<String, Instance>>>,
    silence: Duration,
    rejected: AtomicU64,
}

/// Stops the listening task when the last registry clone goes.
struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Registry {
    /// A registry with the default silence period, listening through `client`'s transport.
    ///
    /// # Errors
    /// As for consuming a subscription: `ConnectionLost` or `InternalServerError` if the
    /// transport cannot.
    pub async fn start(client: &Client) -> Result<Registry, Error> {
        Registry::builder(client).start().await
    }

    /// A builder, to change the silence period.
    pub fn builder(client: &Client) -> RegistryBuilder {
        RegistryBuilder {
            client: client.clone(),
            silence: DEFAULT_SILENCE,
        }
    }

    /// The services with at least one live instance, sorted by name.
    pub fn services(&self) -> Vec<String> {
        let mut services: Vec<String> = self
            .live()
            .into_iter()
            .map(|instance| instance.service)
            .collect();
        services.sort();
        services.dedup();
        services
    }

    /// The live instances of `service`, sorted by id.
    pub fn instances(&self, service: &str) -> Vec<Instance> {
        let now = Instant::now();
        let services = self
            .shared
            .instances
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut instances: Vec<Instance> = services
            .get(service)
            .into_iter()
            .flat_map(HashMap::values)
            .filter(|instance| self.shared.is_live(instance, now))
            .cloned()
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances
    }

    /// The upper-95 latency live instances declare for `service`'s `endpoint` (the largest,
    /// if they differ).
    pub fn upper95(&self, service: &str, endpoint: &str) -> Option<Duration> {
        self.shared.upper95(service, endpoint)
    }

    /// Announcements dropped because they could not be read or were out of bounds.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    fn live(&self) -> Vec<Instance> {
        let now = Instant::now();
        let services = self
            .shared
            .instances
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        services
            .values()
            .flat_map(HashMap::values)
            .filter(|instance| self.shared.is_live(instance, now))
            .cloned()
            .collect()
    }
}

impl RegistryBuilder {
    /// How long an instance may stay silent before it is forgotten; default
    /// [`DEFAULT_SILENCE`].
    pub fn silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }

    /// Starts listening.
    ///
    /// # Errors
    /// As for [`Registry::start`].
    pub async fn start(self) -> Result<Registry, Error> {
        // A queue of its own (a fresh name), so that every registry hears every announcement.
        let name = format!("kernel.registry.{}", uuid::Uuid::new_v4().simple());
        let deliveries = self
            .client
            .transport()
            .consume(Source::Subscription {
                service: &name,
                topic: DISCOVERY_TOPIC,
                capacity: 64,
            })
            .await?;
        let shared = Arc::new(Shared {
            instances: RwLock::new(HashMap::new()),
            silence: self.silence,
            rejected: AtomicU64::new(0),
        });
        self.client.learn_slas_from(&shared);
        let listening = tokio::spawn(listen(Arc::clone(&shared), deliveries));
        Ok(Registry {
            shared,
            _listening: Arc::new(Listening(listening)),
        })
    }
}

impl Shared {
    fn is_live(&self, instance: &Instance, now: Instant) -> bool {
        now.saturating_duration_since(instance.last_seen) < self.silence
    }

    pub(crate) fn upper95(&self, service: &str, endpoint: &str) -> Option<Duration> {
        let now = Instant::now();
        let services = self
            .instances
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        services
            .get(service)?
            .values()
            .filter(|instance| self.is_live(instance, now))
            .flat_map(|instance| &instance.endpoints)
            .filter(|declared| declared.name == endpoint)
            .map(|declared| declared.upper95)
            .max()
    }

    fn heard(&self, announcement: Announcement) {
        let Some(instance) = instance(&announcement) else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut services = self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if announcement.event() == AnnouncementEvent::Stopped {
            if let Some(instances) = services.get_mut(&instance.service) {
                instances.remove(&instance.id);
                if instances.is_empty() {
                    services.remove(&instance.service);
                }
            }
            return;
        }
        let known = services
            .get(&instance.service)
            .is_some_and(|instances| instances.contains_key(&instance.id));
        if !known && count(&services) >= MAX_INSTANCES {
            self.retain_live(&mut services);
            if count(&services) >= MAX_INSTANCES {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        services
            .entry(instance.service.clone())
            .or_default()
            .insert(instance.id.clone(), instance);
    }

    fn forget_silent(&self) {
        let mut services = self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.retain_live(&mut services);
    }

    fn retain_live(&self, services: &mut HashMap<String, HashMap<String, Instance>>) {
        let now = Instant::now();
        for instances in services.values_mut() {
            instances.retain(|_, instance| self.is_live(instance, now));
        }
        services.retain(|_, instances| !instances.is_empty());
    }
}

fn count(services: &HashMap<String, HashMap<String, Instance>>) -> usize {
    services.values().map(HashMap::len).sum()
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("silence", &self.shared.silence)
            .field("rejected", &self.rejected())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("silence", &self.silence)
            .finish_non_exhaustive()
    }
}

/// Reads announcements until the consumer ends, forgetting silent instances as it goes.
async fn listen(shared: Arc<Shared>, mut deliveries: Deliveries) {
    let mut sweep = tokio::time::interval(shared.silence.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = sweep.tick() => shared.forget_silent(),
            delivery = deliveries.next() => {
                let Some(delivery) = delivery else { break };
                let (envelope, acker) = delivery.into_parts();
                match codec::decode::<Announcement>(envelope.content_type, &envelope.payload) {
                    Ok(announcement) => shared.heard(announcement),
                    Err(error) => {
                        tracing::debug!(%error, "unreadable announcement dropped");
                        shared.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Err(error) = acker.ack().await {
                    tracing::debug!(%error, "could not ack an announcement");
                }
            }
        }
    }
    tracing::debug!("registry: the discovery subscription ended");
}

/// The instance an announcement describes, if it is within bounds.
fn instance(announcement: &Announcement) -> Option<Instance> {
    let names = [
        &announcement.instance_id,
        &announcement.service_name,
        &announcement.service_version,
        &announcement.hostname,
    ];
    if announcement.instance_id.is_empty()
        || announcement.service_name.is_empty()
        || names.iter().any(|name| name.len() > MAX_NAME)
        || announcement.endpoints.len() > MAX_ENDPOINTS
    {
        return None;
    }
    let mut endpoints = Vec::with_capacity(announcement.endpoints.len());
    for declared in &announcement.endpoints {
        let texts = [
            &declared.name,
            &declared.subscribe,
            &declared.request_type,
            &declared.response_type,
        ];
        if declared.name.is_empty() || texts.iter().any(|text| text.len() > MAX_NAME) {
            return None;
        }
        endpoints.push(EndpointSla {
            name: declared.name.clone(),
            mean: millis(declared.mean_ms)?,
            upper95: millis(declared.upper95_ms)?,
            subscribe: Some(declared.subscribe.clone()).filter(|topic| !topic.is_empty()),
            request_type: declared.request_type.clone(),
            response_type: declared.response_type.clone(),
        });
    }
    let started_at = u64::try_from(announcement.started_unix_ms)
        .ok()
        .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some(Instance {
        id: announcement.instance_id.clone(),
        service: announcement.service_name.clone(),
        version: announcement.service_version.clone(),
        hostname: announcement.hostname.clone(),
        endpoints,
        started_at,
        last_seen: Instant::now(),
    })
}

/// A non-negative, finite number of milliseconds as a duration.
fn millis(ms: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

#[cfg(test)]
mod tests {
    use kernel_proto::platform::EndpointInfo;
    use kernel_transport::{ContentType, Destination, Envelope, InProcessTransport, Transport};

    use super::*;

    fn announcing(endpoints: usize, upper95_ms: f64) -> Announcement {
        Announcement {
            event: AnnouncementEvent::Running.into(),
            instance_id: "server-test-1".into(),
            service_name: "test".into(),
            endpoints: (0..endpoints)
                .map(|n| EndpointInfo {
                    name: format!("ep{n}"),
                    upper95_ms,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn announcements_out_of_bounds_are_refused() {
        assert!(instance(&announcing(MAX_ENDPOINTS, 10.0)).is_some());
        assert!(instance(&announcing(MAX_ENDPOINTS + 1, 10.0)).is_none());
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(instance(&announcing(1, bad)).is_none(), "{bad}");
        }
        let mut long = announcing(1, 10.0);
        long.service_name = "s".repeat(MAX_NAME + 1);
        assert!(instance(&long).is_none());
        let mut anonymous = announcing(1, 10.0);
        anonymous.instance_id.clear();
        assert!(instance(&anonymous).is_none());
    }

    #[tokio::test]
    async fn garbage_on_the_discovery_topic_is_counted_and_ignored() {
        let transport = InProcessTransport::new();
        let client = Client::new(transport.clone());
        let registry = Registry::start(&client).await.unwrap();
        for payload in [&b"\xff\xff\xff"[..], b"{not json"] {
            let content_type = if payload[0] == b'{' {
                ContentType::Json
            } else {
                ContentType::Protobuf
            };
            let publication =
                Envelope::publication(DISCOVERY_TOPIC, content_type, payload.to_vec().into());
            transport
                .send(Destination::Topic(DISCOVERY_TOPIC), publication)
                .await
                .unwrap();
        }
        client
            .publish(DISCOVERY_TOPIC, &announcing(2, 150.0))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while registry.instances("test").is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the good announcement is heard after the bad ones");
        assert_eq!(registry.rejected(), 2);
        assert_eq!(
            registry.upper95("test", "ep1"),
            Some(Duration::from_millis(150))
        );
    }
}
