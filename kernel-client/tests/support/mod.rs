//! A dependency to call: one service on an in-process broker whose endpoint answers, stalls
//! or sheds on demand, and counts the requests it gets.
#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use kernel_client::Client;
use kernel_errors::Error;
use kernel_proto::examples::{HelloRequest, HelloResponse};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::{Destination, Envelope, InProcessBroker, Transport};
use tokio::sync::Notify;

/// The endpoint every test calls.
pub const ENDPOINT: &str = "work";

/// How the dependency answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// At once, with a reply.
    Healthy = 0,
    /// With a reply an hour later: every attempt times out.
    Stalled = 1,
    /// At once, with an `Overloaded` error reply (which clients retry).
    Overloaded = 2,
}

/// The dependency's state, shared with its handler.
#[derive(Debug, Default)]
pub struct Dependency {
    mode: AtomicU8,
    requests: AtomicUsize,
    /// Notified on each request the handler gets.
    pub arrived: Notify,
}

impl Dependency {
    /// Switches how it answers from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// How many requests reached the handler.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn work(
    dependency: Arc<Dependency>,
    request: Request<HelloRequest>,
) -> Result<HelloResponse, Error> {
    dependency.requests.fetch_add(1, Ordering::SeqCst);
    dependency.arrived.notify_waiters();
    match dependency.mode.load(Ordering::SeqCst) {
        1 => tokio::time::sleep(Duration::from_secs(3600)).await,
        2 => {
            return Err(Error::overloaded(
                "kernel.server.capacity",
                "shed by the test",
            ));
        }
        _ => {}
    }
    Ok(HelloResponse {
        greeting: format!("done: {}", request.message().name),
        served_by: String::new(),
    })
}

/// Starts the service `name` on `broker`, answering in `mode`, and waits until it consumes.
pub async fn dependency(broker: &InProcessBroker, name: &str, mode: Mode) -> Arc<Dependency> {
    let state = Arc::new(Dependency::default());
    state.set(mode);
    let server_client = Client::new(broker.connect());
    let service = Service::builder(name, &server_client)
        .endpoint(Endpoint::with_state(ENDPOINT, Arc::clone(&state), work).open())
        .capacity(64)
        .build()
        .expect("a valid service");
    tokio::spawn(service.serve());
    // A ping finds a route once the service consumes.
    let probe = server_client.transport();
    let started = async {
        while probe
            .send(
                Destination::Service(name),
                Envelope::ping(probe.instance_queue()),
            )
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("the service to start consuming within 10 s");
    state
}

/// A request.
pub fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.into() }
}
