//! [`LoginService`] and [`LoginServiceBuilder`]: the state the endpoints share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kernel_auth::{DEFAULT_LOGIN_SERVICE, Keyring, TokenSigner};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_server::{Endpoint, Service, ServiceBuilder};

use crate::codes;
use crate::handlers;
use crate::limiter::{AttemptLimiter, AttemptPolicy};
use crate::password::PasswordChecker;
use crate::sessions::SessionTable;
use crate::store::{CredentialStore, StoredUser};

/// How long a session (and its token) lasts unless told otherwise: 8 hours, as H2's.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How long a session asked for with `no_expire` lasts unless told otherwise: 30 days. Users
/// with an `ADMIN` role never get it (see [`LoginServiceBuilder::long_session_lifetime`]).
pub const DEFAULT_LONG_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many live sessions one login service keeps at most unless told otherwise.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;
/// How many passwords are hashed at once at most unless told otherwise (each Argon2 hash
/// takes a core and 19 MiB while it runs).
pub const DEFAULT_HASH_CONCURRENCY: usize = 2;
/// The longest username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 128;
/// The longest session id accepted, in bytes (ours are 32).
pub const MAX_SESSION_ID_LEN: usize = 64;

/// The login service: checks passwords, opens and ends sessions, signs their tokens.
///
/// Cheap to clone; clones share everything. Build one with [`LoginService::builder`], then
/// serve its [`endpoints`](Self::endpoints) (or the whole [`service`](Self::service)):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kernel_errors::Error> {
/// use kernel_auth::{Auth, Credentials, TokenSigner};
/// use kernel_client::Client;
/// use kernel_login::{LoginService, MemoryCredentialStore};
/// use kernel_transport::InProcessTransport;
///
/// let client = Client::new(InProcessTransport::new());
/// let login = LoginService::builder(MemoryCredentialStore::new(), TokenSigner::generate("dev").expect("a valid key id")).build()?;
/// login.create_user("ada", "correct horse", ["ADMIN"]).await?;
/// tokio::spawn(login.service(&client).build()?.serve());
/// # tokio::task::yield_now().await;
///
/// let auth = Auth::builder(&client).build();
/// let ada = auth.authenticate(&Credentials::password("cli", "ada", "correct horse")).await?;
/// assert!(ada.has_role("ADMIN"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn CredentialStore>,
    pub(crate) signer: TokenSigner,
    /// Retired keys whose tokens may still be live, answered by `publickeys`.
    pub(crate) retired: Vec<(String, [u8; 32])>,
    pub(crate) sessions: SessionTable,
    pub(crate) limiter: AttemptLimiter,
    pub(crate) passwords: PasswordChecker,
    pub(crate) session_lifetime: Duration,
    pub(crate) long_session_lifetime: Duration,
}

