//! [`TransportConfig`]: the `[transport]` section of the kernel's configuration.

use std::fmt;

use kernel_errors::InvalidConfig;
use serde::{Deserialize, Serialize};

/// Which broker, as configuration: the `[transport]` section of `kernel.toml`
/// (`KERNEL_AMQP_URL`, or `KERNEL_TRANSPORT__AMQP_URL`, in the environment).
///
/// ```toml
/// [transport]
/// amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # or amqps:// for TLS; unset: in process
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
    /// The RabbitMQ to use (`amqp://`, or `amqps://` for TLS); unset: the in-process broker
    /// (everything in this process). Holds the password: print it with [`redact_url`].
    pub amqp_url: Option<String>,
}

impl TransportConfig {
    /// Checks the URL's scheme.
    ///
    /// # Errors
    /// [`InvalidConfig`] for `amqp_url` if it is neither `amqp://` nor `amqps://` (its
    /// password shown as `***`).
    pub fn check(&self) -> Result<(), InvalidConfig> {
        match &self.amqp_url {
            Some(url) if !(url.starts_with("amqp://") || url.starts_with("amqps://")) => Err(
                InvalidConfig::new("amqp_url", redact_url(url), "an amqp:// or amqps:// URL"),
            ),
            _ => Ok(()),
        }
    }

    /// The same configuration with the password hidden, to show (`loadedconfig`, logs).
    pub fn redacted(&self) -> TransportConfig {
        TransportConfig {
            amqp_url: self.amqp_url.as_deref().map(redact_url),
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
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
        ] {
            let config = TransportConfig {
                amqp_url: Some(url.to_owned()),
            };
            let invalid = config.check().unwrap_err();
            assert_eq!(invalid.key, "amqp_url");
            assert!(!invalid.to_string().contains("s3cret"), "{invalid}");
            assert!(invalid.value.contains("***"), "{invalid}");
        }
    }
}
