//! What the login service's tests share: a login service with users, served on a transport,
//! and a subscriber that records `SignedOut` publications.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test crates

use std::sync::Arc;
use std::time::Duration;

use kernel_auth::{SIGNED_OUT_TOPIC, TokenSigner};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_login::{AttemptPolicy, LoginService, MemoryCredentialStore};
use kernel_proto::login::SignedOut;
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::Transport;
use tokio::sync::{mpsc, oneshot};

pub use kernel_testkit::{bounded, unique};

/// Ada's password in every test.
pub const ADA_PASSWORD: &str = "correct horse battery staple";

/// A login service called `name` with the user `ada` (roles ADMIN, CUSTOMER) and `policy`.
pub async fn login_with_ada(name: &str, policy: AttemptPolicy) -> LoginService {
    let login = LoginService::builder(
        MemoryCredentialStore::new(),
        TokenSigner::generate("test-key").unwrap(),
    )
    .name(name)
    .attempts(policy)
    .build()
    .unwrap();
    login
        .create_user("ada", ADA_PASSWORD, ["ADMIN", "CUSTOMER"])
        .await
        .unwrap();
    login
}

/// A running service; stopped (aborted) when dropped.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Stops the service and waits for it to finish its requests in flight.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        bounded("the service's shutdown", &mut self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `service` in the background, returning once its work queue is consumed
/// ([`Service::serving`]).
pub async fn serve(service: Service) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = service.clone();
    let task = tokio::spawn(service.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    bounded("the service to start consuming", handle.serving()).await;
    Running {
        stop: Some(stop),
        task,
    }
}

/// A service subscribed to `kernel.login.signedout`, forwarding each session id it hears of.
pub async fn signed_out_listener(client: &Client) -> (Running, mpsc::UnboundedReceiver<String>) {
    let (sender, received) = mpsc::unbounded_channel();
    let on_signed_out = move |request: Request<SignedOut>| {
        let sender = sender.clone();
        async move {
            let _ = sender.send(request.message().session_id.clone());
            Ok::<_, Error>(SignedOut::default())
        }
    };
    let service = Service::builder(unique("signedout"), client)
        .endpoint(
            Endpoint::new("signedout", on_signed_out)
                .open()
                .subscribe(SIGNED_OUT_TOPIC),
        )
        .build()
        .unwrap();
    (serve(service).await, received)
}

/// A client on `transport`, calling as a test.
pub fn client(transport: Arc<dyn Transport>) -> Client {
    Client::builder(transport)
        .calling_as("test.caller")
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap()
}
