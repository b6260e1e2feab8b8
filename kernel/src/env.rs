//! `Client::from_env` and `Service::from_env`: the defaults wired from [`Config`].

use std::future::Future;
use std::sync::Arc;

use kernel_client::Client;
use kernel_errors::Error;
use kernel_inst::{Instrumenter, NoopInstrumenter};
use kernel_server::{Service, ServiceBuilder};
use kernel_transport::{InProcessTransport, Transport};

use crate::Config;

/// `Client::from_env()`: a client on the transport the environment names.
pub trait ClientFromEnv: Sized {
    /// A client configured by [`Config::load`]: on RabbitMQ if `transport.amqp_url` (or
    /// `KERNEL_AMQP_URL`) is set, else on a new in-process broker; with the `[client]`
    /// settings; metrics to statsd if `metrics.statsd_addr` is set. Its breaker options
    /// reload when the configuration file changes.
    ///
    /// # Errors
    /// [`INVALID_CONFIG`](crate::INVALID_CONFIG) for a configuration that cannot be used;
    /// `ConnectionLost` if the broker cannot be reached.
    fn from_env() -> impl Future<Output = Result<Self, Error>> + Send;
}

/// `Service::from_env(name)`: a service builder on the transport the environment names.
pub trait ServiceFromEnv {
    /// A builder for the service `name`, with its client (calling as `name`) as
    /// [`ClientFromEnv::from_env`] makes it, statsd metrics under `name` if configured, the
    /// `[server]` settings, and the whole configuration (secrets redacted) for
    /// `loadedconfig`. Add endpoints, then `build()`.
    ///
    /// # Errors
    /// As for [`ClientFromEnv::from_env`].
    fn from_env(
        name: impl Into<String> + Send,
    ) -> impl Future<Output = Result<ServiceBuilder, Error>> + Send;
}

impl ClientFromEnv for Client {
    async fn from_env() -> Result<Self, Error> {
        let config = Config::load()?;
        let client = connect(&config, "client", None).await?;
        crate::reload::watch(client.downgrade(), None);
        Ok(client)
    }
}

impl ServiceFromEnv for Service {
    async fn from_env(name: impl Into<String> + Send) -> Result<ServiceBuilder, Error> {
        let name = name.into();
        let config = Config::load()?;
        let prometheus = prometheus(&config)?;
        let client = connect(&config, &name, prometheus.as_ref()).await?;
        let shown = serde_json::to_value(config.redacted()).map_err(|error| {
            Error::internal_server_error(crate::INVALID_CONFIG, error.to_string())
        })?;
        let auth = config
            .auth
            .build(&client.calling_as(name.clone()))
            .map_err(Error::from)?;
        crate::reload::watch(client.downgrade(), Some(auth.clone()));
        let mut builder = Service::builder(name, &client)
            .config(&config.server)
            .auth(auth);
        if let serde_json::Value::Object(sections) = shown {
            for (section, value) in sections {
                builder = builder.loaded_config(section, value);
            }
        }
        #[cfg(feature = "prometheus")]
        if let (Some(listen), Some(metrics)) = (config.metrics.prometheus_listen, prometheus) {
            builder = builder.prometheus(listen, metrics);
        }
        Ok(builder)
    }
}

/// A client on the configured transport, recording under `namespace`.
async fn connect(
    config: &Config,
    namespace: &str,
    prometheus: Option<&Prometheus>,
) -> Result<Client, Error> {
    let transport = transport(config).await?;
    let instrumenter = instrumenter(config, namespace)?;
    #[cfg(feature = "prometheus")]
    let instrumenter: Arc<dyn Instrumenter> = match prometheus {
        Some(metrics) => Arc::new((instrumenter, metrics.clone())),
        None => instrumenter,
    };
    #[cfg(not(feature = "prometheus"))]
    let _: Option<&Prometheus> = prometheus;
    Ok(Client::builder(transport)
        .config(&config.client)
        .instrumenter(instrumenter)
        .build()?)
}

async fn transport(config: &Config) -> Result<Arc<dyn Transport>, Error> {
    match &config.transport.amqp_url {
        #[cfg(feature = "amqp")]
        Some(url) => {
            tracing::info!(
                url = %config.transport.redacted().amqp_url.unwrap_or_default(),
                work_queues = ?config.transport.work_queues,
                "connecting to RabbitMQ"
            );
            Ok(Arc::new(
                kernel_transport::AmqpTransport::builder(url)
                    .work_queues(config.transport.work_queues)
                    .connect()
                    .await?,
            ))
        }
        #[cfg(not(feature = "amqp"))]
        Some(_) => Err(Error::internal_server_error(
            crate::INVALID_CONFIG,
            "transport.amqp_url is set but the `amqp` feature of the kernel crate is off",
        )),
        None => {
            tracing::info!("no KERNEL_AMQP_URL: using the in-process broker");
            Ok(Arc::new(InProcessTransport::new()))
        }
    }
}

fn instrumenter(config: &Config, namespace: &str) -> Result<Arc<dyn Instrumenter>, Error> {
    match &config.metrics.statsd_addr {
        #[cfg(feature = "statsd")]
        Some(addr) => {
            let statsd = kernel_inst::StatsdInstrumenter::builder(namespace)
                .build(addr.as_str())
                .map_err(|e| Error::internal_server_error(crate::INVALID_CONFIG, e.to_string()))?;
            Ok(Arc::new(statsd))
        }
        #[cfg(not(feature = "statsd"))]
        Some(_) => {
            let _ = namespace;
            Err(Error::internal_server_error(
                crate::INVALID_CONFIG,
                "metrics.statsd_addr is set but the `statsd` feature of the kernel crate is off",
            ))
        }
        None => Ok(Arc::new(NoopInstrumenter)),
    }
}

#[cfg(feature = "prometheus")]
type Prometheus = kernel_inst::PrometheusInstrumenter;
#[cfg(not(feature = "prometheus"))]
type Prometheus = std::convert::Infallible;

/// The Prometheus instrumenter, if `[metrics] prometheus_listen` is set.
fn prometheus(config: &Config) -> Result<Option<Prometheus>, Error> {
    match config.metrics.prometheus_listen {
        None => Ok(None),
        #[cfg(feature = "prometheus")]
        Some(_) => Ok(Some(kernel_inst::PrometheusInstrumenter::new())),
        #[cfg(not(feature = "prometheus"))]
        Some(_) => Err(Error::internal_server_error(
            crate::INVALID_CONFIG,
            "metrics.prometheus_listen is set but the `prometheus` feature of the kernel crate is off",
        )),
    }
}
