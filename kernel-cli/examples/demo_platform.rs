//! A platform to try the `kernel` tool on: a login service `com.example.login` (in memory,
//! with the ADMIN user `ada`, password from `DEMO_PASSWORD`), a greeter
//! `com.example.greeter` that publishes a `kernel.examples.v1.Greeted` on
//! `com.example.greeter.greeted` after each greeting, and an auditor `com.example.audit`
//! whose endpoint `record` subscribes to `com.example.greeter.#` and takes a `Greeted` (its
//! announcement is how `kernel watch` knows the type), on the RabbitMQ of `KERNEL_AMQP_URL`,
//! until Ctrl-C.
//!
//! ```text
//! DEMO_PASSWORD=... cargo run -p kernel-cli --example demo_platform
//! ```
#![allow(clippy::print_stdout)] // an example says what it started

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use kernel_auth::{Auth, TokenSigner};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_login::{LoginService, MemoryCredentialStore};
use kernel_proto::examples::{Greeted, HelloRequest, HelloResponse};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::{AmqpTransport, Transport};

/// Where the greeter publishes a `Greeted` after each greeting.
const GREETED: &str = "com.example.greeter.greeted";

/// What `hello` needs: a client to publish with, and the greetings given so far.
#[derive(Clone)]
struct Greeter {
    client: Client,
    count: Arc<AtomicI64>,
}

async fn hello(greeter: Greeter, request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    let name = &request.message().name;
    if name.is_empty() {
        return Err(Error::bad_request(
            "com.example.greeter.noname",
            "say who to greet",
        ));
    }
    let count = greeter.count.fetch_add(1, Ordering::Relaxed) + 1;
    let greeted = Greeted {
        name: name.clone(),
        count,
    };
    // A greeting does not fail because its announcement could not be published.
    let _ = greeter.client.publish(GREETED, &greeted).await;
    Ok(HelloResponse {
        greeting: format!("Hello, {name}!"),
        served_by: String::new(),
    })
}

/// `record`: what the auditor does with each greeting it hears of (a real one would store it).
async fn record(request: Request<Greeted>) -> Result<Greeted, Error> {
    let greeted = request.message();
    println!("audit: {} greeted ({} so far)", greeted.name, greeted.count);
    Ok(Greeted::default())
}

async fn client(url: &str, name: &str) -> Result<Client, Error> {
    let transport = AmqpTransport::connect(url).await?;
    Ok(Client::builder(Arc::new(transport) as Arc<dyn Transport>)
        .calling_as(name)
        .build()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("KERNEL_AMQP_URL")?;
    let password = std::env::var("DEMO_PASSWORD")?;
    let login = LoginService::builder(MemoryCredentialStore::new(), TokenSigner::generate("demo")?)
        .name("com.example.login")
        .build()?;
    login.create_user("ada", &password, ["ADMIN"]).await?;
    let login_client = client(&url, "com.example.login").await?;
    let login = login.service(&login_client).build()?;

    let greeter_client = client(&url, "com.example.greeter").await?;
    let auth = Auth::builder(&greeter_client)
        .login_service("com.example.login")
        .build();
    let greeter_state = Greeter {
        client: greeter_client.clone(),
        count: Arc::new(AtomicI64::new(0)),
    };
    let greeter = Service::builder("com.example.greeter", &greeter_client)
        .version("1.0.0")
        .auth(auth)
        .endpoint(
            Endpoint::with_state("hello", greeter_state, hello)
                .open()
                .mean_time(Duration::from_millis(20))
                .upper95(Duration::from_millis(50)),
        )
        .build()?;
    let audit_client = client(&url, "com.example.audit").await?;
    let audit = Service::builder("com.example.audit", &audit_client)
        .version("1.0.0")
        .endpoint(
            Endpoint::new("record", record)
                .open()
                .subscribe("com.example.greeter.#"),
        )
        .build()?;
    println!(
        "serving com.example.login, com.example.greeter and com.example.audit; Ctrl-C to stop"
    );
    let stop = || async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let (a, b, c) = tokio::join!(
        login.serve_with_shutdown(stop()),
        greeter.serve_with_shutdown(stop()),
        audit.serve_with_shutdown(stop())
    );
    a?;
    b?;
    c?;
    Ok(())
}
