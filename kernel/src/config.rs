//! [`Config`]: what `from_env` reads, from `kernel.toml` and `KERNEL_*` variables.

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
/// amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"
/// statsd_addr = "127.0.0.1:8125"
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The RabbitMQ to use; unset means the in-process broker (everything in this process).
    pub amqp_url: Option<String>,
    /// Where to send statsd metrics (`host:port`); unset means no statsd.
    pub statsd_addr: Option<String>,
}

impl Config {
    /// Reads the layers described on [`Config`].
    ///
    /// # Errors
    /// `InternalServerError` with code [`INVALID_CONFIG`] if the file does not parse, a value
    /// has the wrong type, or the AMQP URL is not one.
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
            let scheme_ok = url.starts_with("amqp://");
            if !scheme_ok {
                return Err(Error::internal_server_error(
                    INVALID_CONFIG,
                    format!("amqp_url must be an amqp:// URL (TLS is not built in), not {url:?}"),
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
            [("amqp_url", "amqps://127.0.0.1:5671")],
            [("statsd_addr", "localhost")],
            [("statsd_addr", "localhost:port")],
        ] {
            let error = with(&pairs).unwrap_err();
            assert_eq!(error.code(), INVALID_CONFIG, "{pairs:?}");
        }
    }
}
