//! The greeter as its own process, on RabbitMQ when `KERNEL_AMQP_URL` is set.
//!
//! ```sh
//! set -a; eval "$(cargo xtask services up)"; set +a
//! cargo run --example greeter_server &     # serves until ctrl-c or SIGTERM
//! cargo run --example greeter_client -- Ada Grace
//! ```

use std::sync::Arc;

use kernel::prelude::*;
use kernel::proto::examples::{Greeted, HelloRequest, HelloResponse};

const GREETER: &str = "com.example.greeter";

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Logs as `[log]` says (text or JSON lines; `KERNEL_LOG__FORMAT=json`), until exit.
    let config = kernel::Config::load()?;
    let _telemetry = kernel::telemetry::init(GREETER, &config.log)?;

    let instance: Arc<str> = format!("greeter-{}", std::process::id()).into();
    let service = Service::from_env(GREETER)
        .await?
        .version("1.0.0")
        .description("Greets people by name")
        .endpoint(Endpoint::with_state("hello", instance, hello).open())
        .build()?;
    let publisher = service.client().clone();
    tokio::spawn(announce(publisher));
    service.serve_with_shutdown(kernel::shutdown_signal()).await
}

async fn hello(instance: Arc<str>, request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    let name = &request.message().name;
    if name.is_empty() {
        return Err(Error::bad_request(
            "com.example.greeter.hello.noname",
            "who should I greet?",
        ));
    }
    Ok(HelloResponse {
        greeting: format!("hello, {name}"),
        served_by: instance.to_string(),
    })
}

/// Publishes a `Greeted` every minute, to show publications; nobody has to listen.
async fn announce(client: Client) {
    let mut count = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        count += 1;
        let event = Greeted {
            name: "the world".into(),
            count,
        };
        if let Err(error) = client.publish("com.example.greeter.greeted", &event).await {
            tracing::warn!(%error, "publication failed");
        }
    }
}
