//! [`Auth`]: sessions recovered through the cache and the login service, verified locally.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use kernel_client::Client;
use kernel_errors::{Error, Kind};
use kernel_inst::{Instrumenter, NoopInstrumenter};
use kernel_proto::login::{
    AuthRequest, AuthResponse, DeleteSessionRequest, DeleteSessionResponse, PublicKeysRequest,
    PublicKeysResponse, ReadSessionRequest, ReadSessionResponse, SignedOut,
};

use crate::cache::{Cached, MemorySessionCache, SessionCache};
use crate::rules::ServiceRules;
use crate::scope::Scope;
use crate::token::{Claims, Keyring, TokenError};
use crate::{User, codes};

/// The login service's name unless told otherwise.
pub const DEFAULT_LOGIN_SERVICE: &str = "kernel.login";
/// How long "this session does not exist" is remembered unless told otherwise.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// How long a signed-out session is remembered as gone (H2's 3600 s).
pub const SIGNED_OUT_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the login service's public keys.
pub const KEY_REFRESH_SPACING: Duration = Duration::from_secs(10);
/// The topic the login service publishes ended sessions on.
pub const SIGNED_OUT_TOPIC: &str = "kernel.login.signedout";
/// The error code the login service answers wrong credentials with.
pub const BAD_CREDENTIALS: &str = "kernel.login.auth.badcredentials";

