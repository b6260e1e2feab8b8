//! The login service: checks passwords, opens sessions and signs their tokens.
//!
//! `kernel-login` is the service `kernel-auth`'s [`Auth`](kernel_auth::Auth) calls
//! (`kernel.login`): `auth` turns a username and password into a session and an Ed25519-signed
//! token, `readsession` answers a session's token, `deletesession` ends a session and publishes
//! `SignedOut` on `kernel.login.signedout`, and `publickeys` answers the keys tokens are
//! verified with. Users live behind the [`CredentialStore`] seam: [`MemoryCredentialStore`]
//! (tests, laptops) or `CassandraCredentialStore` (feature `cassandra`). Passwords are kept as
//! Argon2id PHC strings ([`hash_password`]). The crate's binary, `kernel-login`, serves it and
//! adds users (see the README).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kernel_errors::Error> {
//! use kernel_auth::{Auth, Credentials, TokenSigner};
//! use kernel_client::Client;
//! use kernel_errors::Kind;
//! use kernel_login::{LoginService, MemoryCredentialStore};
//! use kernel_transport::InProcessTransport;
//!
//! let client = Client::new(InProcessTransport::new());
//! let login = LoginService::builder(MemoryCredentialStore::new(), TokenSigner::generate("dev").expect("a valid key id")).build()?;
//! login.create_user("ada", "correct horse", ["CUSTOMER"]).await?;
//! tokio::spawn(login.service(&client).build()?.serve());
//! # tokio::task::yield_now().await;
//!
//! let auth = Auth::builder(&client).build();
//! let ada = auth.authenticate(&Credentials::password("cli", "ada", "correct horse")).await?;
//! assert_eq!(auth.recover(ada.session_id()).await?.map(|user| user.id().to_owned()), Some(ada.id().to_owned()));
//! let wrong = auth.authenticate(&Credentials::password("cli", "ada", "battery staple")).await;
//! assert_eq!(wrong.unwrap_err().kind(), Kind::Unauthorized);
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! | endpoint | answers | errors |
//! |---|---|---|
//! | `auth` | `{session_id, token}` | `Unauthorized` [`codes::BAD_CREDENTIALS`], `Forbidden` [`codes::TOO_MANY_ATTEMPTS`], `BadRequest` [`codes::BAD_MECHANISM`] / [`codes::BAD_AUTH_REQUEST`] |
//! | `readsession` | `{session_id, token}` | `NotFound` [`codes::SESSION_NOT_FOUND`] |
//! | `deletesession` | `{}` (also for a session already gone) | `BadRequest` [`codes::BAD_SESSION_ID`] |
//! | `publickeys` | the signing key and the retired keys | — |
//!
//! A failing credential store answers `InternalServerError` [`codes::STORE`].
//!
//! # Known limits
//!
//! Sessions live in the login service's memory ([`DEFAULT_MAX_SESSIONS`] at most, each
//! dropped when its token expires): run **one instance**. A restart ends every session (the
//! tokens services have cached stay valid until they expire), and a second instance would not
//! know the first one's sessions. Tokens are not renewed.
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `cassandra` | `CassandraCredentialStore` | yes |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod handlers;
mod keys;
mod limiter;
mod password;
mod service;
mod sessions;
mod store;

pub use keys::{retired_key_from_str, signer_from_base64};
pub use limiter::AttemptPolicy;
pub use password::{MAX_PASSWORD_LEN, hash_password};
pub use service::{
    BuildError, DEFAULT_HASH_CONCURRENCY, DEFAULT_LONG_SESSION_LIFETIME, DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSION_LIFETIME, LoginService, LoginServiceBuilder, MAX_SESSION_ID_LEN,
    MAX_USERNAME_LEN,
};
#[cfg(feature = "cassandra")]
#[cfg_attr(docsrs, doc(cfg(feature = "cassandra")))]
pub use store::{CassandraCredentialStore, CassandraCredentialStoreBuilder};
pub use store::{CredentialStore, MemoryCredentialStore, StoreError, StoredUser};

/// The Cassandra driver, re-exported so that versions match (for
/// [`CassandraCredentialStoreBuilder::consistency`] and `session_builder`).
#[cfg(feature = "cassandra")]
#[cfg_attr(docsrs, doc(cfg(feature = "cassandra")))]
pub use scylla;

/// Codes of the errors this crate raises.
pub mod codes {
    /// `auth`: wrong username or password (the same for both). `Unauthorized`; `kernel-auth`
    /// maps it to `kernel.auth.badcredentials`.
    pub const BAD_CREDENTIALS: &str = kernel_auth::BAD_CREDENTIALS;
    /// `auth`: too many failed attempts for this username; wait for the lockout to end.
    /// `Forbidden` (not `Overloaded`: clients must not retry it elsewhere).
    pub const TOO_MANY_ATTEMPTS: &str = "kernel.login.auth.toomanyattempts";
    /// `auth`: a mechanism other than `h2` (username and password). `BadRequest`.
    pub const BAD_MECHANISM: &str = "kernel.login.auth.badmechanism";
    /// `auth`: no device type, or a longer one than 64 bytes. `BadRequest`.
    pub const BAD_AUTH_REQUEST: &str = "kernel.login.auth.badrequest";
    /// `readsession`: no such session, or it ended or expired. `NotFound`.
    pub const SESSION_NOT_FOUND: &str = "kernel.login.readsession.notfound";
    /// `deletesession`: an empty or over-long session id. `BadRequest`.
    pub const BAD_SESSION_ID: &str = "kernel.login.deletesession.badsessionid";
    /// Creating a user: the username is empty, too long, or has spaces. `BadRequest`.
    pub const BAD_USERNAME: &str = "kernel.login.user.badusername";
    /// Creating a user: the password is empty or too long. `BadRequest`.
    pub const BAD_PASSWORD: &str = "kernel.login.user.badpassword";
    /// Creating a user: a role is empty or has characters roles cannot have. `BadRequest`.
    pub const BAD_ROLE: &str = "kernel.login.user.badrole";
    /// Creating a user that exists. `Conflict`.
    pub const USER_EXISTS: &str = "kernel.login.user.exists";
    /// The credential store failed. `InternalServerError`; transient as far as we know.
    pub const STORE: &str = "kernel.login.store";
    /// Hashing a password failed. `InternalServerError`.
    pub const HASH: &str = "kernel.login.hash";
    /// The signing key from configuration is unusable. `InternalServerError`.
    pub const BAD_KEY: &str = "kernel.login.badkey";
    /// A [`LoginServiceBuilder`](crate::LoginServiceBuilder) setting is out of range.
    pub const INVALID_SETTINGS: &str = "kernel.login.invalidsettings";
}
