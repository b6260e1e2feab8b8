//! Auth end to end over the real RabbitMQ, each party on its own connection: the login
//! service, a service with restricted endpoints, users signing in, and two calling services
//! logged in to the broker as `kernel.test.alpha` and `kernel.test.beta` (`services up`
//! creates them), one of which a service-to-service rule trusts.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::Duration;

use kernel_auth::{Auth, Authoriser, Credentials, ServiceRule, ServiceRules, codes};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_inst::MemoryInstrumenter;
use kernel_login::{AttemptPolicy, LoginService, MemoryCredentialStore};
use kernel_proto::examples::{HelloRequest, HelloResponse};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::{AmqpTransport, Transport};
use support::{ADA_PASSWORD, bounded, login_with_ada, serve, unique};

async fn connect(variable: &str) -> Arc<dyn Transport> {
    let url = kernel_testkit::engine_address(variable);
    Arc::new(
        bounded("an AMQP connection", AmqpTransport::connect(&url))
            .await
            .unwrap(),
    )
}

/// Says who the request acts for: the user, else the calling service.
async fn whoami(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    let scope = request.scope();
    let who = match (scope.auth_user(), scope.caller_service()) {
        (Some(user), _) => format!("user {}", user.id()),
        (None, Some(service)) => format!("service {service}"),
        (None, None) => "nobody".to_owned(),
    };
    Ok(HelloResponse {
        greeting: who,
        served_by: String::new(),
    })
}

