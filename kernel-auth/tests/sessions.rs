//! `Auth` against a login service on the in-process broker that counts what it is asked:
//! sessions recovered once then cached, known-missing sessions answered from the cache,
//! expiry honoured, sign-out invalidating, keys fetched for unknown key ids.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel_auth::{Auth, Authoriser, Claims, Credentials, TokenSigner};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_proto::login::{
    AuthRequest, AuthResponse, DeleteSessionRequest, DeleteSessionResponse, PublicKey,
    PublicKeysRequest, PublicKeysResponse, ReadSessionRequest, ReadSessionResponse,
};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::InProcessTransport;

/// A login service with sessions in memory, counting `readsession` calls.
#[derive(Default)]
struct Login {
    signer: Option<TokenSigner>,
    sessions: Mutex<HashMap<String, String>>,
    reads: AtomicUsize,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Login {
    fn open(&self, session: &str, roles: &[&str], lifetime: u64) -> String {
        let token = self.signer.as_ref().unwrap().sign(&Claims {
            session_id: session.into(),
            mechanism: "h2".into(),
            device: "test".into(),
            user_id: format!("user-of-{session}"),
            created: now(),
            expires: now() + lifetime,
            renew: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        });
        self.sessions
            .lock()
            .unwrap()
            .insert(session.into(), token.clone());
        token
    }
}

async fn read(
    login: Arc<Login>,
    request: Request<ReadSessionRequest>,
) -> Result<ReadSessionResponse, Error> {
    login.reads.fetch_add(1, Ordering::SeqCst);
    let session = request.message().session_id.clone();
    let token = login.sessions.lock().unwrap().get(&session).cloned();
    match token {
        Some(token) => Ok(ReadSessionResponse {
            session_id: session,
            token,
        }),
        None => Err(Error::not_found(
            "kernel.login.readsession.notfound",
            "no such session",
        )),
    }
}

async fn delete(
    login: Arc<Login>,
    request: Request<DeleteSessionRequest>,
) -> Result<DeleteSessionResponse, Error> {
    login
        .sessions
        .lock()
        .unwrap()
        .remove(&request.message().session_id);
    Ok(DeleteSessionResponse {})
}

async fn keys(
    login: Arc<Login>,
    _: Request<PublicKeysRequest>,
) -> Result<PublicKeysResponse, Error> {
    let signer = login.signer.as_ref().unwrap();
    Ok(PublicKeysResponse {
        keys: vec![PublicKey {
            key_id: signer.key_id().into(),
            ed25519: signer.public_key().to_vec(),
        }],
    })
}

async fn sign_in(login: Arc<Login>, request: Request<AuthRequest>) -> Result<AuthResponse, Error> {
    let message = request.message();
    if message.password != "right" {
        return Err(Error::forbidden(
            kernel_auth::BAD_CREDENTIALS,
            "bad credentials",
        ));
    }
    let session = format!("s-{}", message.username);
    let token = login.open(&session, &["CUSTOMER"], 600);
    Ok(AuthResponse {
        session_id: session,
        token,
    })
}

/// A login service and an `Auth` (knowing no key: it fetches them) on one in-process broker.
async fn setup() -> (Arc<Login>, Auth, tokio::task::JoinHandle<Result<(), Error>>) {
    let client = Client::new(InProcessTransport::new());
    let login = Arc::new(Login {
        signer: Some(TokenSigner::generate("k1").unwrap()),
        ..Login::default()
    });
    let service = Service::builder("kernel.login", &client)
        .endpoint(Endpoint::with_state("readsession", Arc::clone(&login), read).open())
        .endpoint(Endpoint::with_state("deletesession", Arc::clone(&login), delete).open())
        .endpoint(Endpoint::with_state("publickeys", Arc::clone(&login), keys).open())
        .endpoint(Endpoint::with_state("auth", Arc::clone(&login), sign_in).open())
        .build()
        .unwrap();
    let running = tokio::spawn(service.serve());
    let auth = Auth::builder(&client)
        .negative_ttl(Duration::from_secs(60))
        .build();
    (login, auth, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_asked_for_once_then_served_from_the_cache() {
    let (login, auth, _running) = setup().await;
    login.open("s-1", &["ADMIN"], 600);
    let user = auth
        .recover("s-1")
        .await
        .unwrap()
        .expect("the session exists");
    assert_eq!(user.id(), "user-of-s-1");
    assert!(user.has_role("ADMIN.ANYTHING"));
    for _ in 0..10 {
        assert!(auth.recover("s-1").await.unwrap().is_some());
    }
    assert_eq!(
        login.reads.load(Ordering::SeqCst),
        1,
        "one login call, then the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_missing_session_is_answered_without_the_login_service() {
    let (login, auth, _running) = setup().await;
    for _ in 0..10 {
        assert!(auth.recover("nobody").await.unwrap().is_none());
    }
    assert_eq!(
        login.reads.load(Ordering::SeqCst),
        1,
        "asked once, then known missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_not_served_from_the_cache() {
    let (login, auth, _running) = setup().await;
    login.open("short", &["ADMIN"], 1);
    assert!(auth.recover("short").await.unwrap().is_some());
    // The token's expiry (whole seconds) passes: the cache entry goes with it, and the login
    // service's answer (the same expired token) is refused.
    tokio::time::timeout(Duration::from_secs(5), async {
        while auth.recover("short").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the session ends with its token");
    assert!(
        login.reads.load(Ordering::SeqCst) >= 2,
        "the cache did not keep it past expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session_here_at_once() {
    let (login, auth, _running) = setup().await;
    let mut scope = auth.scope("svc", "ep", None);
    let user = scope
        .auth(&Credentials::password("cli", "ada", "right"))
        .await
        .unwrap();
    assert_eq!(user.session_id(), "s-ada");
    assert!(scope.has_access("CUSTOMER") && !scope.has_access("ADMIN"));
    assert_eq!(
        Authoriser::admin().authorise(&scope).unwrap_err().code(),
        "kernel.auth.badrole"
    );
    assert!(auth.recover("s-ada").await.unwrap().is_some());
    let reads = login.reads.load(Ordering::SeqCst);
    scope.sign_out().await.unwrap();
    assert!(!scope.is_auth());
    assert!(auth.recover("s-ada").await.unwrap().is_none());
    assert_eq!(
        login.reads.load(Ordering::SeqCst),
        reads,
        "invalidated here: no login call"
    );

    let wrong = scope
        .auth(&Credentials::password("cli", "ada", "wrong"))
        .await;
    assert_eq!(wrong.unwrap_err().code(), "kernel.auth.badcredentials");
    assert!(scope.has_tried_auth() && !scope.is_auth());
}
