//! [`TransportConfig`]: the `[transport]` section of the kernel's configuration.

use std::fmt;

use kernel_errors::InvalidConfig;

use crate::brokers::redact_urls;
use serde::{Deserialize, Serialize};

/// Which broker, as configuration: the `[transport]` section of `kernel.toml`
/// (`KERNEL_AMQP_URL`, or `KERNEL_TRANSPORT__AMQP_URL`, in the environment).
///
/// ```toml
/// [transport]
/// amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # or amqps:// for TLS; unset: in process
/// # a cluster: its nodes, comma-separated (see BrokerList)
/// # amqp_url = "amqp://u:p@rabbit-1:5672/%2f,amqp://u:p@rabbit-2:5672/%2f,amqp://u:p@rabbit-3:5672/%2f"
/// work_queues = "classic"                               # or "quorum" (see WorkQueueType)
/// ```
///
/// `Debug`, [`check`](Self::check)'s errors and [`redacted`](Self::redacted) show the URL with
/// its password as `***`:
///
/// ```
/// use kernel_transport::TransportConfig;
///
/// let config: TransportConfig =
///     serde_json::from_str(r#"{"amqp_url": "amqps://billing:s3cret@rabbit.internal:5671/%2f"}"#)?;
/// assert!(!format!("{config:?}").contains("s3cret"));
/// assert_eq!(
///     config.redacted().amqp_url.as_deref(),
///     Some("amqps://billing:***@rabbit.internal:5671/%2f")
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TransportConfig {
    /// The RabbitMQ to use (`amqp://`, or `amqps://` for TLS), or the nodes of a RabbitMQ
    /// cluster, comma-separated ([`BrokerList`](crate::BrokerList)); unset: the in-process
    /// broker (everything in this process). Holds the password: print it with [`redact_url`].
    pub amqp_url: Option<String>,
    /// The type of the services' work queues on RabbitMQ (`KERNEL_TRANSPORT__WORK_QUEUES`).
    /// Every instance of a service must use the same.
    pub work_queues: WorkQueueType,
}

/// The RabbitMQ queue type of a service's work queue: what happens to it when the node that
/// holds it fails. The reasons and costs are in
/// [`docs/decisions.md`](https://github.com/kernel-platform/kernel/blob/main/docs/decisions.md);
/// the arguments on the wire in
/// [`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md).
///
/// Every instance of a service must declare its work queue with the same type: RabbitMQ
/// refuses to declare a queue that exists with another (`TransportError::Broker`, reply code
/// 406, when the service starts consuming).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WorkQueueType {
    /// A classic, non-durable, auto-delete queue (the default): one node holds it. When that
    /// node fails, the queue and the requests in it are gone; every instance declares it
    /// again on a live node (its consumer is cancelled, or its connection moves), usually
    /// within a second or two. Requests sent meanwhile come back as `NoRoute`, and those in
    /// the queue are lost (their calls time out and are retried). Cheapest per message.
    #[default]
    Classic,
    /// A quorum queue (`x-queue-type: quorum`, durable, replicated on every node of a
    /// three-node cluster by Raft), removed after [`QUORUM_QUEUE_EXPIRES`] without consumers:
    /// the queue and its requests survive the loss of a minority of nodes; a new leader takes
    /// over within seconds. Every request is written to disk on a majority of nodes before it
    /// is delivered, which costs latency and broker CPU.
    Quorum,
}

/// How long a quorum work queue lives without a consumer (`x-expires`), in milliseconds:
/// what auto-delete is to a classic queue, with a grace period (a quorum queue cannot be
/// auto-delete). Long enough to ride out a redeploy; short enough that requests to a service
/// that is gone soon come back as `NoRoute` again.
pub const QUORUM_QUEUE_EXPIRES: i32 = 60_000;

