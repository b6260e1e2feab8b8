//! [`MemoryCredentialStore`]: users in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::{CredentialStore, StoreError, StoredUser};

/// Users in a map in this process: the default for tests and laptops. Forgets everything
/// when the process ends. Cheap to clone; clones share the users.
#[derive(Clone, Debug, Default)]
pub struct MemoryCredentialStore {
    users: Arc<RwLock<HashMap<String, StoredUser>>>,
}

impl MemoryCredentialStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl CredentialStore for MemoryCredentialStore {
    async fn get(&self, username: &str) -> Result<Option<StoredUser>, StoreError> {
        let users = self.users.read().unwrap_or_else(PoisonError::into_inner);
        Ok(users.get(username).cloned())
    }

    async fn put(&self, user: StoredUser) -> Result<(), StoreError> {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        users.insert(user.username.clone(), user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_put_is_got_back_and_replaced_by_name() {
        let store = MemoryCredentialStore::new();
        assert_eq!(store.get("ada").await.unwrap(), None);
        let mut ada = StoredUser {
            user_id: "u1".into(),
            username: "ada".into(),
            password_hash: "$argon2id$x".into(),
            roles: vec!["CUSTOMER".into()],
        };
        store.put(ada.clone()).await.unwrap();
        assert_eq!(store.get("ada").await.unwrap(), Some(ada.clone()));
        ada.roles.push("ADMIN".into());
        store.clone().put(ada.clone()).await.unwrap();
        assert_eq!(store.get("ada").await.unwrap(), Some(ada));
        assert_eq!(store.get("Ada").await.unwrap(), None, "names are exact");
    }
}
