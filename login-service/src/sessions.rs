//! The session table: live sessions in this process's memory.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kernel_auth::Claims;

/// One live session: its claims and the token signed for them.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) claims: Claims,
    pub(crate) token: String,
}

impl Session {
    fn remaining(&self, now: SystemTime) -> Duration {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Duration::from_secs(self.claims.expires.saturating_sub(now))
    }
}

/// Sessions by id, each dropped when its token expires; at most `capacity` of them (beyond
/// it the least useful are dropped: those users must sign in again).
#[derive(Clone, Debug)]
pub(crate) struct SessionTable {
    entries: moka::sync::Cache<String, Arc<Session>>,
}

/// Each entry lives until its token expires.
struct UntilExpiry;

impl moka::Expiry<String, Arc<Session>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        session: &Arc<Session>,
        _: Instant,
    ) -> Option<Duration> {
        Some(session.remaining(SystemTime::now()))
    }
}

impl SessionTable {
    pub(crate) fn new(capacity: u64) -> Self {
        SessionTable {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    pub(crate) fn insert(&self, session: Session) {
        self.entries
            .insert(session.claims.session_id.clone(), Arc::new(session));
    }

    /// The session `id`, if it is live (its token not expired).
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.entries
            .get(id)
            .filter(|session| !session.remaining(SystemTime::now()).is_zero())
    }

    /// Ends the session `id`; `true` if it was live.
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.entries
            .remove(id)
            .is_some_and(|session| !session.remaining(SystemTime::now()).is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, expires_in: i64) -> Session {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Session {
            claims: Claims {
                session_id: id.into(),
                mechanism: "h2".into(),
                device: "cli".into(),
                user_id: "u1".into(),
                created: now,
                expires: now.saturating_add_signed(expires_in),
                renew: None,
                roles: vec![],
            },
            token: format!("token-{id}"),
        }
    }

    #[test]
    fn live_sessions_are_found_until_removed_and_expired_ones_never() {
        let table = SessionTable::new(100);
        table.insert(session("live", 3600));
        table.insert(session("expired", -10));
        assert_eq!(table.get("live").unwrap().token, "token-live");
        assert!(table.get("expired").is_none());
        assert!(table.get("unknown").is_none());
        assert!(table.remove("live"));
        assert!(table.get("live").is_none());
        assert!(!table.remove("live"), "a second removal finds nothing");
    }
}
