//! [`Config`]: the kernel's configuration, one typed section per crate, read in layers.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use kernel_client::ClientConfig;
use kernel_errors::{Error, INVALID_CONFIG, InvalidConfig};
use kernel_inst::MetricsConfig;
use kernel_server::ServerConfig;
use kernel_sync::SyncConfig;
use kernel_transport::TransportConfig;
use serde::{Deserialize, Serialize};

/// The file read when `KERNEL_CONFIG` does not name another.
pub const DEFAULT_CONFIG_FILE: &str = "kernel.toml";

/// Everything the kernel can be configured with: one section per crate, each with documented
/// defaults (see the section types, and [`docs/operations.md`](https://github.com/kernel-platform/kernel/blob/main/docs/operations.md) for every key).
///
/// Read in layers, later ones winning:
/// 1. the defaults;
/// 2. the TOML file named by `KERNEL_CONFIG` (default `kernel.toml` in the working directory;
///    optional);
/// 3. environment variables: `KERNEL_<SECTION>__<KEY>` (e.g. `KERNEL_SERVER__CAPACITY=50`,
///    `KERNEL_CLIENT__BREAKER__THRESHOLD=0.5`), plus the short forms `KERNEL_AMQP_URL`,
///    `KERNEL_STATSD_ADDR`, `KERNEL_ZK_HOSTS`, `KERNEL_CASSANDRA_HOSTS` and
///    `KERNEL_CASSANDRA_REPLICATION` (`sync.cassandra_replication_factor`);
/// 4. code: change the loaded value, or merge more into [`Config::figment`] and read it with
///    [`Config::from_figment`]; builder methods called after `from_env` win over all of it.
///
/// ```toml
/// # kernel.toml
/// [transport]
/// amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"
///
/// [server]
/// capacity = 50
///
/// [client.breaker]
/// threshold = 0.9
///
/// [metrics]
/// statsd_addr = "127.0.0.1:8125"
/// ```
///
/// A value of the wrong type or out of range is an error naming its key and value (code
/// `kernel.config.invalid`); an unknown key inside a section is an error too (a typo is not
/// silently ignored). `Debug` and [`redacted`](Self::redacted) show the AMQP URL with its
/// password as `***`.
///
/// ```
/// use figment::providers::Serialized;
///
/// let figment = kernel::Config::figment().merge(Serialized::default("server.capacity", 0));
/// let error = kernel::Config::from_figment(figment).unwrap_err();
/// assert_eq!(error.code(), "kernel.config.invalid");
/// assert!(error.description().contains("server.capacity = 0"), "{error}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    /// `[transport]`: the broker.
    pub transport: TransportConfig,
    /// `[client]`: deadlines, attempts, breakers, the retry budget, attempt timeouts.
    pub client: ClientConfig,
    /// `[server]`: capacity, shutdown, monitoring intervals, the access log.
    pub server: ServerConfig,
    /// `[sync]`: ZooKeeper and Cassandra.
    pub sync: SyncConfig,
    /// `[metrics]`: statsd and Prometheus.
    pub metrics: MetricsConfig,
    /// `[auth]`: the login service, public keys, service-to-service rules.
    pub auth: kernel_auth::AuthConfig,
    /// `[log]`: log format and filter, span export (used by [`telemetry::init`](crate::telemetry::init)).
    pub log: crate::telemetry::LogConfig,
}

impl Config {
    /// Reads the layers described on [`Config`].
    ///
    /// # Errors
    /// `InternalServerError` with code [`INVALID_CONFIG`] if the file does not parse, or a
    /// value has the wrong type or is out of range: the message names the key, the value and
    /// where it came from.
    pub fn load() -> Result<Self, Error> {
        Self::from_figment(Self::figment())
    }

    /// The file the configuration is read from: `KERNEL_CONFIG`, else `kernel.toml`.
    pub fn file() -> PathBuf {
        std::env::var_os("KERNEL_CONFIG").map_or_else(|| DEFAULT_CONFIG_FILE.into(), PathBuf::from)
    }

