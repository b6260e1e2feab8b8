//! [`BrokerList`]: the nodes of a RabbitMQ cluster, as `KERNEL_AMQP_URL` lists them.

use std::fmt;
use std::str::FromStr;

use crate::config::redact_url;

/// One or more broker URLs, the nodes of one RabbitMQ cluster: `KERNEL_AMQP_URL` (or
/// `transport.amqp_url`) with the URLs separated by commas.
///
/// ```text
/// amqp://billing:s3cret@rabbit-1:5672/%2f,amqp://billing:s3cret@rabbit-2:5672/%2f
/// ```
///
/// Blanks around each URL are ignored. A comma inside a password must be written `%2C`, as
/// any reserved character of a URL is. Every URL must be `amqp://` or `amqps://`, and no URL
/// may appear twice; the AMQP transport further checks that every node is reached as the same
/// user in the same virtual host (the user is the `user_id` of everything the transport
/// publishes, so it may not change with the node).
///
/// [`AmqpTransport`](crate::AmqpTransport) starts at a random node of the list and walks it
/// in order, wrapping round; after losing a node it starts at the next one (see
/// [`docs/operations.md`](https://github.com/kernel-platform/kernel/blob/main/docs/operations.md)).
///
/// `Debug` and every error show the URLs with their passwords as `***`.
///
/// ```
/// use kernel_transport::{BrokerList, BrokerListError};
///
/// let brokers: BrokerList = "amqp://u:p@h1:5672/%2f, amqp://u:p@h2:5672/%2f".parse()?;
/// assert_eq!(brokers.len(), 2);
/// assert_eq!(brokers.urls().nth(1), Some("amqp://u:p@h2:5672/%2f"));
///
/// let error = "amqp://u:s3cret@h1,,amqp://u:s3cret@h2".parse::<BrokerList>().unwrap_err();
/// assert_eq!(error, BrokerListError::EmptyEntry { position: 2 });
/// # Ok::<(), BrokerListError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerList {
    urls: Vec<String>,
}

impl BrokerList {
    /// Splits `list` at its commas and checks each URL's scheme.
    ///
    /// # Errors
    /// [`BrokerListError`] naming the first bad entry by its position (from 1), its password
    /// hidden.
    pub fn parse(list: &str) -> Result<Self, BrokerListError> {
        if list.trim().is_empty() {
            return Err(BrokerListError::Empty);
        }
        let mut urls: Vec<String> = Vec::new();
        for (index, url) in list.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            if url.is_empty() {
                return Err(BrokerListError::EmptyEntry { position });
            }
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(BrokerListError::Scheme {
                    position,
                    url: redact_url(url),
                });
            }
            if let Some(first) = urls.iter().position(|seen| seen == url) {
                return Err(BrokerListError::Duplicate {
                    position,
                    first: first + 1,
                    url: redact_url(url),
                });
            }
            urls.push(url.to_owned());
        }
        Ok(BrokerList { urls })
    }

    /// The URLs, in the order given. They hold passwords: print them with [`redact_url`].
    pub fn urls(&self) -> impl ExactSizeIterator<Item = &str> {
        self.urls.iter().map(String::as_str)
    }

    /// How many nodes the list names (at least one).
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Never: a list names at least one node. Here for `len`'s sake.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The list as given back, comma-separated, with every password as `***`.
    pub fn redacted(&self) -> String {
        redact_urls(&self.urls.join(","))
    }
}

impl FromStr for BrokerList {
    type Err = BrokerListError;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        BrokerList::parse(list)
    }
}

impl fmt::Debug for BrokerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.urls.iter().map(|url| redact_url(url)))
            .finish()
    }
}

