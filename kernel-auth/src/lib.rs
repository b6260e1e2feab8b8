//! Auth: who is calling, and may they.
//!
//! `kernel-auth` sits on `kernel-client` (it asks the login service for sessions) and under
//! `kernel-server` (endpoints declare an [`Authoriser`]). The login service signs
//! [session tokens](token) with Ed25519; every service verifies them with the public keys of a
//! [`Keyring`], keeps verified sessions in a [`SessionCache`] (moka by default, with "known not
//! to exist" answers cached too), and checks roles with H2's matching ([`has_role`]).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod role;
pub mod token;

pub use role::has_role;
pub use token::{Claims, Keyring, TokenError, TokenSigner};

mod auth;
mod authoriser;
mod cache;
mod config;
mod rules;
mod scope;

pub use auth::{
    Auth, AuthBuilder, BAD_CREDENTIALS, Credentials, DEFAULT_LOGIN_SERVICE, DEFAULT_NEGATIVE_TTL,
    KEY_REFRESH_SPACING, SIGNED_OUT_TOPIC, SIGNED_OUT_TTL,
};
pub use authoriser::Authoriser;
pub use cache::{CacheError, Cached, DEFAULT_CACHE_CAPACITY, MemorySessionCache, SessionCache};
pub use config::AuthConfig;
pub use rules::{ServiceRule, ServiceRules};
pub use scope::{Scope, User};

/// Codes of the errors this crate raises.
pub mod codes {
    /// The endpoint needs a signed-in user (or a role, and nobody acts for the request).
    pub const NOT_SIGNED_IN: &str = "kernel.auth.notsignedin";
    /// The user (or the calling service) lacks every role the endpoint accepts.
    pub const BAD_ROLE: &str = "kernel.auth.badrole";
    /// Sign-in refused: wrong credentials.
    pub const BAD_CREDENTIALS: &str = "kernel.auth.badcredentials";
    /// The login service answered a token that does not verify.
    pub const BAD_TOKEN: &str = "kernel.auth.badtoken";
}
