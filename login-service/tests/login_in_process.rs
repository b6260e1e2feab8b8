//! The login service on the in-process broker, driven through kernel-auth's `Auth` as every
//! service would: sign in, recover, wrong credentials, the lockout, sign-out, keys.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kernel_auth::{Auth, Credentials, Keyring, TokenSigner, codes as auth_codes};
use kernel_client::Client;
use kernel_errors::Kind;
use kernel_login::{AttemptPolicy, DEFAULT_LONG_SESSION_LIFETIME, LoginService, codes};
use kernel_proto::login::{
    AuthRequest, AuthResponse, DeleteSessionRequest, DeleteSessionResponse, PublicKeysRequest,
    PublicKeysResponse, ReadSessionRequest, ReadSessionResponse,
};
use kernel_transport::InProcessBroker;
use support::{ADA_PASSWORD, Running, bounded, login_with_ada, serve};

const LOGIN: &str = "kernel.login";

/// A login service with ada, served on its own "process" of a new broker, and a client on
/// another.
async fn started(policy: AttemptPolicy) -> (LoginService, Running, Client) {
    let broker = InProcessBroker::new();
    let login = login_with_ada(LOGIN, policy).await;
    let server_side = support::client(Arc::new(broker.connect()));
    let running = serve(login.service(&server_side).build().unwrap()).await;
    (login, running, support::client(Arc::new(broker.connect())))
}

fn ada(password: &str) -> Credentials {
    Credentials::password("cli", "ada", password)
}

/// Signing in answers ada with her roles and a token that verifies with the keys `Auth`
/// fetched from `publickeys`; a fresh `Auth` (empty cache) recovers the same user through
/// `readsession`.
#[tokio::test]
async fn sign_in_then_recover_gives_the_same_user_with_roles() {
    let (_login, _running, client) = started(AttemptPolicy::default()).await;
    let auth = Auth::builder(&client).build();
    let user = bounded("sign-in", auth.authenticate(&ada(ADA_PASSWORD)))
        .await
        .unwrap();
    assert_eq!(user.roles(), ["ADMIN", "CUSTOMER"]);
    assert!(user.has_role("ADMIN.ANYTHING"));
    assert_eq!(user.device(), "cli");
    assert_eq!(user.session_id().len(), 32, "{}", user.session_id());
    let lifetime = user.expires_at().duration_since(SystemTime::now()).unwrap();
    assert!(
        lifetime > Duration::from_secs(8 * 3600 - 60) && lifetime <= Duration::from_secs(8 * 3600),
        "{lifetime:?}"
    );

    let elsewhere = Auth::builder(&client).build();
    let recovered = bounded("recovery", elsewhere.recover(user.session_id()))
        .await
        .unwrap()
        .expect("the session exists");
    assert_eq!(recovered, user);
    assert_eq!(
        bounded("recovery of nothing", elsewhere.recover("0123456789abcdef"))
            .await
            .unwrap(),
        None
    );
}

/// A wrong password and an unknown user get the same answer: kernel-auth's bad credentials.
#[tokio::test]
async fn wrong_password_and_unknown_user_are_both_bad_credentials() {
    let (_login, _running, client) = started(AttemptPolicy::default()).await;
    let auth = Auth::builder(&client).build();
    for credentials in [
        ada("battery staple"),
        Credentials::password("cli", "nobody", ADA_PASSWORD),
        Credentials::password("cli", "", ""),
        Credentials::password("cli", "x".repeat(10_000), "pw"),
    ] {
        let error = bounded("a refused sign-in", auth.authenticate(&credentials))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), Kind::Unauthorized, "{error}");
        assert_eq!(error.code(), auth_codes::BAD_CREDENTIALS);
    }
    // What the login service itself answers, under the code kernel-auth maps.
    let raw: Result<AuthResponse, _> = client
        .call(
            LOGIN,
            "auth",
            &AuthRequest {
                mech: "h2".into(),
                device_type: "cli".into(),
                username: "nobody".into(),
                password: "pw".into(),
                ..AuthRequest::default()
            },
        )
        .attempts(1)
        .await;
    let error = raw.unwrap_err();
    assert_eq!(error.code(), "kernel.login.auth.badcredentials");
    assert_eq!(error.code(), codes::BAD_CREDENTIALS);
}

