//! [`CredentialStore`]: where users, their password hashes and roles live.

#[cfg(feature = "cassandra")]
mod cassandra;
mod memory;

use std::fmt;
use std::sync::Arc;

use kernel_errors::Error;

#[cfg(feature = "cassandra")]
pub use cassandra::{CassandraCredentialStore, CassandraCredentialStoreBuilder};
pub use memory::MemoryCredentialStore;

use crate::codes;

/// One user as the store keeps it. The password is only ever held as a PHC string
/// (`$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`), never in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// The user's id, the `id` claim of their tokens (stable across renames).
    pub user_id: String,
    /// The name the user signs in with.
    pub username: String,
    /// The password's Argon2 hash, as a PHC string.
    pub password_hash: String,
    /// The user's roles (H2's dotted roles, e.g. `ADMIN`, `CUSTOMER`).
    pub roles: Vec<String>,
}

impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("password_hash", &"***")
            .field("roles", &self.roles)
            .finish()
    }
}

/// A credential store failed. Transient as far as the store knows (a node down, a timeout):
/// the caller may try again. Converts into the platform [`Error`] (`InternalServerError`,
/// [`codes::STORE`]), so `?` works in a handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend refused or failed an operation.
    #[error("{backend} could not {operation}: {source}")]
    Backend {
        /// The engine (`cassandra`).
        backend: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setting cannot be used (e.g. a keyspace name that is not `[A-Za-z0-9_]{1,48}`).
    #[error("invalid store setting: {0}")]
    InvalidSetting(String),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::internal_server_error(codes::STORE, error.to_string())
    }
}

/// Where the login service finds users. Two primitives only: read one user by name, write one.
///
/// Implemented by [`MemoryCredentialStore`] (the in-process default: tests and laptops) and
/// `CassandraCredentialStore` (feature `cassandra`). Held as `Arc<dyn CredentialStore>`, hence
/// `async-trait`.
#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// The user called `username`, if there is one.
    ///
    /// # Errors
    /// [`StoreError`] if the backend cannot answer (never for a missing user).
    async fn get(&self, username: &str) -> Result<Option<StoredUser>, StoreError>;

    /// Creates or replaces the user `user.username`.
    ///
    /// # Errors
    /// [`StoreError`] if the backend cannot confirm the write.
    async fn put(&self, user: StoredUser) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<T: CredentialStore + ?Sized> CredentialStore for Arc<T> {
    async fn get(&self, username: &str) -> Result<Option<StoredUser>, StoreError> {
        (**self).get(username).await
    }

    async fn put(&self, user: StoredUser) -> Result<(), StoreError> {
        (**self).put(user).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_object_safe_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Arc<dyn CredentialStore>>();
        send_sync::<StoreError>();
        let _: Arc<dyn CredentialStore> = Arc::new(MemoryCredentialStore::new());
    }

    #[test]
    fn debug_hides_the_password_hash() {
        let user = StoredUser {
            user_id: "u1".into(),
            username: "ada".into(),
            password_hash: "$argon2id$secret".into(),
            roles: vec!["ADMIN".into()],
        };
        let shown = format!("{user:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("ada"), "{shown}");
    }
}
