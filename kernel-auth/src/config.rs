//! [`AuthConfig`]: the `[auth]` section of the kernel's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kernel_client::Client;
use kernel_errors::InvalidConfig;
use serde::{Deserialize, Serialize};

use crate::auth::{Auth, DEFAULT_LOGIN_SERVICE, DEFAULT_NEGATIVE_TTL};
use crate::rules::{ServiceRule, ServiceRules};
use crate::token::Keyring;

/// Sessions and service-to-service rules, as configuration: the `[auth]` section of
/// `kernel.toml` (`KERNEL_AUTH__<KEY>` in the environment).
///
/// ```toml
/// [auth]
/// login_service = "kernel.login"
/// negative_ttl_ms = 30000          # how long "no such session" is remembered
/// fetch_keys = true                # ask the login service's `publickeys` for unknown key ids
/// [auth.public_keys]               # key id = base64 of the 32-byte Ed25519 public key
/// "2026-12" = "…"
/// [[auth.rules]]                   # reloadable
/// caller = "com.example.billing"   # the calling service's broker user
/// service = "com.example.users"
/// endpoint = "get"                 # or "*"
/// role = "ADMIN.USERS.READ"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The login service to ask for sessions.
    pub login_service: String,
    /// How long "this session does not exist" is remembered.
    pub negative_ttl_ms: u64,
    /// Whether unknown key ids are looked up at the login service.
    pub fetch_keys: bool,
    /// Public keys, by key id: base64 (standard) of the 32-byte Ed25519 key.
    pub public_keys: BTreeMap<String, String>,
    /// Service-to-service rules.
    pub rules: Vec<ServiceRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            login_service: DEFAULT_LOGIN_SERVICE.to_owned(),
            negative_ttl_ms: u64::try_from(DEFAULT_NEGATIVE_TTL.as_millis()).unwrap_or(u64::MAX),
            fetch_keys: true,
            public_keys: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// The keyring the public keys make.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming a key that is not base64 of 32 bytes, or a bad key id.
    pub fn keyring(&self) -> Result<Keyring, InvalidConfig> {
        let mut keys = Keyring::new();
        for (key_id, encoded) in &self.public_keys {
            let invalid = || {
                InvalidConfig::new(
                    format!("public_keys.{key_id}"),
                    encoded,
                    "base64 of a 32-byte Ed25519 public key, under a key id of [A-Za-z0-9_-]",
                )
            };
            let bytes: [u8; 32] = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(invalid)?;
            keys.insert(key_id, bytes).map_err(|_| invalid())?;
        }
        Ok(keys)
    }

    /// The rules, as put in force.
    pub fn service_rules(&self) -> ServiceRules {
        ServiceRules::new(self.rules.iter().cloned())
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first key out of range (relative to `[auth]`).
    pub fn check(&self) -> Result<(), InvalidConfig> {
        if self.login_service.is_empty() {
            return Err(InvalidConfig::new("login_service", "", "a service name"));
        }
        self.keyring()?;
        for (n, rule) in self.rules.iter().enumerate() {
            if rule.caller.is_empty()
                || rule.service.is_empty()
                || rule.endpoint.is_empty()
                || rule.role.is_empty()
            {
                return Err(InvalidConfig::new(
                    format!("rules[{n}]"),
                    format!("{rule:?}"),
                    "a rule with caller, service, endpoint and role all set",
                ));
            }
        }
        Ok(())
    }

    /// An [`Auth`] calling the login service through `client`, with these settings.
    ///
    /// # Errors
    /// As for [`check`](Self::check).
    pub fn build(&self, client: &Client) -> Result<Auth, InvalidConfig> {
        self.check()?;
        let builder = Auth::builder(client)
            .login_service(self.login_service.clone())
            .negative_ttl(Duration::from_millis(self.negative_ttl_ms))
            .keys(self.keyring()?)
            .rules(self.service_rules())
            .instrumenter(std::sync::Arc::clone(client.instrumenter()));
        Ok(if self.fetch_keys {
            builder.build()
        } else {
            builder.fixed_keys().build()
        })
    }
}