/// After `max_failures` wrong passwords the username is locked, the right password too,
/// with a distinct code; other usernames are not affected.
#[tokio::test]
async fn failures_past_the_limit_lock_the_username_out() {
    let policy = AttemptPolicy {
        max_failures: 3,
        ..AttemptPolicy::default()
    };
    let (login, _running, client) = started(policy).await;
    login
        .create_user("grace", "hopper", ["CUSTOMER"])
        .await
        .unwrap();
    let auth = Auth::builder(&client).build();
    for attempt in 0..3 {
        let error = auth.authenticate(&ada("wrong")).await.unwrap_err();
        assert_eq!(
            error.code(),
            auth_codes::BAD_CREDENTIALS,
            "attempt {attempt}"
        );
    }
    for credentials in [ada("wrong"), ada(ADA_PASSWORD)] {
        let error = auth.authenticate(&credentials).await.unwrap_err();
        assert_eq!(error.kind(), Kind::Forbidden, "{error}");
        assert_eq!(error.code(), codes::TOO_MANY_ATTEMPTS);
        assert!(!error.is_retryable());
    }
    let grace = auth
        .authenticate(&Credentials::password("web", "grace", "hopper"))
        .await
        .unwrap();
    assert_eq!(grace.roles(), ["CUSTOMER"]);
    // Unknown usernames are locked the same way, so a lockout does not reveal a name.
    for _ in 0..3 {
        let _ = auth
            .authenticate(&Credentials::password("cli", "nobody", "x"))
            .await;
    }
    let error = auth
        .authenticate(&Credentials::password("cli", "nobody", "x"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), codes::TOO_MANY_ATTEMPTS);
}

/// Signing out ends the session at the login service (`readsession` answers NotFound),
/// publishes `SignedOut` with its id, and a second sign-out succeeds too.
#[tokio::test]
async fn sign_out_ends_the_session_and_publishes_signed_out() {
    let (_login, _running, client) = started(AttemptPolicy::default()).await;
    let (_listener, mut signed_out) = support::signed_out_listener(&client).await;
    let auth = Auth::builder(&client).build();
    let user = auth.authenticate(&ada(ADA_PASSWORD)).await.unwrap();

    bounded("sign-out", auth.sign_out(user.session_id()))
        .await
        .unwrap();
    let heard = bounded("the SignedOut publication", signed_out.recv())
        .await
        .unwrap();
    assert_eq!(heard, user.session_id());

    let read: Result<ReadSessionResponse, _> = client
        .call(
            LOGIN,
            "readsession",
            &ReadSessionRequest {
                session_id: user.session_id().into(),
                no_renew: false,
            },
        )
        .await;
    let error = read.unwrap_err();
    assert_eq!(error.kind(), Kind::NotFound);
    assert_eq!(error.code(), codes::SESSION_NOT_FOUND);
    assert_eq!(auth.recover(user.session_id()).await.unwrap(), None);
    assert_eq!(
        Auth::builder(&client)
            .build()
            .recover(user.session_id())
            .await
            .unwrap(),
        None,
        "a service that never saw the session does not recover it either"
    );

    let again: DeleteSessionResponse = client
        .call(
            LOGIN,
            "deletesession",
            &DeleteSessionRequest {
                session_id: user.session_id().into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(again, DeleteSessionResponse {});
}

/// `no_expire` gives a long session to a customer and the normal one to an admin; an
/// unknown mechanism and a missing device are bad requests.
#[tokio::test]
async fn no_expire_is_long_for_customers_and_normal_for_admins() {
    let (login, _running, client) = started(AttemptPolicy::default()).await;
    login
        .create_user("grace", "hopper", ["CUSTOMER"])
        .await
        .unwrap();
    let keys: PublicKeysResponse = client
        .call(LOGIN, "publickeys", &PublicKeysRequest {})
        .await
        .unwrap();
    let mut keyring = Keyring::new();
    for key in keys.keys {
        keyring
            .insert(&key.key_id, key.ed25519.as_slice().try_into().unwrap())
            .unwrap();
    }
    let sign_in =
        |username: &str, password: &str, no_expire: bool, mech: &str, device: &str| AuthRequest {
            mech: mech.into(),
            device_type: device.into(),
            username: username.into(),
            password: password.into(),
            no_expire,
            ..AuthRequest::default()
        };
    let mut lifetimes = Vec::new();
    for (username, password) in [("grace", "hopper"), ("ada", ADA_PASSWORD)] {
        let session: AuthResponse = client
            .call(
                LOGIN,
                "auth",
                &sign_in(username, password, true, "h2", "cli"),
            )
            .attempts(1)
            .await
            .unwrap();
        let claims = keyring.verify(&session.token, SystemTime::now()).unwrap();
        assert_eq!(claims.session_id, session.session_id);
        lifetimes.push(claims.expires - claims.created);
    }
    assert_eq!(
        lifetimes,
        [DEFAULT_LONG_SESSION_LIFETIME.as_secs(), 8 * 3600],
        "customer, admin"
    );
    for (request, code) in [
        (
            sign_in("ada", ADA_PASSWORD, false, "oauth", "cli"),
            codes::BAD_MECHANISM,
        ),
        (
            sign_in("ada", ADA_PASSWORD, false, "h2", ""),
            codes::BAD_AUTH_REQUEST,
        ),
    ] {
        let error = client
            .call::<AuthResponse>(LOGIN, "auth", &request)
            .attempts(1)
            .await
            .unwrap_err();
        assert_eq!((error.kind(), error.code()), (Kind::BadRequest, code));
    }
}

/// `publickeys` answers the signing key first, then the retired ones, so tokens signed
/// before a rotation keep verifying.
#[tokio::test]
async fn public_keys_include_the_retired_keys() {
    let broker = InProcessBroker::new();
    let old = TokenSigner::from_seed("2026-11", &[1; 32]).unwrap();
    let new = TokenSigner::from_seed("2026-12", &[2; 32]).unwrap();
    let login = LoginService::builder(kernel_login::MemoryCredentialStore::new(), new.clone())
        .retired_key(old.key_id(), old.public_key())
        .build()
        .unwrap();
    let server_side = support::client(Arc::new(broker.connect()));
    let _running = serve(login.service(&server_side).build().unwrap()).await;
    let client = support::client(Arc::new(broker.connect()));
    let keys: PublicKeysResponse = client
        .call(LOGIN, "publickeys", &PublicKeysRequest {})
        .await
        .unwrap();
    let got: Vec<(String, Vec<u8>)> = keys
        .keys
        .into_iter()
        .map(|key| (key.key_id, key.ed25519))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-12".to_owned(), new.public_key().to_vec()),
            ("2026-11".to_owned(), old.public_key().to_vec()),
        ]
    );
}

