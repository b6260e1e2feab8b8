//! [`platform_topics`]: what the platform itself publishes, and as which message type, so
//! that a tool can decode those publications without being told.

use kernel_transport::topic_matches;

use super::{DISCOVERY_TOPIC, HEALTHCHECK_TOPIC, STATS_TOPIC};

/// A topic the platform itself publishes on, and the protobuf message it publishes there.
///
/// One row of [`platform_topics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlatformTopic {
    /// The topic, as an AMQP topic pattern (`*` one word, `#` zero or more; see
    /// [`kernel_transport::topic_matches`]). The platform's are plain topics today.
    pub pattern: &'static str,
    /// The full protobuf name of the message published there
    /// (`kernel.platform.v1.Announcement`), as kernel-proto's descriptor set
    /// ([`kernel_proto::FILE_DESCRIPTOR_SET`]) names it.
    pub message_type: &'static str,
    /// Who publishes it, and when, in a few words.
    pub publisher: &'static str,
}

/// The platform's own publications: every instance's announcements, health samples and
/// statistics (the monitoring topics), and the login service's sign-outs.
const PLATFORM_TOPICS: [PlatformTopic; 4] = [
    PlatformTopic {
        pattern: DISCOVERY_TOPIC,
        message_type: "kernel.platform.v1.Announcement",
        publisher: "every instance: at start, every announce interval, at shutdown",
    },
    PlatformTopic {
        pattern: HEALTHCHECK_TOPIC,
        message_type: "kernel.platform.v1.HealthCheckEvent",
        publisher: "every instance: each new health-check sample",
    },
    PlatformTopic {
        pattern: STATS_TOPIC,
        message_type: "kernel.platform.v1.StatsResponse",
        publisher: "every instance: at start, every stats interval, at shutdown",
    },
    PlatformTopic {
        pattern: kernel_auth::SIGNED_OUT_TOPIC,
        message_type: "kernel.login.v1.SignedOut",
        publisher: "the login service: a session ended before its token expired",
    },
];

/// The topics the platform itself publishes on, each with the protobuf message type published
/// there: the monitoring topics ([`DISCOVERY_TOPIC`], [`HEALTHCHECK_TOPIC`], [`STATS_TOPIC`])
/// and the login service's sign-outs ([`kernel_auth::SIGNED_OUT_TOPIC`]).
///
/// A publication carries no type name; this table is how a tool that follows topics
/// (`kernel watch`) decodes the platform's own without being told the type. Teams' topics are
/// not here: their subscribers announce the type they expect (an endpoint's `subscribe` and
/// `request_type` in its [`Announcement`](kernel_proto::platform::Announcement)).
///
/// ```
/// use kernel_server::{HEALTHCHECK_TOPIC, platform_topic, platform_topics};
///
/// let health = platform_topic(HEALTHCHECK_TOPIC).expect("a platform topic");
/// assert_eq!(health.message_type, "kernel.platform.v1.HealthCheckEvent");
/// assert!(platform_topics().iter().any(|t| t.pattern == "kernel.login.signedout"));
/// assert!(platform_topic("com.example.greeter.greeted").is_none());
/// ```
pub fn platform_topics() -> &'static [PlatformTopic] {
    &PLATFORM_TOPICS
}

/// The row of [`platform_topics`] whose pattern `topic` matches, if any: the type a
/// publication on `topic` from the platform is.
pub fn platform_topic(topic: &str) -> Option<&'static PlatformTopic> {
    PLATFORM_TOPICS
        .iter()
        .find(|row| topic_matches(row.pattern, topic))
}

#[cfg(test)]
mod tests {
    use kernel_proto::login::SignedOut;
    use kernel_proto::platform::{Announcement, HealthCheckEvent, StatsResponse};
    use prost::Name;

    use super::*;

    /// Each row names the Rust type the platform's code publishes on that topic (the monitor
    /// tasks and the login service use these types), by the name kernel-proto's descriptors
    /// know it by.
    #[test]
    fn each_platform_topic_names_the_type_published_there() {
        let expected = [
            (DISCOVERY_TOPIC, Announcement::full_name()),
            (HEALTHCHECK_TOPIC, HealthCheckEvent::full_name()),
            (STATS_TOPIC, StatsResponse::full_name()),
            (kernel_auth::SIGNED_OUT_TOPIC, SignedOut::full_name()),
        ];
        let table: Vec<(&str, String)> = platform_topics()
            .iter()
            .map(|row| (row.pattern, row.message_type.to_owned()))
            .collect();
        assert_eq!(table, expected.to_vec());

        let pool = prost_reflect::DescriptorPool::decode(kernel_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| panic!("kernel-proto's descriptors: {e}"));
        for row in platform_topics() {
            assert!(
                pool.get_message_by_name(row.message_type).is_some(),
                "{} is not in kernel-proto's descriptor set",
                row.message_type
            );
            assert!(!row.publisher.is_empty());
        }
    }

    #[test]
    fn a_topic_finds_its_row_by_pattern() {
        let row = platform_topic("kernel.login.signedout");
        assert_eq!(
            row.map(|r| r.message_type),
            Some("kernel.login.v1.SignedOut")
        );
        assert_eq!(
            platform_topic(STATS_TOPIC).map(|r| r.message_type),
            Some("kernel.platform.v1.StatsResponse")
        );
        assert!(platform_topic("kernel.monitor").is_none());
        assert!(platform_topic("kernel.monitor.discovery.extra").is_none());
        assert!(platform_topic("com.example.audit").is_none());
    }
}
