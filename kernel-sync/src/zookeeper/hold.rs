//! The background task behind each ZooKeeper lock guard and leadership: watches our node,
//! the session and the hold time, reports the first loss, and removes the node on release.

use std::sync::Arc;
use std::time::Duration;

use kernel_inst::Instrumenter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{EventType, OneshotWatcher};

use super::PathUse;
use super::recipe::{Removal, delete_until_gone};
use super::session::ZkSession;
use crate::metrics::{self, REGION_LOCK};
use crate::{GuardControl, LossReason, SyncError};

/// Pause before re-arming a watch that could not be set.
const REWATCH_PAUSE: Duration = Duration::from_millis(50);

/// How long a holder that won by the fast path (so without a watch from a listing) holds
/// before it sets a watch on its node. A watch is a read, and a read
/// sent while the holder releases delays the release's delete; short holds skip it. A
/// deletion by someone else within this time is reported when the watch is set (by then the
/// node is found gone), or by the release, whose delete then finds no node.
pub(crate) const WATCH_AFTER: Duration = Duration::from_millis(10);

/// What is held: decides the metrics and whether there is a hold time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    Lock { hold_until: Instant },
    Leadership,
}

/// One lock or leadership held through a session.
pub(crate) struct ZkHold {
    pub(crate) session: Arc<ZkSession>,
    pub(crate) path: String,
    pub(crate) epoch: CancellationToken,
    /// The child watch on the lock path from the listing that won, if it did: it fires when
    /// anyone joins or leaves, after which the node itself is watched.
    pub(crate) dir_watch: Option<OneshotWatcher>,
    pub(crate) held: Held,
    /// Won by the fast path, with no watch: the first watch is set after [`WATCH_AFTER`].
    pub(crate) defer_watch: bool,
    /// This backend's use of the lock path, given up once our node is gone.
    pub(crate) path_use: Option<PathUse>,
    pub(crate) inst: Arc<dyn Instrumenter>,
}

impl ZkHold {
    pub(crate) async fn run(mut self, mut control: GuardControl) {
        let dir_watch = self.dir_watch.take();
        // Given up once our node is gone, before a release is answered, so that the next
        // acquire in this process may take the fast path.
        let mut path_use = self.path_use.take();
        let hold_until = match self.held {
            Held::Lock { hold_until } => Some(hold_until),
            Held::Leadership => None,
        };
        let expired = async move {
            match hold_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Kept (to the end of this task) until our node is gone: dropping a watch that has
        // not fired costs a RemoveWatches request; one that fired on our own delete costs
        // nothing.
        let watch = self.watch_node(dir_watch);
        tokio::pin!(watch);
        let first = tokio::select! {
            request = control.release_requested() => Ok(request),
            () = self.epoch.cancelled() => Err(self.session.loss_reason()),
            () = expired => Err(LossReason::HoldExpired),
            reason = &mut watch => Err(reason),
        };
        let mut request = match first {
            Ok(request) => {
                if self.held == Held::Leadership {
                    metrics::count(&*self.inst, metrics::LEADER_RESCINDED);
                }
                let released = self.remove_node().await.map(|removal| {
                    let reason = match removal {
                        Removal::Removed => return,
                        Removal::AlreadyGone => LossReason::Deleted,
                        Removal::SessionEnded => LossReason::SessionExpired,
                    };
                    // Lost before the release reached the engine: the release answers `Lost`.
                    self.report_loss(&control, reason);
                });
                drop(path_use.take());
                match request {
                    Some(reply) => reply.respond(released),
                    None => {
                        if let Err(error) = released {
                            tracing::warn!(path = %self.path, %error, "could not release a dropped lock");
                        }
                    }
                }
                control.release_requested().await
            }
            Err(reason) => {
                self.report_loss(&control, reason);
                // The node may still be there (suspended connection, hold time exceeded):
                // remove it so that the next contender need not wait for the session to end.
                if !matches!(reason, LossReason::Deleted | LossReason::SessionExpired)
                    && let Err(error) = self.remove_node().await
                {
                    tracing::warn!(path = %self.path, %error, "could not remove a lost lock's node");
                }
                drop(path_use.take());
                control.release_requested().await
            }
        };
        // Released or lost: answer the unlock (or repeated rescinds). The guard reports a loss
        // recorded before its answer.
        while let Some(reply) = request {
            reply.respond(Ok(()));
            request = control.release_requested().await;
        }
    }

    async fn remove_node(&self) -> Result<Removal, SyncError> {
        delete_until_gone(&self.session, &self.path).await
    }

    /// Fires the loss signal; the first report is logged and counted.
    fn report_loss(&self, control: &GuardControl, reason: LossReason) {
        if control.lose(reason) {
            tracing::warn!(path = %self.path, %reason, "lost a zookeeper lock or leadership");
            let bucket = match self.held {
                Held::Lock { .. } => REGION_LOCK.lost,
                Held::Leadership => metrics::LEADER_REMOTELY_RESCINDED,
            };
            metrics::count(&*self.inst, bucket);
        }
    }

    /// Completes when our node is deleted (or the session ends), re-arming the watch after
    /// other events. Starts from the lock path's child watch if there is one: while nobody
    /// else joins, holding costs no read. After a fast-path win the first watch is set after
    /// [`WATCH_AFTER`].
    async fn watch_node(&self, dir_watch: Option<OneshotWatcher>) -> LossReason {
        match dir_watch {
            Some(watch) => {
                let event = watch.changed().await;
                if event.event_type == EventType::Session && event.session_state.is_terminated() {
                    return LossReason::SessionExpired;
                }
            }
            None if self.defer_watch => tokio::time::sleep(WATCH_AFTER).await,
            None => {}
        }
        loop {
            match self.session.client.check_and_watch_stat(&self.path).await {
                Ok((None, _)) => return LossReason::Deleted,
                Ok((Some(_), watcher)) => {
                    let event = watcher.changed().await;
                    match event.event_type {
                        EventType::NodeDeleted => return LossReason::Deleted,
                        EventType::Session if event.session_state.is_terminated() => {
                            return LossReason::SessionExpired;
                        }
                        _ => {}
                    }
                }
                Err(
                    zookeeper_client::Error::SessionExpired
                    | zookeeper_client::Error::ClientClosed
                    | zookeeper_client::Error::AuthFailed,
                ) => return LossReason::SessionExpired,
                Err(error) => {
                    tracing::debug!(path = %self.path, %error, "re-arming the watch on our node");
                    tokio::time::sleep(REWATCH_PAUSE).await;
                }
            }
        }
    }
}
