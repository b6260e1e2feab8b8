//! Session tokens: what the login service signs and every service verifies.
//!
//! # Format (v1)
//!
//! ```text
//! v1.<key id>.<claims>.<signature>
//! ```
//!
//! * `<key id>`: the signing key's id, 1 to 64 characters of `[A-Za-z0-9_-]`;
//! * `<claims>`: base64url (no padding) of a JSON object:
//!   `{"sid":"…","am":"h2","d":"cli","id":"…","ct":1764…,"et":1764…,"rt":1764…,"r":["ADMIN"]}`
//!   — session id, mechanism, device, user id, created, expiry and renew times (Unix seconds;
//!   `rt` optional), roles;
//! * `<signature>`: base64url (no padding) of the Ed25519 signature of the ASCII bytes
//!   `v1.<key id>.<claims>`.
//!
//! A verifier picks the public key by its id, so keys rotate without downtime: publish the new
//! key, start signing with it, drop the old one once its tokens have expired. The token is at
//! most [`MAX_TOKEN_LEN`] bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;
/// How far a token's creation time may be in the future (clock skew between machines).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

const VERSION: &str = "v1";

/// Why a token was refused. Each is distinct, so that logs and metrics say which.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a v1 token: wrong shape, bad base64, bad JSON, a missing claim, too long.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not match: the token was altered, or signed by another key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Signed by a key this service does not know (not published yet, or withdrawn).
    #[error("the token is signed by an unknown key {0:?}")]
    UnknownKey(String),
    /// Past its expiry.
    #[error("the token expired")]
    Expired,
    /// Created in the future (beyond [`CLOCK_SKEW`]).
    #[error("the token is not valid yet")]
    NotYetValid,
}

/// What a token says about a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The session's id.
    #[serde(rename = "sid")]
    pub session_id: String,
    /// The mechanism the user signed in with (e.g. `h2`).
    #[serde(rename = "am")]
    pub mechanism: String,
    /// The kind of device (e.g. `cli`, `web`).
    #[serde(rename = "d")]
    pub device: String,
    /// The user's id.
    #[serde(rename = "id")]
    pub user_id: String,
    /// When the session was created, Unix seconds.
    #[serde(rename = "ct")]
    pub created: u64,
    /// When the token stops being valid, Unix seconds.
    #[serde(rename = "et")]
    pub expires: u64,
    /// When the session may be renewed, Unix seconds; none if it may not.
    #[serde(rename = "rt", default, skip_serializing_if = "Option::is_none")]
    pub renew: Option<u64>,
    /// The user's roles.
    #[serde(rename = "r", default)]
    pub roles: Vec<String>,
}

impl Claims {
    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.expires)
    }
}

