//! [`ConnectOptions`] and [`Limits`]: where to connect and what to accept.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::Error;
use crate::types::DEFAULT_MAX_TABLE_DEPTH;

/// The default limit on a received message body: 16 MiB.
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;

/// Limits on what this client accepts from the broker. A message over a limit is delivered as
/// malformed (its [`Delivery::properties`](crate::Delivery::properties) is an error) so that
/// its consumer can refuse it; it never closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    max_body: u64,
    max_table_depth: usize,
    max_header: usize,
}

/// The default limit on a received content header (properties and headers): 1 MiB.
pub const DEFAULT_MAX_HEADER: usize = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: DEFAULT_MAX_BODY,
            max_table_depth: DEFAULT_MAX_TABLE_DEPTH,
            max_header: DEFAULT_MAX_HEADER,
        }
    }
}

impl Limits {
    /// The largest body accepted, in bytes (default [`DEFAULT_MAX_BODY`]). A larger one is
    /// read and thrown away as it arrives, so it never sits in memory.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// How deeply field tables and arrays may nest (default 8).
    pub fn max_table_depth(mut self, depth: usize) -> Self {
        self.max_table_depth = depth.max(1);
        self
    }

    /// The largest content header (properties and headers) accepted, in bytes (default
    /// [`DEFAULT_MAX_HEADER`]). RabbitMQ sends a header as one frame whatever its size, so one
    /// may exceed the negotiated frame size; a larger one is skipped as it arrives and its
    /// message delivered as unreadable.
    pub fn max_header(mut self, bytes: usize) -> Self {
        self.max_header = bytes;
        self
    }

    /// The header limit.
    pub fn header(&self) -> usize {
        self.max_header
    }

    /// The body limit.
    pub fn body(&self) -> u64 {
        self.max_body
    }

    /// The nesting limit.
    pub fn table_depth(&self) -> usize {
        self.max_table_depth
    }
}

