//! Session supervision: one ZooKeeper session at a time, its end and its suspensions
//! broadcast to everything held through it, and a new session when the old one has ended.
//!
//! zookeeper-client treats an expired session as terminal (the right semantics: a process
//! must not believe it still holds what its old session held). This module is the small
//! supervisor that crate leaves to its users: it watches the session's state, reports the
//! end of the session to every holder at once, tells holders when the connection has been
//! suspended beyond the grace, and opens a new session for the next operation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, SessionState};

use super::acl::DigestCredentials;
use crate::{LossReason, SyncError};

/// How to open sessions.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    pub(crate) hosts: String,
    pub(crate) session_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Suspension beyond this fraction of the negotiated session timeout counts as a loss.
    pub(crate) suspension_grace: f64,
    /// Added to every session with the `digest` scheme.
    pub(crate) digest: Option<DigestCredentials>,
}

/// Hands out the current session, opening a new one once it has ended.
#[derive(Debug)]
pub(crate) struct Sessions {
    config: SessionConfig,
    current: tokio::sync::Mutex<Option<Arc<ZkSession>>>,
}

impl Sessions {
    pub(crate) fn new(config: SessionConfig) -> Self {
        Sessions {
            config,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The live session, or a new one if there is none.
    ///
    /// # Errors
    /// [`SyncError::Backend`] if no session could be opened within the connect timeout.
    pub(crate) async fn get(&self) -> Result<Arc<ZkSession>, SyncError> {
        let mut current = self.current.lock().await;
        if let Some(session) = current.as_ref().filter(|s| s.is_alive()) {
            return Ok(session.clone());
        }
        let session = ZkSession::connect(&self.config).await?;
        *current = Some(session.clone());
        Ok(session)
    }
}

/// One ZooKeeper session and the signals of what is held through it.
#[derive(Debug)]
pub(crate) struct ZkSession {
    pub(crate) client: Client,
    /// Cancelled when the session ends (expired, closed, authentication failed).
    ended: CancellationToken,
    /// A child of `ended`, cancelled and replaced when the connection stays suspended past the
    /// grace. Holders keep the epoch current when they acquired.
    epoch: Arc<Mutex<CancellationToken>>,
}

impl ZkSession {
    async fn connect(config: &SessionConfig) -> Result<Arc<ZkSession>, SyncError> {
        let mut connector = Client::connector().with_session_timeout(config.session_timeout);
        if let Some(digest) = &config.digest {
            // Sent first on every connection of the session, reconnections included; ZooKeeper
            // accepts any well-formed digest identity, so this cannot fail for a wrong password.
            connector = connector.with_auth("digest", &digest.auth_packet());
        }
        let client =
            match tokio::time::timeout(config.connect_timeout, connector.connect(&config.hosts))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(error)) => {
                    return Err(SyncError::backend("zookeeper", "open a session", error));
                }
                Err(_) => {
                    return Err(SyncError::backend_message(
                        "zookeeper",
                        "open a session",
                        format!("no session within {:?}", config.connect_timeout),
                    ));
                }
            };
        let ended = CancellationToken::new();
        let epoch = Arc::new(Mutex::new(ended.child_token()));
        let grace = grace(client.session_timeout(), config.suspension_grace);
        tracing::debug!(
            session = %client.session_id(),
            timeout = ?client.session_timeout(),
            ?grace,
            "zookeeper session opened"
        );
        tokio::spawn(supervise(
            client.state_watcher(),
            ended.clone(),
            epoch.clone(),
            grace,
        ));
        Ok(Arc::new(ZkSession {
            client,
            ended,
            epoch,
        }))
    }

    fn is_alive(&self) -> bool {
        !self.ended.is_cancelled() && !self.client.state().is_terminated()
    }

    /// The signal holders listen to: fires when the session ends, or when the connection is
    /// suspended past the grace. Take it before the read that decides a win.
    pub(crate) fn epoch(&self) -> CancellationToken {
        self.epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Completes when the session has ended.
    pub(crate) async fn ended(&self) {
        self.ended.cancelled().await;
    }

    /// Why an epoch fired: the session ended, or the connection was suspended too long.
    pub(crate) fn loss_reason(&self) -> LossReason {
        if self.ended.is_cancelled() || self.client.state().is_terminated() {
            LossReason::SessionExpired
        } else {
            LossReason::ConnectionSuspended
        }
    }

    /// Whether the session has ended.
    pub(crate) fn has_ended(&self) -> bool {
        !self.is_alive()
    }
}

impl Drop for ZkSession {
    fn drop(&mut self) {
        // Stops the supervisor; nothing is held through a session nobody references.
        self.ended.cancel();
    }
}

/// The suspension grace for a negotiated session timeout; `None` waits for expiry.
fn grace(session_timeout: Duration, fraction: f64) -> Option<Duration> {
    (fraction.is_finite() && fraction >= 0.0)
        .then(|| Duration::try_from_secs_f64(session_timeout.as_secs_f64() * fraction).ok())
        .flatten()
}

/// Follows the session's state until it ends, firing the epoch on long suspensions and
/// `ended` at the end.
async fn supervise(
    mut states: zookeeper_client::StateWatcher,
    ended: CancellationToken,
    epoch: Arc<Mutex<CancellationToken>>,
    grace: Option<Duration>,
) {
    let mut state = states.state();
    loop {
        if state.is_terminated() {
            tracing::info!(
                ?state,
                "zookeeper session ended: everything it held is lost"
            );
            ended.cancel();
            return;
        }
        if state == SessionState::Disconnected
            && let Some(grace) = grace
        {
            tokio::select! {
                next = states.changed() => { state = next; continue; }
                () = tokio::time::sleep(grace) => {
                    tracing::warn!(?grace, "zookeeper connection suspended past the grace: holders are told they lost");
                    let mut epoch = epoch.lock().unwrap_or_else(PoisonError::into_inner);
                    epoch.cancel();
                    *epoch = ended.child_token();
                }
                () = ended.cancelled() => return,
            }
        }
        state = tokio::select! {
            next = states.changed() => next,
            () = ended.cancelled() => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_is_a_fraction_of_the_session_timeout() {
        let timeout = Duration::from_secs(6);
        assert_eq!(grace(timeout, 0.0), Some(Duration::ZERO));
        assert_eq!(grace(timeout, 0.5), Some(Duration::from_secs(3)));
        assert_eq!(grace(timeout, f64::INFINITY), None);
    }
}
