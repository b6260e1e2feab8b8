//! [`CassandraCredentialStore`]: users in a Cassandra table.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;

use super::{CredentialStore, StoreError, StoredUser};

/// Users in Cassandra, one row per username:
///
/// ```text
/// CREATE KEYSPACE IF NOT EXISTS <keyspace>
///   WITH replication = {'class': 'SimpleStrategy', 'replication_factor': <rf>};
/// CREATE TABLE IF NOT EXISTS <keyspace>.users (
///   username      text PRIMARY KEY,
///   user_id       text,
///   password_hash text,        -- the Argon2 PHC string; never the password
///   roles         list<text>
/// );
/// ```
///
/// The keyspace and table are created on connect if missing, with `SimpleStrategy` and the
/// builder's replication factor; create the keyspace yourself beforehand for
/// `NetworkTopologyStrategy`.
///
/// **Consistency.** Reads and writes use LOCAL_QUORUM by default
/// ([`DEFAULT_CONSISTENCY`](Self::DEFAULT_CONSISTENCY)): a user written through one data
/// centre is read back by every later sign-in in that data centre, and sign-in keeps working
/// in a data centre cut off from the others. A user created or changed in one data centre
/// reaches the others as Cassandra replicates (usually within a second); set
/// `Consistency::Quorum` if a new password must be seen everywhere at once, at the price of
/// refusing sign-ins whenever a majority of all replicas is unreachable. With one data centre
/// the two are the same.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), kernel_login::StoreError> {
/// use kernel_login::{CassandraCredentialStore, CredentialStore};
///
/// let store = CassandraCredentialStore::builder("127.0.0.1:9042")
///     .replication_factor(3)
///     .connect()
///     .await?;
/// assert!(store.get("nobody").await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CassandraCredentialStore {
    inner: Arc<Statements>,
}

struct Statements {
    session: Session,
    read: PreparedStatement,
    write: PreparedStatement,
}

impl fmt::Debug for CassandraCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraCredentialStore")
            .finish_non_exhaustive()
    }
}

/// Builds a [`CassandraCredentialStore`]; start with [`CassandraCredentialStore::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until connected"]
pub struct CassandraCredentialStoreBuilder {
    hosts: String,
    keyspace: String,
    replication_factor: u32,
    consistency: Consistency,
    request_timeout: Duration,
    connect_timeout: Duration,
    session: Option<SessionBuilder>,
}

impl fmt::Debug for CassandraCredentialStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraCredentialStoreBuilder")
            .field("hosts", &self.hosts)
            .field("keyspace", &self.keyspace)
            .field("replication_factor", &self.replication_factor)
            .field("consistency", &self.consistency)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl CassandraCredentialStore {
    /// Keyspace unless set: `login`.
    pub const DEFAULT_KEYSPACE: &str = "login";
    /// Replication factor of a keyspace created on connect, unless set: 3.
    pub const DEFAULT_REPLICATION_FACTOR: u32 = 3;
    /// Consistency of reads and writes unless set: LOCAL_QUORUM (see the type's doc).
    pub const DEFAULT_CONSISTENCY: Consistency = Consistency::LocalQuorum;
    /// Timeout of each statement, unless set: 5 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long to try to connect, unless set: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Starts a store on the cluster reachable at `hosts` (`host:port[,host:port…]`).
    pub fn builder(hosts: impl Into<String>) -> CassandraCredentialStoreBuilder {
        CassandraCredentialStoreBuilder {
            hosts: hosts.into(),
            keyspace: Self::DEFAULT_KEYSPACE.to_owned(),
            replication_factor: Self::DEFAULT_REPLICATION_FACTOR,
            consistency: Self::DEFAULT_CONSISTENCY,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            session: None,
        }
    }
}

impl CassandraCredentialStoreBuilder {
    /// The keyspace of the `users` table (default
    /// [`DEFAULT_KEYSPACE`](CassandraCredentialStore::DEFAULT_KEYSPACE)): a letter, then up
    /// to 47 letters, digits or `_`.
    pub fn keyspace(mut self, keyspace: impl Into<String>) -> Self {
        self.keyspace = keyspace.into();
        self
    }

