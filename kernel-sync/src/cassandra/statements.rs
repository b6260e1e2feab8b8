//! The global lock's table and the lightweight transactions on it.
//!
//! ```text
//! CREATE KEYSPACE IF NOT EXISTS <keyspace>
//!   WITH replication = {'class': 'SimpleStrategy', 'replication_factor': <rf>};
//! CREATE TABLE IF NOT EXISTS <keyspace>.global_locks (
//!   name   text PRIMARY KEY,  -- '<namespace>/<lock id>'
//!   holder uuid,              -- the current holder's claim id; written with a TTL of ceil(hold_for) + 2 s, null when free
//!   fence  bigint             -- the last fencing token granted; never expires
//! );
//! ```
//!
//! Every write is a lightweight transaction (Paxos, serial consistency SERIAL, commit
//! consistency QUORUM) and every read a SERIAL read, so the table is linearizable:
//!
//! ```text
//! read     SELECT holder, fence FROM global_locks WHERE name = ?                          (SERIAL)
//! init     INSERT INTO global_locks (name, fence) VALUES (?, 0) IF NOT EXISTS
//! claim    BEGIN UNLOGGED BATCH
//!            UPDATE global_locks USING TTL ? SET holder = ? WHERE name = ? IF holder = null AND fence = ?
//!            UPDATE global_locks SET fence = ? WHERE name = ?
//!          APPLY BATCH
//! refresh  UPDATE global_locks USING TTL ? SET holder = ? WHERE name = ? IF holder = ?
//! release  DELETE holder FROM global_locks WHERE name = ? IF holder = ?
//! ```
//!
//! The claim is one compare-and-set on the partition: it applies only if nobody holds the
//! lock and the fence is still the value we read, and then sets both the holder (with the
//! TTL) and the fence (without one, so it survives the holder's expiry).

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

use crate::SyncError;

/// What the table says about one lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockRow {
    pub(crate) holder: Option<Uuid>,
    pub(crate) fence: i64,
}

/// The prepared statements of one keyspace.
pub(crate) struct Statements {
    session: Session,
    read: PreparedStatement,
    init: PreparedStatement,
    claim: Batch,
    refresh: PreparedStatement,
    release: PreparedStatement,
}

impl std::fmt::Debug for Statements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statements").finish_non_exhaustive()
    }
}

fn failed(operation: &'static str) -> impl FnOnce(scylla::errors::ExecutionError) -> SyncError {
    move |error| SyncError::backend("cassandra", operation, error)
}

impl Statements {
    /// Creates the keyspace and table if missing, and prepares the statements.
    pub(crate) async fn prepare(
        session: Session,
        keyspace: &str,
        replication_factor: u32,
        request_timeout: Duration,
    ) -> Result<Statements, SyncError> {
        let ddl = [
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.global_locks \
                 (name text PRIMARY KEY, holder uuid, fence bigint) \
                 WITH comment = 'kernel-sync global locks: holder (TTL ceil(hold_for) + 2 s) and fencing counter'"
            ),
        ];
        for statement in ddl {
            session
                .query_unpaged(statement, ())
                .await
                .map_err(failed("create the lock table"))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|error| SyncError::backend("cassandra", "agree on the lock table", error))?;