/// A comma-separated list of URLs with each one's password as `***`.
pub(crate) fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// A broker list that cannot be used. Permanent: fix the configuration. Positions count from
/// 1; URLs are shown with their passwords as `***`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerListError {
    /// No URL at all.
    #[error("no broker URL given")]
    Empty,
    /// Nothing between two commas, or a comma at an end.
    #[error("broker URL {position} of the list is empty (two commas in a row, or one at an end)")]
    EmptyEntry {
        /// Which entry, from 1.
        position: usize,
    },
    /// An entry that is not `amqp://` or `amqps://`.
    #[error("broker URL {position} ({url}) is not an amqp:// or amqps:// URL")]
    Scheme {
        /// Which entry, from 1.
        position: usize,
        /// The entry, its password hidden.
        url: String,
    },
    /// An entry that does not parse as a broker URL.
    #[error("broker URL {position} ({url}) is not one: {reason}")]
    Invalid {
        /// Which entry, from 1.
        position: usize,
        /// The entry, its password hidden.
        url: String,
        /// What is wrong with it (never the password).
        reason: String,
    },
    /// The same URL twice.
    #[error("broker URL {position} ({url}) repeats URL {first}")]
    Duplicate {
        /// Which entry, from 1.
        position: usize,
        /// The earlier entry it repeats.
        first: usize,
        /// The entry, its password hidden.
        url: String,
    },
    /// An entry that logs in as another user than the first: the user is the `user_id` of
    /// everything the transport publishes, so it cannot change with the node.
    #[error(
        "broker URL {position} logs in as {user:?}, URL 1 as {first:?}: every node must be reached as one user"
    )]
    MixedUsers {
        /// Which entry, from 1.
        position: usize,
        /// Its user.
        user: String,
        /// The first entry's user.
        first: String,
    },
    /// An entry in another virtual host than the first: a cluster's nodes share their
    /// virtual hosts, so the list would name two places.
    #[error(
        "broker URL {position} names virtual host {vhost:?}, URL 1 {first:?}: every node must be in one virtual host"
    )]
    MixedVirtualHosts {
        /// Which entry, from 1.
        position: usize,
        /// Its virtual host.
        vhost: String,
        /// The first entry's virtual host.
        first: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_list_of_one() {
        let brokers = BrokerList::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(
            brokers.urls().collect::<Vec<_>>(),
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
    }

    #[test]
    fn commas_separate_urls_and_blanks_around_them_are_ignored() {
        let brokers =
            BrokerList::parse(" amqp://h1:5692 ,amqps://h2:5693/%2f,\tamqp://h3 ").unwrap();
        assert_eq!(
            brokers.urls().collect::<Vec<_>>(),
            ["amqp://h1:5692", "amqps://h2:5693/%2f", "amqp://h3"]
        );
        assert_eq!(brokers.len(), 3);
        assert!(!brokers.is_empty());
    }

    #[test]
    fn bad_lists_are_named_by_position() {
        for (list, expected) in [
            ("", BrokerListError::Empty),
            ("  ", BrokerListError::Empty),
            (
                "amqp://a,,amqp://b",
                BrokerListError::EmptyEntry { position: 2 },
            ),
            ("amqp://a,", BrokerListError::EmptyEntry { position: 2 }),
            (",amqp://a", BrokerListError::EmptyEntry { position: 1 }),
            (
                "amqp://a,http://b",
                BrokerListError::Scheme {
                    position: 2,
                    url: "http://b".into(),
                },
            ),
            (
                "amqp://a,amqp://b,amqp://a",
                BrokerListError::Duplicate {
                    position: 3,
                    first: 1,
                    url: "amqp://a".into(),
                },
            ),
        ] {
            assert_eq!(BrokerList::parse(list), Err(expected), "{list:?}");
        }
    }

    #[test]
    fn no_error_and_no_debug_shows_a_password() {
        for list in [
            "amqp://u:s3cret@h1,http://u:s3cret@h2",
            "amqp://u:s3cret@h1,amqp://u:s3cret@h1",
            "u:s3cret@h1",
        ] {
            let error = BrokerList::parse(list).unwrap_err();
            assert!(!error.to_string().contains("s3cret"), "{error}");
            assert!(!format!("{error:?}").contains("s3cret"), "{error:?}");
        }
        let brokers = BrokerList::parse("amqp://u:s3cret@h1,amqp://u:s3cret@h2").unwrap();
        assert!(!format!("{brokers:?}").contains("s3cret"));
        assert_eq!(brokers.redacted(), "amqp://u:***@h1,amqp://u:***@h2");
    }
}
