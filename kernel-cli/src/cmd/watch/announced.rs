//! [`Subscribers`]: which topics announced subscribers listen to, and the message type each
//! expects there, learned from the announcements on `kernel.monitor.discovery`.
//!
//! An announcement lists an instance's endpoints; one that subscribes to a topic names its
//! pattern (`subscribe`) and the message it decodes publications as (`request_type`). That is
//! the registry's answer to "what type is a publication on this topic": the type its
//! subscribers expect. Announcements come from anyone who can publish, so what is kept is
//! bounded as `kernel_client::Registry` bounds it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kernel_client::{DEFAULT_SILENCE, MAX_ENDPOINTS, MAX_INSTANCES, MAX_NAME};
use kernel_proto::platform::{Announcement, AnnouncementEvent};
use kernel_transport::topic_matches;

/// How many announcement intervals an instance may stay silent before it is forgotten, as a
/// registry does (three of the default ten-second intervals).
const SILENT_INTERVALS: u32 = 3;

/// The subscriptions live instances have announced.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    /// Instance id → what it subscribes to. Instances with no subscription are not kept.
    instances: HashMap<String, Heard>,
}

/// One instance's subscriptions, and when it was last heard.
#[derive(Debug)]
struct Heard {
    last_seen: Instant,
    /// How long it may stay silent: a few of its announcement intervals.
    silence: Duration,
    subscriptions: Vec<Subscription>,
}

/// One announced subscriber: where it listens, and the message it expects there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Subscription {
    /// The topic pattern (`*` one word, `#` zero or more).
    pub(super) pattern: String,
    /// The full protobuf name of the message it decodes publications as.
    pub(super) message_type: String,
}

impl Heard {
    fn is_live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) < self.silence
    }
}

impl Subscribers {
    /// Learns from one announcement: the instance's subscriptions replace what it announced
    /// before; a farewell (`STOPPED`) forgets it. An announcement out of bounds (names over
    /// `MAX_NAME`, more than `MAX_ENDPOINTS` endpoints, no instance id) is ignored, and so is
    /// a new instance once `MAX_INSTANCES` live ones are kept.
    pub(super) fn heard(&mut self, announcement: &Announcement, now: Instant) {
        let id = &announcement.instance_id;
        if id.is_empty() || id.len() > MAX_NAME || announcement.endpoints.len() > MAX_ENDPOINTS {
            return;
        }
        if announcement.event() == AnnouncementEvent::Stopped {
            self.instances.remove(id);
            return;
        }
        let mut subscriptions: Vec<Subscription> = announcement
            .endpoints
            .iter()
            .filter(|endpoint| {
                !endpoint.subscribe.is_empty()
                    && !endpoint.request_type.is_empty()
                    && endpoint.subscribe.len() <= MAX_NAME
                    && endpoint.request_type.len() <= MAX_NAME
            })
            .map(|endpoint| Subscription {
                pattern: endpoint.subscribe.clone(),
                message_type: endpoint.request_type.clone(),
            })
            .collect();
        subscriptions.dedup();
        if subscriptions.is_empty() {
            self.instances.remove(id);
            return;
        }
        if !self.instances.contains_key(id) && self.instances.len() >= MAX_INSTANCES {
            self.instances.retain(|_, heard| heard.is_live(now));
            if self.instances.len() >= MAX_INSTANCES {
                return;
            }
        }
        let silence = match announcement.interval_ms {
            0 => DEFAULT_SILENCE,
            ms => Duration::from_millis(ms).saturating_mul(SILENT_INTERVALS),
        };
        self.instances.insert(
            id.clone(),
            Heard {
                last_seen: now,
                silence,
                subscriptions,
            },
        );
    }

    /// The message types live subscribers expect on `topic`, most specific subscription
    /// first: a pattern with fewer `#`, then fewer `*`, then more words, wins; the name breaks
    /// ties. Each type once.
    pub(super) fn matching(&self, topic: &str, now: Instant) -> Vec<&Subscription> {
        let mut matching: Vec<&Subscription> = self
            .instances
            .values()
            .filter(|heard| heard.is_live(now))
            .flat_map(|heard| &heard.subscriptions)
            .filter(|subscription| topic_matches(&subscription.pattern, topic))
            .collect();
        matching.sort_by(|a, b| {
            specificity(&a.pattern)
                .cmp(&specificity(&b.pattern))
                .then_with(|| a.message_type.cmp(&b.message_type))
        });
        let mut seen = Vec::new();
        matching.retain(|subscription| {
            let new = !seen.contains(&subscription.message_type.as_str());
            seen.push(subscription.message_type.as_str());
            new
        });
        matching
    }
}

