//! The login service over the real RabbitMQ (`KERNEL_AMQP_URL`): the service on one
//! connection, the services that sign users in on others.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;

use kernel_auth::{Auth, Credentials, codes as auth_codes};
use kernel_login::AttemptPolicy;
use kernel_transport::{AmqpTransport, Transport};
use support::{ADA_PASSWORD, bounded, login_with_ada, serve, unique};

async fn connect() -> Arc<dyn Transport> {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    let transport = bounded("an AMQP connection", AmqpTransport::connect(&url))
        .await
        .unwrap_or_else(|error| panic!("cannot connect to RabbitMQ: {error}"));
    Arc::new(transport)
}

/// Ada signs in through one connection and is recovered, through `readsession`, by a
/// service on a third; a wrong password is bad credentials; signing out is heard by a
/// subscriber and ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_recover_across_connections() {
    let name = unique("login");
    let login = login_with_ada(&name, AttemptPolicy::default()).await;
    let server_side = support::client(connect().await);
    let running = serve(login.service(&server_side).build().unwrap()).await;

    let front = support::client(connect().await);
    let (_listener, mut signed_out) = support::signed_out_listener(&front).await;
    let auth = Auth::builder(&front).login_service(&name).build();
    let user = bounded(
        "sign-in",
        auth.authenticate(&Credentials::password("cli", "ada", ADA_PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(user.roles(), ["ADMIN", "CUSTOMER"]);
    let wrong = bounded(
        "a refused sign-in",
        auth.authenticate(&Credentials::password("cli", "ada", "wrong")),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.code(), auth_codes::BAD_CREDENTIALS);

    let back = support::client(connect().await);
    let elsewhere = Auth::builder(&back).login_service(&name).build();
    let recovered = bounded("recovery", elsewhere.recover(user.session_id()))
        .await
        .unwrap()
        .expect("the session exists");
    assert_eq!(recovered, user);

    bounded("sign-out", auth.sign_out(user.session_id()))
        .await
        .unwrap();
    // Other tests' sign-outs may share the topic: wait for ours.
    bounded("our SignedOut publication", async {
        while signed_out.recv().await.unwrap() != user.session_id() {}
    })
    .await;
    let fresh = Auth::builder(&back).login_service(&name).build();
    assert_eq!(fresh.recover(user.session_id()).await.unwrap(), None);
    running.stop().await;
}