        let table = format!("{keyspace}.global_locks");
        let prepare = |cql: String| {
            let session = &session;
            async move {
                let mut statement = session.prepare(cql).await.map_err(|error| {
                    SyncError::backend("cassandra", "prepare a statement", error)
                })?;
                statement.set_request_timeout(Some(request_timeout));
                Ok::<_, SyncError>(statement)
            }
        };
        let lwt = |mut statement: PreparedStatement| {
            statement.set_consistency(Consistency::Quorum);
            statement.set_serial_consistency(Some(SerialConsistency::Serial));
            statement
        };
        let mut read = prepare(format!("SELECT holder, fence FROM {table} WHERE name = ?")).await?;
        read.set_consistency(Consistency::Serial);
        let init = lwt(prepare(format!(
            "INSERT INTO {table} (name, fence) VALUES (?, 0) IF NOT EXISTS"
        ))
        .await?);
        let take = prepare(format!(
            "UPDATE {table} USING TTL ? SET holder = ? WHERE name = ? IF holder = null AND fence = ?"
        ))
        .await?;
        let advance = prepare(format!("UPDATE {table} SET fence = ? WHERE name = ?")).await?;
        let mut claim = Batch::new(BatchType::Unlogged);
        claim.append_statement(take);
        claim.append_statement(advance);
        claim.set_consistency(Consistency::Quorum);
        claim.set_serial_consistency(Some(SerialConsistency::Serial));
        claim.set_request_timeout(Some(request_timeout));
        let refresh = lwt(prepare(format!(
            "UPDATE {table} USING TTL ? SET holder = ? WHERE name = ? IF holder = ?"
        ))
        .await?);
        let release = lwt(prepare(format!(
            "DELETE holder FROM {table} WHERE name = ? IF holder = ?"
        ))
        .await?);
        Ok(Statements {
            session,
            read,
            init,
            claim,
            refresh,
            release,
        })
    }

    /// One round trip to the cluster (the local node's release version): a health check.
    pub(crate) async fn ping(&self) -> Result<(), SyncError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map(drop)
            .map_err(failed("ping the cluster"))
    }

    /// The lock's row, read linearizably; `None` if the lock was never used.
    pub(crate) async fn read(&self, name: &str) -> Result<Option<LockRow>, SyncError> {
        let result = self
            .session
            .execute_unpaged(&self.read, (name,))
            .await
            .map_err(failed("read the lock"))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| SyncError::backend("cassandra", "read the lock", error))?;
        let row = rows
            .maybe_first_row::<(Option<Uuid>, Option<i64>)>()
            .map_err(|error| SyncError::backend("cassandra", "read the lock", error))?;
        Ok(row.map(|(holder, fence)| LockRow {
            holder,
            fence: fence.unwrap_or(0),
        }))
    }

    /// Creates the lock's row with fence 0 if it has none.
    pub(crate) async fn init(&self, name: &str) -> Result<(), SyncError> {
        let result = self
            .session
            .execute_unpaged(&self.init, (name,))
            .await
            .map_err(failed("create the lock's row"))?;
        applied(result, "create the lock's row").map(|_| ())
    }

    /// Claims a free lock whose fence is still `fence`, advancing it to `fence + 1`.
    pub(crate) async fn claim(
        &self,
        name: &str,
        me: Uuid,
        ttl: i32,
        fence: i64,
    ) -> Result<bool, SyncError> {
        let result = self
            .session
            .batch(&self.claim, ((ttl, me, name, fence), (fence + 1, name)))
            .await
            .map_err(failed("claim the lock"))?;
        applied(result, "claim the lock")
    }

    /// Renews our claim's TTL, if it is still ours.
    pub(crate) async fn refresh(&self, name: &str, me: Uuid, ttl: i32) -> Result<bool, SyncError> {
        let result = self
            .session
            .execute_unpaged(&self.refresh, (ttl, me, name, me))
            .await
            .map_err(failed("refresh the lock"))?;
        applied(result, "refresh the lock")
    }

    /// Removes our claim, if it is still ours.
    pub(crate) async fn release(&self, name: &str, me: Uuid) -> Result<bool, SyncError> {
        let result = self
            .session
            .execute_unpaged(&self.release, (name, me))
            .await
            .map_err(failed("release the lock"))?;
        applied(result, "release the lock")
    }
}

/// The `[applied]` column of a lightweight transaction's answer.
fn applied(
    result: scylla::response::query_result::QueryResult,
    operation: &'static str,
) -> Result<bool, SyncError> {
    let rows = result
        .into_rows_result()
        .map_err(|error| SyncError::backend("cassandra", operation, error))?;
    let row = rows
        .first_row::<Row>()
        .map_err(|error| SyncError::backend("cassandra", operation, error))?;
    match row.columns.first() {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(SyncError::backend_message(
            "cassandra",
            operation,
            format!("expected an [applied] column, got {other:?}"),
        )),
    }
}
