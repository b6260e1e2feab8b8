//! The endpoints: `auth`, `readsession`, `deletesession`, `publickeys` (open: every caller
//! needs them before it is anyone) and `createuser` (ADMIN).

use std::time::{Duration, SystemTime};

use kernel_auth::{Claims, SIGNED_OUT_TOPIC};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_proto::login::{
    AuthRequest, AuthResponse, CreateUserRequest, CreateUserResponse, DeleteSessionRequest,
    DeleteSessionResponse, PublicKey, PublicKeysRequest, PublicKeysResponse, ReadSessionRequest,
    ReadSessionResponse, SignedOut,
};
use kernel_server::{Endpoint, Request};

use crate::codes;
use crate::service::{LoginService, MAX_SESSION_ID_LEN, MAX_USERNAME_LEN};
use crate::sessions::Session;

/// The only mechanism served: username and password (`h2`, or `h2.<application>`).
const MECHANISM: &str = "h2";

/// What the `deletesession` handler needs besides the service: the client it publishes with.
#[derive(Clone)]
struct Publisher {
    login: LoginService,
    client: Client,
}

pub(crate) fn endpoints(login: &LoginService, client: Client) -> Vec<Endpoint> {
    let publisher = Publisher {
        login: login.clone(),
        client,
    };
    vec![
        // An Argon2 check takes tens of milliseconds and may queue behind others.
        Endpoint::with_state("auth", login.clone(), auth)
            .open()
            .mean_time(Duration::from_millis(250))
            .upper95(Duration::from_secs(2)),
        // The session id is the secret: whoever holds it may read or end the session.
        Endpoint::with_state("readsession", login.clone(), read_session)
            .open()
            .mean_time(Duration::from_millis(5))
            .upper95(Duration::from_millis(50)),
        Endpoint::with_state("deletesession", publisher, delete_session)
            .open()
            .mean_time(Duration::from_millis(10))
            .upper95(Duration::from_millis(100)),
        Endpoint::with_state("publickeys", login.clone(), public_keys)
            .open()
            .mean_time(Duration::from_millis(5))
            .upper95(Duration::from_millis(50)),
        // ADMIN only (the default authoriser).
        Endpoint::with_state("createuser", login.clone(), create_user)
            .mean_time(Duration::from_millis(250))
            .upper95(Duration::from_secs(2)),
    ]
}

/// Creates or replaces a user (ADMIN only): the admin path besides `kernel-login user add`.
async fn create_user(
    login: LoginService,
    request: Request<CreateUserRequest>,
) -> Result<CreateUserResponse, Error> {
    let request = request.into_message();
    let user = login
        .put_user(
            &request.username,
            &request.password,
            request.roles,
            request.replace,
        )
        .await?;
    Ok(CreateUserResponse {
        user_id: user.user_id,
    })
}

fn bad_credentials() -> Error {
    Error::unauthorized(codes::BAD_CREDENTIALS, "bad credentials")
}