/// Where and how to connect: parsed from an `amqp://` or `amqps://` URL.
///
/// The URL follows RabbitMQ's URI spec: `amqp://user:password@host:port/vhost`, with the
/// query parameters `heartbeat` (seconds), `frame_max` (bytes), `channel_max`,
/// `connection_timeout` (milliseconds) and, for `amqps`, `cacertfile` (a PEM file of the
/// certificate authorities to trust instead of the bundled web roots). Any other parameter is
/// an error, so that a typo does not go unnoticed.
///
/// `Debug` never shows the password.
///
/// ```
/// use kernel_amqp::ConnectOptions;
///
/// let options = ConnectOptions::from_url("amqp://app:s3cret@127.0.0.1:5682/%2f?heartbeat=10")?;
/// assert!(!format!("{options:?}").contains("s3cret"));
/// assert!(ConnectOptions::from_url("amqp://127.0.0.1/?hearbeat=10").is_err());
/// # Ok::<(), kernel_amqp::Error>(())
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) vhost: String,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) tls: bool,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) heartbeat: u16,
    pub(crate) frame_max: u32,
    pub(crate) channel_max: u16,
    pub(crate) connect_timeout: Duration,
    pub(crate) connection_name: Option<String>,
    pub(crate) limits: Limits,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("vhost", &self.vhost)
            .field("user", &self.user)
            .field("password", &"***")
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("heartbeat", &self.heartbeat)
            .field("frame_max", &self.frame_max)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Parses an `amqp://` or `amqps://` URL.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] (without the password in its text) for another scheme, a missing
    /// host, an unknown query parameter or a value that is not a number, or `amqps` when the
    /// `tls` feature is off.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let parsed = url::Url::parse(url).map_err(|e| Error::InvalidUrl(e.to_string()))?;
        let tls = match parsed.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => {
                return Err(Error::InvalidUrl(format!(
                    "the scheme must be amqp or amqps, not {other:?}"
                )));
            }
        };
        if tls && !cfg!(feature = "tls") {
            return Err(Error::InvalidUrl(
                "amqps:// needs kernel-amqp's `tls` feature".into(),
            ));
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::InvalidUrl("no host".into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let vhost = match parsed.path() {
            "" | "/" => "/".to_owned(),
            path => decode(&path[1..]),
        };
        let user = match parsed.username() {
            "" => "guest".to_owned(),
            user => decode(user),
        };
        let password = parsed.password().map_or_else(|| "guest".to_owned(), decode);
        let mut options = ConnectOptions {
            port: parsed.port().unwrap_or(if tls { 5671 } else { 5672 }),
            host,
            vhost,
            user,
            password,
            tls,
            ca_file: None,
            heartbeat: 30,
            frame_max: 131_072,
            channel_max: 2047,
            connect_timeout: Duration::from_secs(10),
            connection_name: None,
            limits: Limits::default(),
        };
        for (name, value) in parsed.query_pairs() {
            let number = |what: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| Error::InvalidUrl(format!("{what} must be a number")))
            };
            let narrow = |n: u64, what: &str| {
                u32::try_from(n).map_err(|_| Error::InvalidUrl(format!("{what} is too large")))
            };
            match &*name {
                "heartbeat" => {
                    options.heartbeat = u16::try_from(number("heartbeat")?)
                        .map_err(|_| Error::InvalidUrl("heartbeat is too large".into()))?;
                }
                "frame_max" => {
                    options.frame_max = narrow(number("frame_max")?, "frame_max")?.max(4096);
                }
                "channel_max" => {
                    options.channel_max = u16::try_from(number("channel_max")?)
                        .map_err(|_| Error::InvalidUrl("channel_max is too large".into()))?;
                }
                "connection_timeout" => {
                    options.connect_timeout = Duration::from_millis(number("connection_timeout")?);
                }
                "cacertfile" if tls => options.ca_file = Some(PathBuf::from(&*value)),
                other => {
                    return Err(Error::InvalidUrl(format!(
                        "unknown query parameter {other:?}"
                    )));
                }
            }
        }
        Ok(options)
    }

    /// The name the connection shows in the broker's management UI.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// The limits on received messages.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Trusts the certificate authorities in this PEM file for `amqps` (instead of the
    /// bundled web roots).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The negotiated frame size is at most this (default 128 KiB; at least 4096).
    pub fn frame_max(mut self, bytes: u32) -> Self {
        self.frame_max = bytes.max(4096);
        self
    }

    /// The user the connection logs in as: the URL's, percent-decoded, or `guest` when the
    /// URL names none (AMQP's default). RabbitMQ refuses a message whose `user_id` property
    /// is set to anything else (unless the user is tagged `impersonator`).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The virtual host the connection opens: the URL's path, percent-decoded, or `/`.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_host_port_vhost_and_credentials() {
        let options =
            ConnectOptions::from_url("amqp://a%40b:p%2Fw@127.0.0.1:5682/my%2fvhost?frame_max=8192")
                .expect("valid");
        assert_eq!(options.address(), "127.0.0.1:5682");
        assert_eq!(options.vhost, "my/vhost");
        assert_eq!(options.user(), "a@b");
        assert_eq!(options.password, "p/w");
        assert_eq!(options.frame_max, 8192);
        let default = ConnectOptions::from_url("amqp://localhost").expect("valid");
        assert_eq!((default.port, default.vhost.as_str()), (5672, "/"));
        assert_eq!(default.user(), "guest");
    }

    #[test]
    fn bad_urls_are_typed_errors_without_the_password() {
        for url in [
            "http://u:hunter2@h/",
            "amqp://u:hunter2@h/?heartbeat=soon",
            "amqp://u:hunter2@h/?nope=1",
            "amqp://u:hunter2@h/?heartbeat=70000",
            "amqp:///",
        ] {
            match ConnectOptions::from_url(url) {
                Err(Error::InvalidUrl(text)) => assert!(!text.contains("hunter2"), "{text}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