/// Sessions and who may call what, for one process: the session cache, the public keys tokens
/// are verified with, the login service to ask, and the service-to-service rules.
///
/// Cheap to clone; clones share everything. Build one per process with [`Auth::builder`] and
/// give it to each service (`ServiceBuilder::auth`); a request's [`Scope`] comes from it.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set once this process follows the login service's sign-outs.
    following: tokio::sync::OnceCell<()>,
    /// Users this process has verified, until their tokens expire: the fast path.
    verified: moka::sync::Cache<String, User>,
    cache: Arc<dyn SessionCache>,
    keys: RwLock<Keyring>,
    keys_fetched: Mutex<Option<Instant>>,
    fetch_keys: bool,
    client: Client,
    login_service: String,
    negative_ttl: Duration,
    rules: RwLock<Arc<ServiceRules>>,
    inst: Arc<dyn Instrumenter>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("login_service", &self.inner.login_service)
            .field("negative_ttl", &self.inner.negative_ttl)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Auth`]; see [`Auth::builder`].
#[must_use]
pub struct AuthBuilder {
    client: Client,
    cache: Arc<dyn SessionCache>,
    keys: Keyring,
    fetch_keys: bool,
    login_service: String,
    negative_ttl: Duration,
    rules: ServiceRules,
    inst: Arc<dyn Instrumenter>,
}

impl fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("login_service", &self.login_service)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Starts building: the login service is called through `client`.
    pub fn builder(client: &Client) -> AuthBuilder {
        AuthBuilder {
            client: client.clone(),
            cache: Arc::new(MemorySessionCache::default()),
            keys: Keyring::new(),
            fetch_keys: true,
            login_service: DEFAULT_LOGIN_SERVICE.to_owned(),
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            rules: ServiceRules::default(),
            inst: Arc::new(NoopInstrumenter),
        }
    }

    /// A scope for one request to `service`'s `endpoint`: no user yet, the verified identity
    /// of the calling service (if the transport knows it).
    pub fn scope(&self, service: &str, endpoint: &str, caller_service: Option<&str>) -> Scope {
        let rules = Arc::clone(
            &self
                .inner
                .rules
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        Scope::new(Some(self.clone()), rules, service, endpoint, caller_service)
    }

    /// Puts new service-to-service rules in force (a configuration reload).
    pub fn set_rules(&self, rules: ServiceRules) {
        *self
            .inner
            .rules
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
    }

    /// The service-to-service rules in force.
    pub fn rules(&self) -> Arc<ServiceRules> {
        Arc::clone(
            &self
                .inner
                .rules
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Verifies `token` with the known keys, fetching the login service's keys once if it
    /// names a key not known yet (at most every [`KEY_REFRESH_SPACING`]).
    ///
    /// # Errors
    /// The [`TokenError`] saying why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let verified = self.keyring().verify(token, SystemTime::now());
        match verified {
            Err(TokenError::UnknownKey(_)) if self.refresh_keys().await => {
                self.keyring().verify(token, SystemTime::now())
            }
            other => other,
        }
    }

    fn keyring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches the login service's public keys; `true` if new ones arrived.
    async fn refresh_keys(&self) -> bool {
        if !self.inner.fetch_keys {
            return false;
        }
        {
            let mut fetched = self
                .inner
                .keys_fetched
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if fetched.is_some_and(|at| at.elapsed() < KEY_REFRESH_SPACING) {
                return false;
            }
            *fetched = Some(Instant::now());
        }
        let answer: Result<PublicKeysResponse, Error> = self
            .inner
            .client
            .call(
                &self.inner.login_service,
                "publickeys",
                &PublicKeysRequest {},
            )
            .await;
        let keys = match answer {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%error, "could not fetch the login service's public keys");
                return false;
            }
        };
        let mut keyring = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = keyring.clone();
        for key in keys.keys {
            let Ok(bytes) = <[u8; 32]>::try_from(key.ed25519.as_slice()) else {
                tracing::warn!(key_id = %key.key_id, "a public key that is not 32 bytes: ignored");
                continue;
            };
            if let Err(error) = keyring.insert(&key.key_id, bytes) {
                tracing::warn!(%error, "a public key refused");
            }
        }
        *keyring != before
    }

    /// The user of session `session_id`: from the cache if it knows (a session known not to
    /// exist is answered without asking anyone), else from the login service, whose answer is
    /// verified and cached until the token expires (or, for a missing session, for the
    /// negative TTL).
    ///
    /// # Errors
    /// The login service's error, other than `NotFound` (which means no user).
    pub async fn recover(&self, session_id: &str) -> Result<Option<User>, Error> {
        if session_id.is_empty() {
            return Ok(None);
        }
        let inst = self.inner.inst.as_ref();
        if let Some(user) = self.inner.verified.get(session_id) {
            inst.counter("auth.cache.fetch.hit", 1, 1.0);
            return Ok(Some(user));
        }
        let started = Instant::now();
        let cached = self.inner.cache.get(session_id).await;
        inst.timing(
            if cached.is_ok() {
                "auth.cache.fetch.success"
            } else {
                "auth.cache.fetch.failure"
            },
            started.elapsed(),
            1.0,
        );
        match cached {
            Ok(Some(Cached::Missing)) => {
                inst.counter("auth.cache.fetch.hit", 1, 1.0);
                return Ok(None);
            }
            Ok(Some(Cached::Token(token))) => match self.verify(&token).await {
                Ok(claims) => {
                    inst.counter("auth.cache.fetch.hit", 1, 1.0);
                    let user = User::new(claims, token);
                    self.inner
                        .verified
                        .insert(session_id.to_owned(), user.clone());
                    return Ok(Some(user));
                }
                // Expired (perhaps renewable) or no longer verifiable: ask again.
                Err(error) => tracing::debug!(%error, "cached token refused"),
            },
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "session cache failed: asking the login service"),
        }
        inst.counter("auth.cache.fetch.miss", 1, 1.0);
        let started = Instant::now();
        let recovered = self.read_session(session_id).await;
        let bucket = match &recovered {
            Ok(Some(_)) => {
                inst.counter("auth.recoverSession.recovered", 1, 0.01);
                "auth.recoverSession.success"
            }
            Ok(None) => {
                inst.counter("auth.recoverSession.badCredentials", 1, 1.0);
                "auth.recoverSession.success"
            }
            Err(_) => "auth.recoverSession.failure",
        };
        inst.timing(bucket, started.elapsed(), 1.0);
        recovered
    }

    async fn read_session(&self, session_id: &str) -> Result<Option<User>, Error> {
        let request = ReadSessionRequest {
            session_id: session_id.to_owned(),
            no_renew: false,
        };
        let answer: Result<ReadSessionResponse, Error> = self
            .inner
            .client
            .call(&self.inner.login_service, "readsession", &request)
            .await;
        let session = match answer {
            Ok(session) if !session.token.is_empty() => session,
            Ok(_) => return self.missing(session_id).await,
            Err(error) if error.kind() == Kind::NotFound => return self.missing(session_id).await,
            Err(error) => return Err(error),
        };
        match self.verify(&session.token).await {
            Ok(claims) if claims.session_id == session_id => {
                self.remember(&claims, &session.token).await;
                Ok(Some(User::new(claims, session.token)))
            }
            Ok(_) => {
                tracing::warn!("the login service answered a token for another session");
                self.missing(session_id).await
            }
            Err(error) => {
                tracing::warn!(%error, "the login service's token does not verify");
                self.missing(session_id).await
            }
        }
    }

    /// Remembers that `session_id` does not exist, for the negative TTL.
    async fn missing(&self, session_id: &str) -> Result<Option<User>, Error> {
        self.store(session_id, Cached::Missing, self.inner.negative_ttl)
            .await;
        Ok(None)
    }

    async fn remember(&self, claims: &Claims, token: &str) {
        self.inner.verified.insert(
            claims.session_id.clone(),
            User::new(claims.clone(), token.to_owned()),
        );
        let ttl = claims
            .expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        self.store(&claims.session_id, Cached::Token(token.to_owned()), ttl)
            .await;
    }

    async fn store(&self, session_id: &str, entry: Cached, ttl: Duration) {
        let started = Instant::now();
        let stored = self.inner.cache.put(session_id, entry, ttl).await;
        let bucket = match &stored {
            Ok(()) => "auth.cache.store.success",
            Err(error) => {
                tracing::warn!(%error, "could not cache a session");
                "auth.cache.store.failure"
            }
        };
        self.inner.inst.timing(bucket, started.elapsed(), 1.0);
    }

    /// Signs in with the login service (one attempt: credentials are not retried).
    ///
    /// # Errors
    /// `Unauthorized` [`codes::BAD_CREDENTIALS`] for wrong credentials; the login service's
    /// error otherwise, or `InternalServerError` [`codes::BAD_TOKEN`] if its token does not
    /// verify.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<User, Error> {
        let inst = self.inner.inst.as_ref();
        let started = Instant::now();
        let request = AuthRequest {
            mech: credentials.mechanism.clone(),
            device_type: credentials.device.clone(),
            username: credentials.username.clone(),
            password: credentials.password.clone(),
            application: credentials.application.clone(),
            no_expire: false,
            meta: credentials.meta.clone().into_iter().collect(),
        };
        let answer: Result<AuthResponse, Error> = self
            .inner
            .client
            .call(&self.inner.login_service, "auth", &request)
            .attempts(1)
            .await;
        let outcome = match answer {
            Ok(session) => match self.verify(&session.token).await {
                Ok(claims) => {
                    self.remember(&claims, &session.token).await;
                    inst.counter("auth.authenticate.recovered", 1, 0.01);
                    Ok(User::new(claims, session.token))
                }
                Err(error) => Err(Error::internal_server_error(
                    codes::BAD_TOKEN,
                    format!("the login service's token does not verify: {error}"),
                )),
            },
            Err(error) if error.code() == BAD_CREDENTIALS => {
                inst.counter("auth.authenticate.badCredentials", 1, 1.0);
                Err(Error::unauthorized(
                    codes::BAD_CREDENTIALS,
                    "bad credentials",
                ))
            }
            Err(error) => Err(error),
        };
        let bucket = if outcome.is_ok() {
            "auth.auth.success"
        } else {
            "auth.auth.failure"
        };
        inst.timing(bucket, started.elapsed(), 1.0);
        outcome
    }

    /// Ends session `session_id` at the login service, and remembers it as gone here.
    ///
    /// # Errors
    /// The login service's error.
    pub async fn sign_out(&self, session_id: &str) -> Result<(), Error> {
        let request = DeleteSessionRequest {
            session_id: session_id.to_owned(),
        };
        let _: DeleteSessionResponse = self
            .inner
            .client
            .call(&self.inner.login_service, "deletesession", &request)
            .await?;
        self.invalidate(session_id).await;
        Ok(())
    }

    /// Follows the login service's [`SIGNED_OUT_TOPIC`]: a session ended anywhere is dropped
    /// from this process's caches at once, rather than when its token expires. Idempotent;
    /// the listening task ends with the last clone of this `Auth`. A service with an `Auth`
    /// calls it when it starts serving.
    ///
    /// Anyone who can publish on the topic can end sessions here (make their owners sign in
    /// again), not grant anything.
    ///
    /// # Errors
    /// As for consuming a subscription.
    pub async fn follow_sign_outs(&self) -> Result<(), Error> {
        self.inner
            .following
            .get_or_try_init(|| async {
                let queue = format!("kernel.auth.{}", uuid::Uuid::new_v4().simple());
                let mut deliveries = self
                    .inner
                    .client
                    .transport()
                    .consume(kernel_transport::Source::Subscription {
                        service: &queue,
                        topic: SIGNED_OUT_TOPIC,
                        capacity: 64,
                    })
                    .await?;
                let weak = Arc::downgrade(&self.inner);
                tokio::spawn(async move {
                    while let Some(delivery) = deliveries.next().await {
                        let (envelope, acker) = delivery.into_parts();
                        let Some(inner) = weak.upgrade() else { break };
                        let auth = Auth { inner };
                        match kernel_transport::codec::decode::<SignedOut>(
                            envelope.content_type,
                            &envelope.payload,
                        ) {
                            Ok(ended) if !ended.session_id.is_empty() => {
                                auth.invalidate(&ended.session_id).await;
                            }
                            _ => tracing::debug!("an unreadable sign-out dropped"),
                        }
                        if let Err(error) = acker.ack().await {
                            tracing::debug!(%error, "could not ack a sign-out");
                        }
                    }
                });
                Ok::<(), Error>(())
            })
            .await
            .map(|_| ())
    }

    /// Remembers session `session_id` as gone (signed out elsewhere) for [`SIGNED_OUT_TTL`].
    pub async fn invalidate(&self, session_id: &str) {
        self.inner.verified.invalidate(session_id);
        let started = Instant::now();
        let stored = self
            .inner
            .cache
            .put(session_id, Cached::Missing, SIGNED_OUT_TTL)
            .await;
        let bucket = if stored.is_ok() {
            "auth.cache.invalidate.success"
        } else {
            "auth.cache.invalidate.failure"
        };
        self.inner.inst.timing(bucket, started.elapsed(), 1.0);
    }
}

/// What a user signs in with.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// The mechanism, e.g. `h2` (username and password).
    pub mechanism: String,
    /// The kind of device, e.g. `cli`.
    pub device: String,
    /// The user's name.
    pub username: String,
    /// The password.
    pub password: String,
    /// The application the user belongs to, if any.
    pub application: String,
    /// Other attributes recorded with the session.
    pub meta: BTreeMap<String, String>,
}

impl Credentials {
    /// A username and password for the `h2` mechanism on device `device`.
    pub fn password(
        device: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Credentials {
            mechanism: "h2".to_owned(),
            device: device.into(),
            username: username.into(),
            password: password.into(),
            ..Credentials::default()
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("device", &self.device)
            .field("username", &self.username)
            .field("password", &"***")
            .field("application", &self.application)
            .finish_non_exhaustive()
    }
}

impl AuthBuilder {
    /// The login service to call; default [`DEFAULT_LOGIN_SERVICE`].
    pub fn login_service(mut self, name: impl Into<String>) -> Self {
        self.login_service = name.into();
        self
    }

    /// Where sessions are cached; default a [`MemorySessionCache`].
    pub fn cache(mut self, cache: impl SessionCache) -> Self {
        self.cache = Arc::new(cache);
        self
    }

    /// The public keys tokens are verified with (e.g. from configuration). The login service's
    /// `publickeys` are fetched too, when a token names a key not known yet, unless
    /// [`fixed_keys`](Self::fixed_keys).
    pub fn keys(mut self, keys: Keyring) -> Self {
        self.keys = keys;
        self
    }

    /// Never fetch keys from the login service: only the configured ones verify.
    pub fn fixed_keys(mut self) -> Self {
        self.fetch_keys = false;
        self
    }

    /// How long "this session does not exist" is remembered; default
    /// [`DEFAULT_NEGATIVE_TTL`].
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The service-to-service rules; default none.
    pub fn rules(mut self, rules: ServiceRules) -> Self {
        self.rules = rules;
        self
    }

    /// Where the `auth.*` metrics go; default nowhere.
    pub fn instrumenter(mut self, inst: Arc<dyn Instrumenter>) -> Self {
        self.inst = inst;
        self
    }

    /// Builds it.
    pub fn build(self) -> Auth {
        Auth {
            inner: Arc::new(Inner {
                following: tokio::sync::OnceCell::new(),
                verified: moka::sync::Cache::builder()
                    .max_capacity(crate::DEFAULT_CACHE_CAPACITY)
                    .expire_after(UntilTokenExpiry)
                    .build(),
                cache: self.cache,
                keys: RwLock::new(self.keys),
                keys_fetched: Mutex::new(None),
                fetch_keys: self.fetch_keys,
                client: self.client,
                login_service: self.login_service,
                negative_ttl: self.negative_ttl,
                rules: RwLock::new(Arc::new(self.rules)),
                inst: self.inst,
            }),
        }
    }
}

/// A verified user is kept until their token expires.
struct UntilTokenExpiry;

impl moka::Expiry<String, User> for UntilTokenExpiry {
    fn expire_after_create(&self, _: &String, user: &User, _: Instant) -> Option<Duration> {
        Some(
            user.expires_at()
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }
}