    /// The defaults, the file and the environment, to merge more layers onto.
    pub fn figment() -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(Self::file()))
            .merge(environment())
    }

    /// Reads and checks a configuration from any figment (for tests and embedders).
    ///
    /// # Errors
    /// As for [`load`](Self::load).
    pub fn from_figment(figment: Figment) -> Result<Self, Error> {
        let config: Config = figment.extract().map_err(|error| {
            Error::internal_server_error(INVALID_CONFIG, format!("bad configuration: {error}"))
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks every section.
    ///
    /// # Errors
    /// [`InvalidConfig`] (as an [`Error`]) naming the first key out of range.
    pub fn check(&self) -> Result<(), Error> {
        self.transport.check().map_err(|e| e.within("transport"))?;
        self.client.check().map_err(|e| e.within("client"))?;
        self.server.check().map_err(|e| e.within("server"))?;
        self.sync.check().map_err(|e| e.within("sync"))?;
        self.auth.check().map_err(|e| e.within("auth"))?;
        if let Some(addr) = &self.metrics.statsd_addr
            && addr
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
        {
            return Err(InvalidConfig::new("metrics.statsd_addr", addr, "host:port").into());
        }
        Ok(())
    }

    /// The same configuration with every secret hidden: what `loadedconfig` shows.
    pub fn redacted(&self) -> Config {
        Config {
            transport: self.transport.redacted(),
            ..self.clone()
        }
    }
}

/// `KERNEL_*` variables: `__` separates sections and keys; the short forms name the keys
/// most deployments set. `KERNEL_CONFIG` names the file and is not a key.
fn environment() -> Env {
    Env::prefixed("KERNEL_").ignore(&["config"]).map(|key| {
        let key = key.as_str().to_ascii_lowercase();
        match key.as_str() {
            "amqp_url" => "transport.amqp_url".into(),
            "statsd_addr" => "metrics.statsd_addr".into(),
            "zk_hosts" => "sync.zookeeper_hosts".into(),
            "cassandra_hosts" => "sync.cassandra_hosts".into(),
            "cassandra_replication" => "sync.cassandra_replication_factor".into(),
            other => other.replace("__", ".").into(),
        }
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its (large) error type
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        for (key, value) in pairs {
            figment = figment.merge(Serialized::default(key, value));
        }
        Config::from_figment(figment)
    }

    #[test]
    fn nothing_set_means_the_defaults() {
        let config = with(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.transport.amqp_url, None);
        assert_eq!(config.server.capacity, kernel_server::DEFAULT_CAPACITY);
    }

    #[test]
    fn the_file_then_the_environment_then_code_win() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "kernel.toml",
                r#"
                [server]
                capacity = 50
                shutdown_timeout_ms = 1000
                [client.breaker]
                threshold = 0.5
                "#,
            )?;
            jail.set_env("KERNEL_SERVER__CAPACITY", "70");
            jail.set_env("KERNEL_AMQP_URL", "amqp://u:p@127.0.0.1:5672/%2f");
            jail.set_env("KERNEL_ZK_HOSTS", "127.0.0.1:2181");
            jail.set_env("KERNEL_CASSANDRA_REPLICATION", "5");
            jail.set_env("KERNEL_UNRELATED_THING", "ignored");
            let config = Config::load().map_err(|e| e.to_string())?;
            assert_eq!(
                config.server.capacity, 70,
                "the environment wins over the file"
            );
            assert_eq!(
                config.server.shutdown_timeout_ms, 1000,
                "the file wins over defaults"
            );
            assert_eq!(config.client.breaker.threshold, 0.5);
            assert_eq!(
                config.transport.amqp_url.as_deref(),
                Some("amqp://u:p@127.0.0.1:5672/%2f")
            );
            assert_eq!(
                config.sync.zookeeper_hosts.as_deref(),
                Some("127.0.0.1:2181")
            );
            assert_eq!(config.sync.cassandra_replication_factor, 5);

            let code = Config::figment().merge(Serialized::default("server.capacity", 90));
            let config = Config::from_figment(code).map_err(|e| e.to_string())?;
            assert_eq!(config.server.capacity, 90, "code wins over the environment");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key_and_value() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KERNEL_SERVER__CAPACITY", "lots");
            let error = Config::load().unwrap_err();
            assert_eq!(error.code(), INVALID_CONFIG);
            let text = error.to_string();
            assert!(text.contains("lots"), "{text}");
            assert!(text.to_lowercase().contains("server.capacity"), "{text}");
            assert!(text.contains("KERNEL_"), "says where it came from: {text}");
            Ok(())
        });
        for (key, value, named) in [
            (
                "client.breaker.threshold",
                "1.5",
                "client.breaker.threshold = 1.5",
            ),
            (
                "client.retry_budget.ratio",
                "-1",
                "client.retry_budget.ratio = -1",
            ),
            ("client.deadline_ms", "0", "client.deadline_ms = 0"),
            (
                "server.stats_interval_ms",
                "0",
                "server.stats_interval_ms = 0",
            ),
            (
                "sync.cassandra_hosts",
                "nohost",
                "sync.cassandra_hosts = nohost",
            ),
            (
                "metrics.statsd_addr",
                "localhost",
                "metrics.statsd_addr = localhost",
            ),
            (
                "transport.amqp_url",
                "http://u:s3cret@h",
                "transport.amqp_url = http://u:***@h",
            ),
        ] {
            let mut figment = Figment::from(Serialized::defaults(Config::default()));
            figment = match (value.parse::<u64>(), value.parse::<f64>()) {
                (Ok(integer), _) => figment.merge(Serialized::default(key, integer)),
                (_, Ok(number)) => figment.merge(Serialized::default(key, number)),
                _ => figment.merge(Serialized::default(key, value)),
            };
            let error = Config::from_figment(figment).unwrap_err();
            assert_eq!(error.code(), INVALID_CONFIG, "{key}");
            assert!(error.description().contains(named), "{key}: {error}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn a_misspelt_key_in_a_section_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("kernel.toml", "[server]\ncapacty = 5\n")?;
            let error = Config::load().unwrap_err();
            assert!(error.to_string().contains("capacty"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn debug_and_redacted_never_show_the_amqp_password() {
        let config = with(&[(
            "transport.amqp_url",
            "amqps://billing:s3cret@rabbit.internal:5671/%2f",
        )])
        .unwrap();
        let printed = format!(
            "{config:?} {config:#?} {}",
            serde_json::to_string(&config.redacted()).unwrap()
        );
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("amqps://billing:***@rabbit.internal:5671/%2f"),
            "{printed}"
        );
    }
}