/// Signs a user in with username and password: a new session and its signed token.
///
/// Wrong username and wrong password get the same answer, after the same work (an unknown
/// user is checked against a dummy hash). Attempts are limited per username (see
/// [`AttemptPolicy`](crate::AttemptPolicy)).
async fn auth(login: LoginService, request: Request<AuthRequest>) -> Result<AuthResponse, Error> {
    let request = request.into_message();
    let inner = &login.inner;
    if request.mech != MECHANISM && !request.mech.starts_with("h2.") {
        return Err(Error::bad_request(
            codes::BAD_MECHANISM,
            "only the h2 mechanism (username and password) is served",
        ));
    }
    if request.device_type.is_empty() || request.device_type.len() > 64 {
        return Err(Error::bad_request(
            codes::BAD_AUTH_REQUEST,
            "device_type must be 1 to 64 bytes",
        ));
    }
    if request.username.len() > MAX_USERNAME_LEN {
        // No such user can exist; not worth a limiter entry keyed by unbounded input.
        inner.passwords.check(&request.password, None).await?;
        return Err(bad_credentials());
    }
    if let Err(until) = inner.limiter.admit(&request.username) {
        let wait = until.saturating_duration_since(std::time::Instant::now());
        return Err(Error::forbidden(
            codes::TOO_MANY_ATTEMPTS,
            format!(
                "too many failed sign-ins for this user: try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let user = inner.store.get(&request.username).await?;
    let password_ok = request.password.len() <= crate::MAX_PASSWORD_LEN
        && inner
            .passwords
            .check(
                &request.password,
                user.as_ref().map(|user| user.password_hash.as_str()),
            )
            .await?;
    let user = match user {
        Some(user) if password_ok => user,
        _ => {
            tracing::info!(
                username_len = request.username.len(),
                "sign-in refused: bad credentials"
            );
            return Err(bad_credentials());
        }
    };
    inner.limiter.succeeded(&request.username);

    let is_admin = user
        .roles
        .iter()
        .any(|role| role == "ADMIN" || role.starts_with("ADMIN."));
    let lifetime = if request.no_expire && !is_admin {
        inner.long_session_lifetime
    } else {
        inner.session_lifetime
    };
    let now = unix_now();
    let claims = Claims {
        session_id: uuid::Uuid::new_v4().simple().to_string(),
        mechanism: request.mech,
        device: request.device_type,
        user_id: user.user_id,
        created: now,
        expires: now.saturating_add(lifetime.as_secs()),
        renew: None,
        roles: user.roles,
    };
    let token = inner.signer.sign(&claims);
    let session_id = claims.session_id.clone();
    inner.sessions.insert(Session {
        claims,
        token: token.clone(),
    });
    Ok(AuthResponse { session_id, token })
}

/// The session's current token. Reading does not renew it (`no_renew` is accepted and has
/// nothing to change).
async fn read_session(
    login: LoginService,
    request: Request<ReadSessionRequest>,
) -> Result<ReadSessionResponse, Error> {
    let session_id = &request.message().session_id;
    let session = (session_id.len() <= MAX_SESSION_ID_LEN)
        .then(|| login.inner.sessions.get(session_id))
        .flatten()
        .ok_or_else(|| {
            Error::not_found(codes::SESSION_NOT_FOUND, "no such session, or it ended")
        })?;
    Ok(ReadSessionResponse {
        session_id: session.claims.session_id.clone(),
        token: session.token.clone(),
    })
}

/// Ends a session and tells every service (`SignedOut` on `kernel.login.signedout`). Ending
/// a session that is not live succeeds and publishes nothing.
async fn delete_session(
    publisher: Publisher,
    request: Request<DeleteSessionRequest>,
) -> Result<DeleteSessionResponse, Error> {
    let session_id = &request.message().session_id;
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_LEN {
        return Err(Error::bad_request(
            codes::BAD_SESSION_ID,
            format!("a session id is 1 to {MAX_SESSION_ID_LEN} bytes"),
        ));
    }
    if publisher.login.inner.sessions.remove(session_id) {
        let signed_out = SignedOut {
            session_id: session_id.clone(),
        };
        // The session is gone here whatever happens next; services that miss the news
        // keep its token until it expires (or until their negative cache learns it).
        if let Err(error) = publisher
            .client
            .publish(SIGNED_OUT_TOPIC, &signed_out)
            .await
        {
            tracing::warn!(%error, "could not publish a sign-out");
        }
    }
    Ok(DeleteSessionResponse {})
}

/// The current signing key and the retired keys whose tokens may still be live.
async fn public_keys(
    login: LoginService,
    _: Request<PublicKeysRequest>,
) -> Result<PublicKeysResponse, Error> {
    let inner = &login.inner;
    let current = PublicKey {
        key_id: inner.signer.key_id().to_owned(),
        ed25519: inner.signer.public_key().to_vec(),
    };
    let retired = inner.retired.iter().map(|(key_id, public)| PublicKey {
        key_id: key_id.clone(),
        ed25519: public.to_vec(),
    });
    Ok(PublicKeysResponse {
        keys: std::iter::once(current).chain(retired).collect(),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
