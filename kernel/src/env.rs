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
    /// A client on RabbitMQ if `KERNEL_AMQP_URL` (or `amqp_url` in `kernel.toml`) is set, else
    /// on a new in-process broker; metrics to statsd if `KERNEL_STATSD_ADDR` is set.
    ///
    /// # Errors
    /// [`INVALID_CONFIG`](crate::INVALID_CONFIG) for a configuration that cannot be used;
    /// `ConnectionLost` if the broker cannot be reached.
    fn from_env() -> impl Future<Output = Result<Self, Error>> + Send;
}

/// `Service::from_env(name)`: a service builder on the transport the environment names.
pub trait ServiceFromEnv {
    /// A builder for the service `name`, with its client (calling as `name`) on the transport
    /// [`ClientFromEnv::from_env`] would choose, and statsd metrics under `name` if configured.
    /// Add endpoints, then `build()`.
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
        connect(&config, "client").await
    }
}

impl ServiceFromEnv for Service {
    async fn from_env(name: impl Into<String> + Send) -> Result<ServiceBuilder, Error> {
        let name = name.into();
        let config = Config::load()?;
        let client = connect(&config, &name).await?;
        Ok(Service::builder(name, &client))
    }
}

/// A client on the configured transport, recording under `namespace`.
async fn connect(config: &Config, namespace: &str) -> Result<Client, Error> {
    let transport = transport(config).await?;
    let instrumenter = instrumenter(config, namespace)?;
    Ok(Client::builder(transport)
        .instrumenter(instrumenter)
        .build()?)
}

async fn transport(config: &Config) -> Result<Arc<dyn Transport>, Error> {
    match &config.amqp_url {
        #[cfg(feature = "amqp")]
        Some(url) => {
            tracing::info!("connecting to RabbitMQ");
            Ok(Arc::new(
                kernel_transport::AmqpTransport::connect(url).await?,
            ))
        }
        #[cfg(not(feature = "amqp"))]
        Some(_) => Err(Error::internal_server_error(
            crate::INVALID_CONFIG,
            "amqp_url is set but the `amqp` feature of the kernel crate is off",
        )),
        None => {
            tracing::info!("no KERNEL_AMQP_URL: using the in-process broker");
            Ok(Arc::new(InProcessTransport::new()))
        }
    }
}

fn instrumenter(config: &Config, namespace: &str) -> Result<Arc<dyn Instrumenter>, Error> {
    match &config.statsd_addr {
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
                "statsd_addr is set but the `statsd` feature of the kernel crate is off",
            ))
        }
        None => Ok(Arc::new(NoopInstrumenter)),
    }
}