fn hello() -> HelloRequest {
    HelloRequest { name: "x".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_roles_sessions_and_service_rules_over_rabbitmq() {
    let login_name = unique("test.login");
    let vault = unique("test.vault");

    // The login service, with ada (ADMIN, CUSTOMER) and grace (CUSTOMER).
    let login = login_with_ada(&login_name, AttemptPolicy::default()).await;
    login
        .create_user("grace", "grace's long password", ["CUSTOMER"])
        .await
        .unwrap();
    let login_side = support::client(connect("KERNEL_AMQP_URL").await);
    let _login = serve(login.service(&login_side).build().unwrap()).await;

    // The vault: `admin` (the default, ADMIN), `me` (any signed-in user), `audit` (the role
    // AUDIT, which a rule gives the service alpha).
    let vault_side = support::client(connect("KERNEL_AMQP_URL").await);
    let metrics = MemoryInstrumenter::new();
    let rule = |endpoint: &str| ServiceRule {
        caller: "kernel.test.alpha".into(),
        service: vault.clone(),
        endpoint: endpoint.into(),
        role: "AUDIT".into(),
    };
    // AUDIT is what `audit` needs, and not what `admin` needs.
    let rules = ServiceRules::new([rule("audit"), rule("admin")]);
    let auth = Auth::builder(&vault_side)
        .login_service(&login_name)
        .rules(rules)
        .build();
    let _vault = serve(
        Service::builder(&vault, &vault_side)
            .instrumenter(Arc::new(metrics.clone()))
            .auth(auth)
            .endpoint(Endpoint::new("admin", whoami))
            .endpoint(Endpoint::new("me", whoami).authoriser(Authoriser::SignedIn))
            .endpoint(Endpoint::new("audit", whoami).authoriser(Authoriser::any_role(["AUDIT"])))
            .build()
            .unwrap(),
    )
    .await;

    // Users sign in through their own connection.
    let user_side = support::client(connect("KERNEL_AMQP_URL").await);
    let users = Auth::builder(&user_side).login_service(&login_name).build();
    let ada = users
        .authenticate(&Credentials::password("cli", "ada", ADA_PASSWORD))
        .await
        .unwrap();
    let grace = users
        .authenticate(&Credentials::password(
            "cli",
            "grace",
            "grace's long password",
        ))
        .await
        .unwrap();
    let call = |endpoint: &'static str, session: Option<String>| {
        let client = user_side.clone();
        let vault = vault.clone();
        async move {
            let request = hello();
            let call = client.call::<HelloResponse>(&vault, endpoint, &request);
            match session {
                Some(session) => call.session_id(session).await,
                None => call.await,
            }
        }
    };

    // An ADMIN endpoint: ada yes, grace (CUSTOMER) badrole, nobody notsignedin.
    let allowed = call("admin", Some(ada.session_id().into())).await.unwrap();
    assert_eq!(allowed.greeting, format!("user {}", ada.id()));
    let refused = call("admin", Some(grace.session_id().into()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::BAD_ROLE);
    let refused = call("admin", None).await.unwrap_err();
    assert_eq!(refused.code(), codes::NOT_SIGNED_IN);
    // A session id nobody issued is nobody.
    let refused = call("me", Some("0123456789abcdef0123456789abcdef".into()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::NOT_SIGNED_IN);
    assert_eq!(
        call("me", Some(grace.session_id().into()))
            .await
            .unwrap()
            .greeting,
        format!("user {}", grace.id())
    );

    // Service-to-service: alpha is trusted for `audit` by its broker login; beta is not,
    // not even when it writes alpha's name in `from`.
    let alpha = Client::builder(connect("KERNEL_AMQP_URL_ALPHA").await)
        .calling_as("kernel.test.alpha")
        .build()
        .unwrap();
    let audited: HelloResponse = alpha.call(&vault, "audit", &hello()).await.unwrap();
    assert_eq!(audited.greeting, "service kernel.test.alpha");
    let refused = alpha
        .call::<HelloResponse>(&vault, "admin", &hello())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        codes::BAD_ROLE,
        "a rule gives alpha AUDIT on admin, which needs ADMIN"
    );
    let refused = alpha
        .call::<HelloResponse>(&vault, "me", &hello())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::NOT_SIGNED_IN, "me needs a user");
    let forger = Client::builder(connect("KERNEL_AMQP_URL_BETA").await)
        .calling_as("kernel.test.alpha")
        .build()
        .unwrap();
    let refused = forger
        .call::<HelloResponse>(&vault, "audit", &hello())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        codes::NOT_SIGNED_IN,
        "from says alpha, the broker says beta, for whom there is no rule"
    );
    assert!(
        metrics
            .snapshot()
            .counter("auth.servicetoservice.failed")
            .unwrap_or(0)
            >= 2,
        "{:?}",
        metrics.snapshot().counters()
    );

    // Signing out ends the session everywhere at once: the vault had ada's session cached,
    // and drops it when the login service says so.
    users.sign_out(ada.session_id()).await.unwrap();
    bounded("the vault to drop ada's session", async {
        while call("admin", Some(ada.session_id().into())).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let refused = call("admin", Some(ada.session_id().into()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::NOT_SIGNED_IN);
}

/// A token past its expiry is refused: the session's cached user goes with its token, and the
/// login service no longer knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let login_name = unique("test.login.short");
    let service = unique("test.expiring");
    let login = LoginService::builder(
        MemoryCredentialStore::new(),
        kernel_auth::TokenSigner::generate("short").unwrap(),
    )
    .name(&login_name)
    .session_lifetime(Duration::from_secs(2))
    .build()
    .unwrap();
    login
        .create_user("ada", ADA_PASSWORD, ["ADMIN"])
        .await
        .unwrap();
    let side = support::client(connect("KERNEL_AMQP_URL").await);
    let _login = serve(login.service(&side).build().unwrap()).await;
    let auth = Auth::builder(&side).login_service(&login_name).build();
    let _service = serve(
        Service::builder(&service, &side)
            .auth(auth.clone())
            .endpoint(Endpoint::new("admin", whoami))
            .build()
            .unwrap(),
    )
    .await;
    let ada = auth
        .authenticate(&Credentials::password("cli", "ada", ADA_PASSWORD))
        .await
        .unwrap();
    let caller = support::client(connect("KERNEL_AMQP_URL").await);
    let refused = bounded("the session to expire", async {
        loop {
            let call = caller
                .call::<HelloResponse>(&service, "admin", &hello())
                .session_id(ada.session_id())
                .await;
            match call {
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(error) => break error,
            }
        }
    })
    .await;
    assert_eq!(refused.code(), codes::NOT_SIGNED_IN);
}