/// `createuser` is for ADMIN only: refused without a session and for a user without the
/// role, and the user it creates (an ADMIN signed in) can sign in.
#[tokio::test]
async fn createuser_needs_an_admin_and_its_user_can_sign_in() {
    use kernel_proto::login::{CreateUserRequest, CreateUserResponse};

    let (_login, _running, client) = started(AttemptPolicy::default()).await;
    let grace = CreateUserRequest {
        username: "grace".into(),
        password: "grace's long password".into(),
        roles: vec!["CUSTOMER".into()],
        replace: false,
    };
    let anonymous = client
        .call::<CreateUserResponse>(LOGIN, "createuser", &grace)
        .await;
    assert_eq!(anonymous.unwrap_err().code(), auth_codes::NOT_SIGNED_IN);

    let auth = Auth::builder(&client).build();
    let admin = bounded("ada signs in", auth.authenticate(&ada(ADA_PASSWORD)))
        .await
        .unwrap();
    let created: CreateUserResponse = client
        .call(LOGIN, "createuser", &grace)
        .session_id(admin.session_id())
        .await
        .unwrap();
    assert!(!created.user_id.is_empty());

    let customer = bounded(
        "grace signs in",
        auth.authenticate(&Credentials::password(
            "cli",
            "grace",
            "grace's long password",
        )),
    )
    .await
    .unwrap();
    assert_eq!(customer.roles(), ["CUSTOMER"]);
    let mallory = CreateUserRequest {
        username: "mallory".into(),
        password: "mallory's long password".into(),
        roles: vec!["ADMIN".into()],
        replace: false,
    };
    let refused = client
        .call::<CreateUserResponse>(LOGIN, "createuser", &mallory)
        .session_id(customer.session_id())
        .await;
    assert_eq!(refused.unwrap_err().code(), auth_codes::BAD_ROLE);
}