impl TransportConfig {
    /// Checks the URL list ([`BrokerList::parse`](crate::BrokerList::parse)).
    ///
    /// # Errors
    /// [`InvalidConfig`] for `amqp_url` if it is not a comma-separated list of `amqp://` or
    /// `amqps://` URLs (the list shown with its passwords as `***`; the reason names the
    /// bad entry by its position).
    pub fn check(&self) -> Result<(), InvalidConfig> {
        match &self.amqp_url {
            Some(list) => crate::BrokerList::parse(list).map(drop).map_err(|error| {
                InvalidConfig::new(
                    "amqp_url",
                    redact_urls(list),
                    format!(
                        "an amqp:// or amqps:// URL, or a comma-separated list of them ({error})"
                    ),
                )
            }),
            None => Ok(()),
        }
    }

    /// The same configuration with the passwords hidden, to show (`loadedconfig`, logs).
    pub fn redacted(&self) -> TransportConfig {
        TransportConfig {
            amqp_url: self.amqp_url.as_deref().map(redact_urls),
            work_queues: self.work_queues,
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_urls))
            .field("work_queues", &self.work_queues)
            .finish()
    }
}

/// `url` with the password of its user information replaced by `***`
/// (`amqp://user:***@host:5672/%2f`), for logs and error messages. A URL without a password
/// is returned as is. When in doubt it hides more: everything between the first `:` after
/// the scheme and the last `@`.
///
/// ```
/// use kernel_transport::redact_url;
///
/// assert_eq!(redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
/// assert_eq!(redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
/// ```
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    let (scheme, rest) = url.split_at(start);
    // The last `@`: a password with an unescaped `@` or `/` is still hidden whole.
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let (user_info, host) = rest.split_at(at);
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}{user}:***{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_and_keeps_the_rest() {
        for (url, redacted) in [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("amqps://u:p@h", "amqps://u:***@h"),
            // A password with an unescaped `@` or `/` is still hidden whole.
            ("amqp://u:p@ss/w@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:@h", "amqp://u:***@h"),
            ("amqp://user@h:5672", "amqp://user@h:5672"),
            ("amqp://h:5672/%2f", "amqp://h:5672/%2f"),
            ("u:p@h", "u:***@h"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[test]
    fn an_invalid_url_is_named_without_its_password() {
        for url in [
            "http://billing:s3cret@rabbit.internal:5672/%2f",
            "billing:s3cret@rabbit.internal:5672",
            "amqp:/billing:s3cret@rabbit.internal",
            "amqp://billing:s3cret@rabbit-1,,amqp://billing:s3cret@rabbit-2",
            "amqp://billing:s3cret@rabbit-1,http://billing:s3cret@rabbit-2",
        ] {
            let config = TransportConfig {
                amqp_url: Some(url.to_owned()),
                ..TransportConfig::default()
            };
            let invalid = config.check().unwrap_err();
            assert_eq!(invalid.key, "amqp_url");
            assert!(!invalid.to_string().contains("s3cret"), "{invalid}");
            assert!(invalid.value.contains("***"), "{invalid}");
        }
    }

    #[test]
    fn a_list_of_nodes_is_accepted_and_shown_without_passwords() {
        let config: TransportConfig = serde_json::from_str(
            r#"{"amqp_url": "amqp://u:s3cret@h1:5692/%2f,amqp://u:s3cret@h2:5693/%2f",
                "work_queues": "quorum"}"#,
        )
        .unwrap();
        config.check().unwrap();
        assert_eq!(config.work_queues, WorkQueueType::Quorum);
        assert_eq!(
            config.redacted().amqp_url.as_deref(),
            Some("amqp://u:***@h1:5692/%2f,amqp://u:***@h2:5693/%2f")
        );
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn the_work_queue_type_defaults_to_classic_and_rejects_others() {
        assert_eq!(
            TransportConfig::default().work_queues,
            WorkQueueType::Classic
        );
        let unknown = serde_json::from_str::<TransportConfig>(r#"{"work_queues": "stream"}"#);
        assert!(unknown.is_err());
    }
}