impl fmt::Debug for LoginService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginService")
            .field("name", &self.inner.name)
            .field("signer", &self.inner.signer)
            .field("session_lifetime", &self.inner.session_lifetime)
            .field("long_session_lifetime", &self.inner.long_session_lifetime)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LoginService`]; see [`LoginService::builder`].
#[must_use]
pub struct LoginServiceBuilder {
    name: String,
    store: Arc<dyn CredentialStore>,
    signer: TokenSigner,
    retired: Vec<(String, [u8; 32])>,
    session_lifetime: Duration,
    long_session_lifetime: Duration,
    attempts: AttemptPolicy,
    max_sessions: u64,
    hash_concurrency: usize,
}

impl fmt::Debug for LoginServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginServiceBuilder")
            .field("name", &self.name)
            .field("signer", &self.signer)
            .field("session_lifetime", &self.session_lifetime)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A [`LoginServiceBuilder`] setting cannot be used. Converts into the platform [`Error`]
/// (`InternalServerError`, [`codes::INVALID_SETTINGS`]), so `?` works in `main`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A duration is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A count is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A retired key's id or bytes are not a valid Ed25519 public key.
    #[error("retired key {key_id:?}: {reason}")]
    InvalidKey {
        /// The key's id.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// The dummy password hash (for unknown users) could not be made.
    #[error("cannot hash the dummy password: {0}")]
    Hash(String),
}

impl From<BuildError> for Error {
    fn from(error: BuildError) -> Self {
        Error::internal_server_error(codes::INVALID_SETTINGS, error.to_string())
    }
}

impl LoginService {
    /// Starts building a login service that reads users from `store` and signs tokens with
    /// `signer`.
    pub fn builder(store: impl CredentialStore, signer: TokenSigner) -> LoginServiceBuilder {
        LoginServiceBuilder {
            name: DEFAULT_LOGIN_SERVICE.to_owned(),
            store: Arc::new(store),
            signer,
            retired: Vec::new(),
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            long_session_lifetime: DEFAULT_LONG_SESSION_LIFETIME,
            attempts: AttemptPolicy::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            hash_concurrency: DEFAULT_HASH_CONCURRENCY,
        }
    }

    /// The service name it serves as (default [`DEFAULT_LOGIN_SERVICE`]).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The endpoints `auth`, `readsession`, `deletesession` and `publickeys`. `deletesession`
    /// publishes `SignedOut` on [`SIGNED_OUT_TOPIC`](kernel_auth::SIGNED_OUT_TOPIC) through
    /// `client` (calling as the login service).
    pub fn endpoints(&self, client: &Client) -> Vec<Endpoint> {
        handlers::endpoints(self, client.calling_as(self.inner.name.clone()))
    }

    /// A service builder for the login service on `client`'s transport, with its
    /// [`endpoints`](Self::endpoints) and a description; add settings, then `build()`.
    pub fn service(&self, client: &Client) -> ServiceBuilder {
        self.endpoints(client).into_iter().fold(
            Service::builder(self.inner.name.clone(), client)
                .version(env!("CARGO_PKG_VERSION"))
                .description("Signs users in: passwords, sessions and signed session tokens")
                .auth(self.own_auth(client)),
            ServiceBuilder::endpoint,
        )
    }

    /// The service's own [`Auth`](kernel_auth::Auth), for its ADMIN endpoint: it verifies
    /// with the service's own keys (never fetched) and reads sessions from itself.
    fn own_auth(&self, client: &Client) -> kernel_auth::Auth {
        let inner = &self.inner;
        let mut keys = kernel_auth::Keyring::new();
        let own = std::iter::once((inner.signer.key_id().to_owned(), inner.signer.public_key()));
        for (key_id, public) in own.chain(inner.retired.iter().cloned()) {
            if let Err(error) = keys.insert(&key_id, public) {
                tracing::warn!(%error, "a key of the login service's own refused");
            }
        }
        kernel_auth::Auth::builder(client)
            .login_service(inner.name.clone())
            .keys(keys)
            .fixed_keys()
            .build()
    }

    /// Creates (or, with `replace`, replaces) the user `username` with `password` (hashed
    /// with Argon2id; the password itself is never stored) and `roles`. A new user gets a
    /// new random id; a replaced one keeps theirs.
    ///
    /// # Errors
    /// `BadRequest` [`codes::BAD_USERNAME`], [`codes::BAD_PASSWORD`] or [`codes::BAD_ROLE`];
    /// `Conflict` [`codes::USER_EXISTS`] if the user exists and `replace` is false; the
    /// store's error.
    pub async fn put_user(
        &self,
        username: &str,
        password: &str,
        roles: impl IntoIterator<Item = impl Into<String>>,
        replace: bool,
    ) -> Result<StoredUser, Error> {
        check_username(username)?;
        let roles: Vec<String> = roles.into_iter().map(Into::into).collect();
        if let Some(bad) = roles.iter().find(|role| !valid_role(role)) {
            return Err(Error::bad_request(
                codes::BAD_ROLE,
                format!("{bad:?} is not a role (letters, digits, '_', '-', '*', '.')"),
            ));
        }
        let existing = self.inner.store.get(username).await?;
        if existing.is_some() && !replace {
            return Err(Error::conflict(
                codes::USER_EXISTS,
                format!("the user {username:?} exists"),
            ));
        }
        let password_hash = self.inner.passwords.hash(password).await?;
        let user = StoredUser {
            user_id: existing.map_or_else(
                || uuid::Uuid::new_v4().simple().to_string(),
                |user| user.user_id,
            ),
            username: username.to_owned(),
            password_hash,
            roles,
        };
        self.inner.store.put(user.clone()).await?;
        Ok(user)
    }

    /// Creates the user `username`; see [`put_user`](Self::put_user) (without replacing).
    ///
    /// # Errors
    /// As for [`put_user`](Self::put_user).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<StoredUser, Error> {
        self.put_user(username, password, roles, false).await
    }
}

fn check_username(username: &str) -> Result<(), Error> {
    if username.is_empty()
        || username.len() > MAX_USERNAME_LEN
        || username
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::bad_request(
            codes::BAD_USERNAME,
            format!("a username is 1 to {MAX_USERNAME_LEN} bytes, without spaces or controls"),
        ));
    }
    Ok(())
}

fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 256
        && role.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*' | b'.' | b'!' | b'?')
        })
}

impl LoginServiceBuilder {
    /// The service name to serve as; default [`DEFAULT_LOGIN_SERVICE`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Also answer this retired public key from `publickeys`, so tokens it signed before a
    /// key rotation keep verifying until they expire. Drop it after the session lifetime.
    pub fn retired_key(mut self, key_id: impl Into<String>, public_key: [u8; 32]) -> Self {
        self.retired.push((key_id.into(), public_key));
        self
    }

    /// How long a session and its token last; default [`DEFAULT_SESSION_LIFETIME`]. Tokens
    /// are not renewed: when one expires, the user signs in again.
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = lifetime;
        self
    }

    /// How long a session asked for with `no_expire` lasts; default
    /// [`DEFAULT_LONG_SESSION_LIFETIME`]. "No expiry" is capped, never infinite, and users
    /// with an `ADMIN` role (`ADMIN` or `ADMIN.…`) get the normal
    /// [`session_lifetime`](Self::session_lifetime) whatever they ask (H2 never let ADMIN
    /// sessions live on).
    pub fn long_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.long_session_lifetime = lifetime;
        self
    }

    /// The failed-attempt policy per username; default [`AttemptPolicy::default`].
    pub fn attempts(mut self, policy: AttemptPolicy) -> Self {
        self.attempts = policy;
        self
    }

    /// How many live sessions are kept at most; default [`DEFAULT_MAX_SESSIONS`].
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = max;
        self
    }

    /// How many passwords are hashed at once at most; default [`DEFAULT_HASH_CONCURRENCY`].
    pub fn hash_concurrency(mut self, concurrency: usize) -> Self {
        self.hash_concurrency = concurrency;
        self
    }

    /// Checks the settings and builds the service (hashing the dummy password that unknown
    /// users are checked against).
    ///
    /// # Errors
    /// The [`BuildError`] naming the bad setting.
    pub fn build(self) -> Result<LoginService, BuildError> {
        for (name, duration) in [
            ("session_lifetime", self.session_lifetime),
            ("long_session_lifetime", self.long_session_lifetime),
            ("attempts.window", self.attempts.window),
            ("attempts.lockout", self.attempts.lockout),
        ] {
            if duration < Duration::from_secs(1) {
                return Err(BuildError::ZeroDuration(name));
            }
        }
        for (name, count) in [
            ("attempts.max_failures", self.attempts.max_failures as u64),
            ("attempts.max_tracked", self.attempts.max_tracked),
            ("max_sessions", self.max_sessions),
            ("hash_concurrency", self.hash_concurrency as u64),
        ] {
            if count == 0 {
                return Err(BuildError::Zero(name));
            }
        }
        let mut keyring = Keyring::new();
        for (key_id, public_key) in &self.retired {
            keyring
                .insert(key_id, *public_key)
                .map_err(|error| BuildError::InvalidKey {
                    key_id: key_id.clone(),
                    reason: error.to_string(),
                })?;
        }
        let passwords = PasswordChecker::new(self.hash_concurrency)
            .map_err(|error| BuildError::Hash(error.to_string()))?;
        Ok(LoginService {
            inner: Arc::new(Inner {
                name: self.name,
                store: self.store,
                signer: self.signer,
                retired: self.retired,
                sessions: SessionTable::new(self.max_sessions),
                limiter: AttemptLimiter::new(self.attempts),
                passwords,
                session_lifetime: self.session_lifetime,
                long_session_lifetime: self.long_session_lifetime,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryCredentialStore;

    fn builder() -> LoginServiceBuilder {
        LoginService::builder(
            MemoryCredentialStore::new(),
            TokenSigner::from_seed("k", &[3; 32]).unwrap(),
        )
    }

    #[test]
    fn settings_out_of_range_are_named() {
        assert_eq!(
            builder()
                .session_lifetime(Duration::ZERO)
                .build()
                .unwrap_err(),
            BuildError::ZeroDuration("session_lifetime")
        );
        assert_eq!(
            builder().max_sessions(0).build().unwrap_err(),
            BuildError::Zero("max_sessions")
        );
        assert!(matches!(
            builder()
                .retired_key("bad id", [0; 32])
                .build()
                .unwrap_err(),
            BuildError::InvalidKey { .. }
        ));
    }

    #[tokio::test]
    async fn users_are_validated_and_not_replaced_unless_asked() {
        let login = builder().build().unwrap();
        let ada = login.create_user("ada", "pw", ["ADMIN"]).await.unwrap();
        assert_eq!(
            login
                .create_user("ada", "pw", ["ADMIN"])
                .await
                .unwrap_err()
                .code(),
            codes::USER_EXISTS
        );
        let replaced = login
            .put_user("ada", "pw2", ["CUSTOMER"], true)
            .await
            .unwrap();
        assert_eq!(
            replaced.user_id, ada.user_id,
            "a replaced user keeps their id"
        );
        assert_ne!(replaced.password_hash, ada.password_hash);
        for (username, role, code) in [
            ("", "ADMIN", codes::BAD_USERNAME),
            ("a b", "ADMIN", codes::BAD_USERNAME),
            ("grace", "AD,MIN", codes::BAD_ROLE),
            ("grace", "", codes::BAD_ROLE),
        ] {
            let error = login.create_user(username, "pw", [role]).await.unwrap_err();
            assert_eq!(error.code(), code, "{username:?} {role:?}");
        }
    }
}
