//! Password hashes: Argon2id with the `argon2` crate's default parameters, as PHC strings.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use kernel_errors::Error;
use tokio::sync::Semaphore;

use crate::codes;

/// The longest password accepted, in bytes; longer ones are refused as bad credentials
/// without being hashed.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of `password`, with a
/// fresh 16-byte random salt and the `argon2` crate's default parameters (Argon2id, 19 MiB,
/// two passes, one lane: OWASP's recommendation). CPU- and memory-heavy by design: call it
/// off the async threads (the login service does).
///
/// # Errors
/// `BadRequest` [`codes::BAD_PASSWORD`] for an empty password or one longer than
/// [`MAX_PASSWORD_LEN`].
pub fn hash_password(password: &str) -> Result<String, Error> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::bad_request(
            codes::BAD_PASSWORD,
            format!("a password is 1 to {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| Error::internal_server_error(codes::HASH, error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::internal_server_error(codes::HASH, error.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A hash that does not parse never
/// matches (and is logged: the store holds something that is not a password hash).
fn matches(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(error) => {
            tracing::warn!(%error, "a stored password hash does not parse: sign-in refused");
            false
        }
    }
}

/// Checks passwords on the blocking pool, a few at a time, so that a burst of sign-ins
/// cannot take every core or `burst × 19 MiB` of memory; and checks unknown users against a
/// dummy hash, so that they cost the same time as a wrong password.
#[derive(Clone, Debug)]
pub(crate) struct PasswordChecker {
    slots: Arc<Semaphore>,
    dummy: Arc<str>,
}

impl PasswordChecker {
    /// A checker running at most `concurrency` hashes at once.
    pub(crate) fn new(concurrency: usize) -> Result<Self, Error> {
        let dummy = hash_password("not the password of anyone: a dummy to spend the time")?;
        Ok(PasswordChecker {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: dummy.into(),
        })
    }

    /// Whether `password` matches `hash`; with no hash (no such user), spends the time of a
    /// check against the dummy and answers `false`.
    pub(crate) async fn check(&self, password: &str, hash: Option<&str>) -> Result<bool, Error> {
        let _slot = self.slots.acquire().await.map_err(|_| {
            Error::internal_server_error(codes::HASH, "the password checker is closed")
        })?;
        let password = password.to_owned();
        let (hash, known) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.dummy.to_string(), false),
        };
        let matched = tokio::task::spawn_blocking(move || matches(&password, &hash))
            .await
            .map_err(|error| Error::internal_server_error(codes::HASH, error.to_string()))?;
        Ok(known && matched)
    }

    /// Hashes `password` on the blocking pool; see [`hash_password`].
    pub(crate) async fn hash(&self, password: &str) -> Result<String, Error> {
        let _slot = self.slots.acquire().await.map_err(|_| {
            Error::internal_server_error(codes::HASH, "the password checker is closed")
        })?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|error| Error::internal_server_error(codes::HASH, error.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_salted_and_checks_only_its_password() {
        let checker = PasswordChecker::new(2).unwrap();
        let hash = checker.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(checker.check("correct horse", Some(&hash)).await.unwrap());
        assert!(!checker.check("wrong horse", Some(&hash)).await.unwrap());
        assert!(
            !checker
                .check("correct horse", Some("not a phc string"))
                .await
                .unwrap()
        );
        // The dummy: nobody's password matches, not even the dummy's own.
        assert!(
            !checker
                .check(
                    "not the password of anyone: a dummy to spend the time",
                    None
                )
                .await
                .unwrap()
        );
    }

    #[test]
    fn empty_and_huge_passwords_are_refused() {
        for password in [String::new(), "x".repeat(MAX_PASSWORD_LEN + 1)] {
            let error = hash_password(&password).unwrap_err();
            assert_eq!(error.code(), codes::BAD_PASSWORD);
        }
    }
}