/// A sort key: more specific patterns sort first.
fn specificity(pattern: &str) -> (usize, usize, std::cmp::Reverse<usize>) {
    let words = pattern.split('.');
    let (mut hashes, mut stars, mut all) = (0, 0, 0);
    for word in words {
        all += 1;
        match word {
            "#" => hashes += 1,
            "*" => stars += 1,
            _ => {}
        }
    }
    (hashes, stars, std::cmp::Reverse(all))
}

#[cfg(test)]
mod tests {
    use kernel_proto::platform::EndpointInfo;

    use super::*;

    fn announcement(id: &str, subscriptions: &[(&str, &str)]) -> Announcement {
        let mut endpoints = vec![EndpointInfo {
            name: "health".into(),
            request_type: "kernel.platform.v1.HealthRequest".into(),
            ..Default::default()
        }];
        endpoints.extend(
            subscriptions
                .iter()
                .enumerate()
                .map(|(n, (pattern, message_type))| EndpointInfo {
                    name: format!("on{n}"),
                    subscribe: (*pattern).into(),
                    request_type: (*message_type).into(),
                    ..Default::default()
                }),
        );
        Announcement {
            event: AnnouncementEvent::Running.into(),
            instance_id: id.into(),
            service_name: "com.example.audit".into(),
            endpoints,
            interval_ms: 1000,
            ..Default::default()
        }
    }

    fn names<'a>(found: &[&'a Subscription]) -> Vec<&'a str> {
        found.iter().map(|s| s.message_type.as_str()).collect()
    }

    #[test]
    fn a_subscriber_names_the_type_of_the_topics_it_matches() {
        let now = Instant::now();
        let mut subscribers = Subscribers::default();
        subscribers.heard(
            &announcement("a", &[("com.example.*.greeted", "x.Greeted")]),
            now,
        );
        let found = subscribers.matching("com.example.greeter.greeted", now);
        assert_eq!(names(&found), ["x.Greeted"]);
        assert!(subscribers.matching("com.example.greeted", now).is_empty());
        // Endpoints that subscribe to nothing say nothing about topics.
        assert!(subscribers.matching("health", now).is_empty());
    }

    #[test]
    fn the_most_specific_subscription_comes_first() {
        let now = Instant::now();
        let mut subscribers = Subscribers::default();
        subscribers.heard(&announcement("a", &[("#", "x.Anything")]), now);
        subscribers.heard(&announcement("b", &[("audit.*", "x.Star")]), now);
        subscribers.heard(&announcement("c", &[("audit.login", "x.Exact")]), now);
        subscribers.heard(&announcement("d", &[("audit.login", "x.Exact")]), now);
        let found = subscribers.matching("audit.login", now);
        assert_eq!(names(&found), ["x.Exact", "x.Star", "x.Anything"]);
    }

    #[test]
    fn farewells_silence_and_new_announcements_replace_what_was_heard() {
        let now = Instant::now();
        let mut subscribers = Subscribers::default();
        subscribers.heard(&announcement("a", &[("audit.#", "x.Old")]), now);
        subscribers.heard(&announcement("a", &[("audit.#", "x.New")]), now);
        assert_eq!(names(&subscribers.matching("audit.x", now)), ["x.New"]);

        // Silent for three of its one-second intervals: forgotten.
        let later = now + Duration::from_secs(3);
        assert!(subscribers.matching("audit.x", later).is_empty());

        let mut stopped = announcement("a", &[]);
        stopped.event = AnnouncementEvent::Stopped.into();
        subscribers.heard(&stopped, now);
        assert!(subscribers.matching("audit.x", now).is_empty());
        assert!(subscribers.instances.is_empty());
    }

    #[test]
    fn announcements_out_of_bounds_are_ignored() {
        let now = Instant::now();
        let mut subscribers = Subscribers::default();
        let long = "w".repeat(MAX_NAME + 1);
        subscribers.heard(&announcement(&long, &[("a", "x.A")]), now);
        subscribers.heard(&announcement("", &[("a", "x.A")]), now);
        subscribers.heard(&announcement("b", &[(long.as_str(), "x.B")]), now);
        subscribers.heard(&announcement("c", &[("c", long.as_str())]), now);
        let many: Vec<(&str, &str)> = vec![("m", "x.M"); MAX_ENDPOINTS];
        subscribers.heard(&announcement("d", &many), now);
        assert!(subscribers.instances.is_empty());
    }
}
