//! [`Config`]: what `from_env` reads, from `kernel.toml` and `KERNEL_*` variables.

use std::fmt;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use kernel_errors::Error;
use serde::Deserialize;

/// The code of a configuration that cannot be used.
pub const INVALID_CONFIG: &str = "kernel.config.invalid";

/// The settings `Client::from_env` and `Service::from_env` start from.
///
/// Read in layers, later ones winning: the defaults, the file named by `KERNEL_CONFIG`
/// (default `kernel.toml` in the working directory, optional), then environment variables
/// `KERNEL_<FIELD>` (e.g. `KERNEL_AMQP_URL`).
///
/// ```toml
/// # kernel.toml
/// amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # or amqps:// for TLS
/// statsd_addr = "127.0.0.1:8125"
/// ```
///
/// `Debug` (and every configuration error) shows the AMQP URL with its password replaced by
/// `***`, so a configuration can be logged whole:
///
/// ```
/// use figment::{Figment, providers::Serialized};
///
/// let config = kernel::Config::from_figment(Figment::new().merge(Serialized::default(
///     "amqp_url",
///     "amqps://billing:s3cret@rabbit.internal:5671/%2f",
/// )))?;
/// let printed = format!("{config:?}");
/// assert!(printed.contains("amqps://billing:***@rabbit.internal:5671/%2f"));
/// assert!(!printed.contains("s3cret"));
/// # Ok::<(), kernel_errors::Error>(())
/// ```
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The RabbitMQ to use (`amqp://`, or `amqps://` for TLS); unset means the in-process
    /// broker (everything in this process). Holds the password: print it with
    /// [`redact_url`], never as is.
    pub amqp_url: Option<String>,
    /// Where to send statsd metrics (`host:port`); unset means no statsd.
    pub statsd_addr: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field("statsd_addr", &self.statsd_addr)
            .finish()
    }
}

/// `url` with the password of its user information replaced by `***`
/// (`amqp://user:***@host:5672/%2f`), for logs and error messages. A URL without a password
/// is returned as is. When in doubt it hides more: everything between the first `:` after
/// the scheme and the last `@`.
///
/// ```
/// assert_eq!(
///     kernel::redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
///     "amqp://guest:***@127.0.0.1:5672/%2f"
/// );
/// assert_eq!(kernel::redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
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

impl Config {
    /// Reads the layers described on [`Config`].
    ///
    /// # Errors
    /// `InternalServerError` with code [`INVALID_CONFIG`] if the file does not parse, a value
    /// has the wrong type, or the AMQP URL is neither `amqp://` nor `amqps://` (the message
    /// shows the URL with its password as `***`).
    pub fn load() -> Result<Self, Error> {
        let file = std::env::var("KERNEL_CONFIG").unwrap_or_else(|_| "kernel.toml".to_owned());
        Self::from_figment(
            Figment::new()
                .merge(Toml::file(file))
                .merge(Env::prefixed("KERNEL_")),
        )
    }

    /// Reads and checks a configuration from any figment (for tests and embedders).
    ///
    /// # Errors
    /// As for [`load`](Self::load).
    pub fn from_figment(figment: Figment) -> Result<Self, Error> {
        let config: Config = figment.extract().map_err(|e| {
            Error::internal_server_error(INVALID_CONFIG, format!("bad configuration: {e}"))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Error> {
        if let Some(url) = &self.amqp_url {
            let scheme_ok = url.starts_with("amqp://") || url.starts_with("amqps://");
            if !scheme_ok {
                return Err(Error::internal_server_error(
                    INVALID_CONFIG,
                    format!(
                        "amqp_url must be an amqp:// or amqps:// URL, not {:?}",
                        redact_url(url)
                    ),
                ));
            }
        }
        if let Some(addr) = &self.statsd_addr
            && addr
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
        {
            return Err(Error::internal_server_error(
                INVALID_CONFIG,
                format!("statsd_addr must be host:port, not {addr:?}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::Serialized;

    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let mut figment = Figment::new();
        for (key, value) in pairs {
            figment = figment.merge(Serialized::default(key, value));
        }
        Config::from_figment(figment)
    }

    #[test]
    fn nothing_set_means_in_process_and_no_statsd() {
        assert_eq!(with(&[]).unwrap(), Config::default());
    }

    #[test]
    fn valid_values_are_taken() {
        let config = with(&[
            ("amqp_url", "amqp://u:p@127.0.0.1:5672/%2f"),
            ("statsd_addr", "127.0.0.1:8125"),
        ])
        .unwrap();
        assert_eq!(
            config.amqp_url.as_deref(),
            Some("amqp://u:p@127.0.0.1:5672/%2f")
        );
        assert_eq!(config.statsd_addr.as_deref(), Some("127.0.0.1:8125"));
    }

    #[test]
    fn wrong_values_are_typed_errors() {
        for pairs in [
            [("amqp_url", "http://127.0.0.1:5672")],
            [("amqp_url", "127.0.0.1:5672")],
            [("statsd_addr", "localhost")],
            [("statsd_addr", "localhost:port")],
        ] {
            let error = with(&pairs).unwrap_err();
            assert_eq!(error.code(), INVALID_CONFIG, "{pairs:?}");
        }
    }

    #[test]
    fn amqps_urls_are_accepted() {
        let config = with(&[("amqp_url", "amqps://u:p@rabbit.internal:5671/%2f")]).unwrap();
        assert_eq!(
            config.amqp_url.as_deref(),
            Some("amqps://u:p@rabbit.internal:5671/%2f")
        );
    }

    #[test]
    fn debug_never_shows_the_amqp_password() {
        let config = with(&[
            (
                "amqp_url",
                "amqps://billing:s3cret@rabbit.internal:5671/%2f",
            ),
            ("statsd_addr", "127.0.0.1:8125"),
        ])
        .unwrap();
        let printed = format!("{config:?} {config:#?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("amqps://billing:***@rabbit.internal:5671/%2f"),
            "{printed}"
        );
        assert!(printed.contains("127.0.0.1:8125"), "{printed}");
        assert_eq!(
            format!("{:?}", Config::default()),
            "Config { amqp_url: None, statsd_addr: None }"
        );
    }

    #[test]
    fn an_invalid_amqp_url_error_hides_the_password() {
        for url in [
            "http://billing:s3cret@rabbit.internal:5672/%2f",
            "billing:s3cret@rabbit.internal:5672",
            "amqp:/billing:s3cret@rabbit.internal",
        ] {
            let error = with(&[("amqp_url", url)]).unwrap_err();
            assert_eq!(error.code(), INVALID_CONFIG, "{url}");
            let printed = format!("{error} {error:?}");
            assert!(!printed.contains("s3cret"), "{printed}");
            assert!(printed.contains("***"), "{printed}");
        }
    }

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
}