    /// The replication factor of the keyspace if it has to be created (default
    /// [`DEFAULT_REPLICATION_FACTOR`](CassandraCredentialStore::DEFAULT_REPLICATION_FACTOR)).
    pub fn replication_factor(mut self, replication_factor: u32) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    /// The consistency of reads and writes (default
    /// [`DEFAULT_CONSISTENCY`](CassandraCredentialStore::DEFAULT_CONSISTENCY)).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Timeout of each statement (default
    /// [`DEFAULT_REQUEST_TIMEOUT`](CassandraCredentialStore::DEFAULT_REQUEST_TIMEOUT)).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long to try to connect (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](CassandraCredentialStore::DEFAULT_CONNECT_TIMEOUT)).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Starts from a driver session builder of your own (credentials, TLS); the hosts given
    /// here are added to its known nodes.
    pub fn session_builder(mut self, builder: SessionBuilder) -> Self {
        self.session = Some(builder);
        self
    }

    /// Validates the settings, connects, creates the keyspace and table if missing, and
    /// prepares the statements.
    ///
    /// # Errors
    /// [`StoreError::InvalidSetting`] naming a bad setting; [`StoreError::Backend`] if the
    /// cluster cannot be reached or refuses the schema.
    pub async fn connect(self) -> Result<CassandraCredentialStore, StoreError> {
        let keyspace = &self.keyspace;
        let keyspace_ok = keyspace.len() <= 48
            && keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && keyspace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !keyspace_ok {
            return Err(StoreError::InvalidSetting(format!(
                "keyspace {keyspace:?} is not a letter then up to 47 letters, digits or '_'"
            )));
        }
        if self.replication_factor == 0 {
            return Err(StoreError::InvalidSetting(
                "replication_factor must be at least 1".into(),
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(StoreError::InvalidSetting(
                "timeouts must be more than zero".into(),
            ));
        }
        let builder = self
            .session
            .unwrap_or_default()
            .known_nodes(self.hosts.split(',').map(str::trim))
            .connection_timeout(self.connect_timeout);
        let session = match tokio::time::timeout(self.connect_timeout * 3, builder.build()).await {
            Ok(Ok(session)) => session,
            Ok(Err(error)) => return Err(backend("connect", error)),
            Err(elapsed) => return Err(backend("connect", elapsed)),
        };
        let ddl = [
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                self.replication_factor
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.users \
                 (username text PRIMARY KEY, user_id text, password_hash text, roles list<text>) \
                 WITH comment = 'kernel-login users: Argon2 PHC password hashes, never passwords'"
            ),
        ];
        for statement in ddl {
            session
                .query_unpaged(statement, ())
                .await
                .map_err(|error| backend("create the users table", error))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|error| backend("agree on the users table", error))?;
        let mut read = session
            .prepare(format!(
                "SELECT user_id, username, password_hash, roles FROM {keyspace}.users WHERE username = ?"
            ))
            .await
            .map_err(|error| backend("prepare a statement", error))?;
        let mut write = session
            .prepare(format!(
                "INSERT INTO {keyspace}.users (username, user_id, password_hash, roles) VALUES (?, ?, ?, ?)"
            ))
            .await
            .map_err(|error| backend("prepare a statement", error))?;
        for statement in [&mut read, &mut write] {
            statement.set_consistency(self.consistency);
            statement.set_request_timeout(Some(self.request_timeout));
        }
        Ok(CassandraCredentialStore {
            inner: Arc::new(Statements {
                session,
                read,
                write,
            }),
        })
    }
}

fn backend(
    operation: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Backend {
        backend: "cassandra",
        operation,
        source: Box::new(error),
    }
}

type UserRow = (Option<String>, String, Option<String>, Option<Vec<String>>);

#[async_trait::async_trait]
impl CredentialStore for CassandraCredentialStore {
    async fn get(&self, username: &str) -> Result<Option<StoredUser>, StoreError> {
        let result = self
            .inner
            .session
            .execute_unpaged(&self.inner.read, (username,))
            .await
            .map_err(|error| backend("read a user", error))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| backend("read a user", error))?;
        let row = rows
            .maybe_first_row::<UserRow>()
            .map_err(|error| backend("read a user", error))?;
        Ok(
            row.map(|(user_id, username, password_hash, roles)| StoredUser {
                user_id: user_id.unwrap_or_default(),
                username,
                password_hash: password_hash.unwrap_or_default(),
                roles: roles.unwrap_or_default(),
            }),
        )
    }

    async fn put(&self, user: StoredUser) -> Result<(), StoreError> {
        self.inner
            .session
            .execute_unpaged(
                &self.inner.write,
                (
                    &user.username,
                    &user.user_id,
                    &user.password_hash,
                    &user.roles,
                ),
            )
            .await
            .map_err(|error| backend("write a user", error))?;
        Ok(())
    }
}