/// A key that signs tokens (the login service holds it).
#[derive(Clone)]
pub struct TokenSigner {
    key_id: String,
    key: SigningKey,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer with a fresh random key.
    ///
    /// # Errors
    /// [`TokenError::Malformed`] if `key_id` is not 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub fn generate(key_id: impl Into<String>) -> Result<Self, TokenError> {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(key_id, &seed)
    }

    /// A signer from a 32-byte Ed25519 seed (the secret key), e.g. read from a secret store.
    ///
    /// # Errors
    /// As for [`generate`](Self::generate).
    pub fn from_seed(key_id: impl Into<String>, seed: &[u8; 32]) -> Result<Self, TokenError> {
        let key_id = key_id.into();
        check_key_id(&key_id)?;
        Ok(TokenSigner {
            key_id,
            key: SigningKey::from_bytes(seed),
        })
    }

    /// The id verifiers know this key by.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, for verifiers.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        // Claims are plain strings and numbers: serialising them cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}.{}", self.key_id, URL_SAFE_NO_PAD.encode(json));
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// The public keys a service verifies tokens with, by key id.
///
/// ```
/// use std::time::{SystemTime, UNIX_EPOCH};
/// use kernel_auth::{Claims, Keyring, TokenError, TokenSigner};
///
/// let signer = TokenSigner::generate("2026-12")?;
/// let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
/// let claims = Claims {
///     session_id: "s-1".into(), mechanism: "h2".into(), device: "cli".into(),
///     user_id: "ada".into(), created: now, expires: now + 3600, renew: None,
///     roles: vec!["ADMIN".into()],
/// };
/// let token = signer.sign(&claims);
///
/// let mut keys = Keyring::new();
/// keys.insert(signer.key_id(), signer.public_key())?;
/// assert_eq!(keys.verify(&token, SystemTime::now())?, claims);
///
/// // Another key under the same id does not verify.
/// let impostor = TokenSigner::generate("2026-12")?;
/// assert_eq!(keys.verify(&impostor.sign(&claims), SystemTime::now()), Err(TokenError::BadSignature));
/// # Ok::<(), TokenError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Keyring {
    /// No keys: every token is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the public key `key_id`.
    ///
    /// # Errors
    /// [`TokenError::Malformed`] for a bad key id or bytes that are not an Ed25519 public key.
    pub fn insert(&mut self, key_id: &str, public_key: [u8; 32]) -> Result<(), TokenError> {
        check_key_id(key_id)?;
        let key = VerifyingKey::from_bytes(&public_key)
            .map_err(|_| TokenError::Malformed("not an Ed25519 public key"))?;
        self.keys.insert(key_id.to_owned(), key);
        Ok(())
    }

    /// Removes the key `key_id` (tokens it signed are refused from now on).
    pub fn remove(&mut self, key_id: &str) {
        self.keys.remove(key_id);
    }

    /// The key ids known.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The claims of `token` if it is well formed, signed by a known key, created no later
    /// than `now` plus [`CLOCK_SKEW`], and not expired at `now`.
    ///
    /// # Errors
    /// The [`TokenError`] saying why not. Never panics, whatever `token` holds.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or(TokenError::Malformed("no signature"))?;
        let mut parts = signed.splitn(3, '.');
        let (version, key_id, claims) = match (parts.next(), parts.next(), parts.next()) {
            (Some(version), Some(key_id), Some(claims)) => (version, key_id, claims),
            _ => {
                return Err(TokenError::Malformed(
                    "not v1.<key id>.<claims>.<signature>",
                ));
            }
        };
        if version != VERSION {
            return Err(TokenError::Malformed("not a v1 token"));
        }
        check_key_id(key_id)?;
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| TokenError::UnknownKey(key_id.to_owned()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(TokenError::Malformed(
                "the signature is not base64url Ed25519",
            ))?;
        key.verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| TokenError::Malformed("the claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|_| TokenError::Malformed("the claims are not the v1 JSON object"))?;
        if claims.session_id.is_empty()
            || claims.mechanism.is_empty()
            || claims.device.is_empty()
            || claims.user_id.is_empty()
        {
            return Err(TokenError::Malformed("a required claim is empty"));
        }
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if claims.created > now_secs.saturating_add(CLOCK_SKEW.as_secs()) {
            return Err(TokenError::NotYetValid);
        }
        if claims.expires <= now_secs {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn check_key_id(key_id: &str) -> Result<(), TokenError> {
    let valid = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_LEN
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(TokenError::Malformed(
            "the key id is not 1 to 64 of [A-Za-z0-9_-]",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims() -> Claims {
        Claims {
            session_id: "s-1".into(),
            mechanism: "h2".into(),
            device: "cli".into(),
            user_id: "ada".into(),
            created: 1_000,
            expires: 2_000,
            renew: Some(1_500),
            roles: vec!["ADMIN".into(), "CUSTOMER".into()],
        }
    }

    fn keyring(signer: &TokenSigner) -> Keyring {
        let mut keys = Keyring::new();
        keys.insert(signer.key_id(), signer.public_key()).unwrap();
        keys
    }

    #[test]
    fn a_token_round_trips_and_each_refusal_is_distinct() {
        let signer = TokenSigner::from_seed("k1", &[7; 32]).unwrap();
        let keys = keyring(&signer);
        let token = signer.sign(&claims());
        assert_eq!(keys.verify(&token, at(1_200)), Ok(claims()));
        assert_eq!(keys.verify(&token, at(2_000)), Err(TokenError::Expired));
        assert_eq!(
            keys.verify(&token, at(950)),
            Ok(claims()),
            "within the skew"
        );
        assert_eq!(keys.verify(&token, at(500)), Err(TokenError::NotYetValid));

        let other = TokenSigner::from_seed("k2", &[8; 32]).unwrap();
        assert_eq!(
            keys.verify(&other.sign(&claims()), at(1_200)),
            Err(TokenError::UnknownKey("k2".into()))
        );
        // Signed by another key under a known id: tampered.
        let impostor = TokenSigner::from_seed("k1", &[9; 32]).unwrap();
        assert_eq!(
            keys.verify(&impostor.sign(&claims()), at(1_200)),
            Err(TokenError::BadSignature)
        );
        let mut admin = claims();
        admin.user_id = "mallory".into();
        let (_, forged_claims, _) = split(&signer.sign(&admin));
        let (head, _, signature) = split(&token);
        let forged = format!("{head}.{forged_claims}.{signature}");
        assert_eq!(
            keys.verify(&forged, at(1_200)),
            Err(TokenError::BadSignature)
        );
        for malformed in [
            "",
            "v1",
            "v1.k1.e30",
            "v2.k1.e30.AAAA",
            "v1.k1.%%%.AAAA",
            "v1..e30.AAAA",
        ] {
            assert!(
                matches!(
                    keys.verify(malformed, at(1_200)),
                    Err(TokenError::Malformed(_))
                ),
                "{malformed}"
            );
        }
    }

    fn split(token: &str) -> (String, String, String) {
        let parts: Vec<&str> = token.split('.').collect();
        (
            format!("{}.{}", parts[0], parts[1]),
            parts[2].to_owned(),
            parts[3].to_owned(),
        )
    }

    #[test]
    fn keys_rotate_without_downtime() {
        let old = TokenSigner::from_seed("2026-11", &[1; 32]).unwrap();
        let new = TokenSigner::from_seed("2026-12", &[2; 32]).unwrap();
        let mut keys = keyring(&old);
        keys.insert(new.key_id(), new.public_key()).unwrap();
        let (old_token, new_token) = (old.sign(&claims()), new.sign(&claims()));
        assert!(keys.verify(&old_token, at(1_200)).is_ok());
        assert!(keys.verify(&new_token, at(1_200)).is_ok());
        keys.remove("2026-11");
        assert_eq!(
            keys.verify(&old_token, at(1_200)),
            Err(TokenError::UnknownKey("2026-11".into()))
        );
        assert!(keys.verify(&new_token, at(1_200)).is_ok());
    }
}
