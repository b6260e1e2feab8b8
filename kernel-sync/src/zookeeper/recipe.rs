//! The ZooKeeper lock recipe: ephemeral sequential nodes under the lock's path, the lowest
//! sequence holds, and each waiter watches only its predecessor (no herd effect).
//!
//! Node names follow Curator's protected form, as H2's did: `_c_<uuid>-lock-<sequence>`.
//! Curator's `InterProcessMutex`, H2's Go lock and this recipe all order the children by the
//! number after the last `lock-`, so they exclude each other on the same path. The uuid lets
//! a contender find its own node after a lost connection, and lets a cancelled contender's
//! clean-up find a node whose creation it never heard back about.
//!
//! A lock node's data is the instant after which its holder no longer claims it, in Go's
//! binary time form (see [`gotime`](super::gotime)); a contender whose predecessor's instant
//! has passed deletes it, as H2's did. Leader nodes carry no data and never expire.
//!
//! **The uncontended fast path.** The standard recipe needs a read after the create (the
//! listing that tells the creator whether its node is the lowest), which costs a cycle of an
//! uncontended lock about a fifth of its time. A contender whose backend has no other
//! contender or holder on the lock path first tries one transaction that replaces the *empty*
//! lock path with a fresh container holding only its node: `multi(delete(dir), create(dir),
//! create(dir/<name>-lock-0000000000))`. The delete fails unless the path has no children, so
//! the transaction applies only when nobody holds or waits, and then our node is the only
//! child: it holds, with no read. Anyone who comes after gets a higher sequence (the fresh
//! path's child counter already counts our node), so the recipe's order is kept for Curator's
//! and H2's clients too. If the path does not exist the transaction is sent once more without
//! the delete. A refusal that would repeat (no delete right on the namespace, a server without
//! transactions or containers) turns the fast path off for the backend; any other refusal (the
//! path has children) takes the standard path for this attempt. A refused transaction is still
//! a logged write, which is why a contender whose backend already uses the path skips it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{
    Client, CreateMode, EventType, MultiWriteError, MultiWriteResult, OneshotWatcher, Stat,
};

use super::PathUse;
use super::acl::NodeAcls;
use super::gotime;
use super::session::ZkSession;
use crate::SyncError;
use crate::metrics::{self, REGION_LOCK_REAPED};

/// How long a cancelled or timed-out contender waits for its node's removal before leaving
/// the rest to a background task.
const FOREGROUND_WITHDRAW: Duration = Duration::from_secs(2);

/// Pause between retries of an operation that failed on a lost connection.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The marker of the children that take part in a lock: their sequence follows it.
const LOCK_MARKER: &str = "lock-";

/// The node a contender created.
#[derive(Clone, Debug)]
pub(crate) struct OwnNode {
    pub(crate) path: String,
    name: String,
    pub(crate) czxid: i64,
    /// Created by the fast path, alone under the lock path.
    pub(crate) alone: bool,
}

/// One attempt at a lock or leadership: creates our node, waits for our turn, and removes
/// the node again if the attempt is abandoned (also when the future running it is dropped).
pub(crate) struct Contender {
    pub(crate) session: Arc<ZkSession>,
    dir: String,
    /// The backend's count of this use of the lock path; handed to the holder on a win, or
    /// to the clean-up that removes our node.
    path_use: Option<PathUse>,
    /// `_c_<uuid>-lock-`: our node's name before ZooKeeper appends the sequence.
    name_prefix: String,
    data: Vec<u8>,
    node: Option<OwnNode>,
    /// Whether a create may have reached the server.
    create_sent: bool,
    /// The child watch set by the listing sent with our create. If that listing shows we
    /// hold the lock, it becomes the holder's first watch (a release of an uncontended lock
    /// then needs no read); otherwise it is dropped, which removes it from the server.
    dir_watch: Option<OneshotWatcher>,
    /// Whether the attempt still owns its node (and must remove it).
    armed: bool,
    /// We waited behind another node at least once: a timeout then means contention.
    pub(crate) saw_holder: bool,
    /// The last engine error retried through, for a timeout's report.
    pub(crate) last_error: Option<zookeeper_client::Error>,
    /// Whether the next create tries the uncontended fast path first (see the module docs).
    fast_path: bool,
    /// The ACLs of the nodes it creates.
    acls: Arc<NodeAcls>,
    inst: Arc<dyn kernel_inst::Instrumenter>,
}

/// How the fast path ended.
enum FastPath {
    /// Our node exists; with the listing that decided it (ours alone) if the transaction's
    /// answer was heard, without one if our node was found after a lost answer.
    Took(Option<Vec<String>>),
    /// Take the standard path.
    Declined,
}

impl std::fmt::Debug for Contender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contender")
            .field("dir", &self.dir)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// One child of the lock path that takes part in the lock.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Child {
    sequence: u64,
    name: String,
}

/// The children that take part in a lock, lowest sequence first.
fn lock_children(children: Vec<String>) -> Vec<Child> {
    let mut nodes: Vec<Child> = children
        .into_iter()
        .filter_map(|name| {
            let at = name.rfind(LOCK_MARKER)? + LOCK_MARKER.len();
            let digits = name.get(at..)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let sequence = digits.parse().ok()?;
            Some(Child { sequence, name })
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

fn zk_error(operation: &'static str, error: zookeeper_client::Error) -> SyncError {
    match error {
        zookeeper_client::Error::SessionExpired | zookeeper_client::Error::ClientClosed => {
            SyncError::SessionExpired
        }
        error => SyncError::backend("zookeeper", operation, error),
    }
}

/// Whether retrying the same operation on the same session may succeed: the connection
/// was lost (zookeeper-client reports a dead connection both as `ConnectionLoss` and as a
/// `Custom` "no response from connection" error) or the server shed the request.
pub(crate) fn is_connection_loss(error: &zookeeper_client::Error) -> bool {
    matches!(
        error,
        zookeeper_client::Error::ConnectionLoss
            | zookeeper_client::Error::Timeout
            | zookeeper_client::Error::Throttled
            | zookeeper_client::Error::Custom(_)
    )
}

impl Contender {
    /// A contender for the lock path of `path_use`, whose node will carry `data`; it tries
    /// the fast path first if `path_use` says so (see the module docs).
    pub(crate) fn new(
        session: Arc<ZkSession>,
        path_use: PathUse,
        data: Vec<u8>,
        acls: Arc<NodeAcls>,
        inst: Arc<dyn kernel_inst::Instrumenter>,
    ) -> Self {
        let name_prefix = format!("_c_{}-{LOCK_MARKER}", uuid::Uuid::new_v4());
        Contender {
            session,
            dir: path_use.dir().to_owned(),
            fast_path: path_use.fast_path(),
            path_use: Some(path_use),
            name_prefix,
            data,
            node: None,
            create_sent: false,
            dir_watch: None,
            armed: true,
            saw_holder: false,
            last_error: None,
            acls,
            inst,
        }
    }

    /// Creates our node (and the lock path's missing containers) and waits until ours is
    /// the lowest, reaping a predecessor whose recorded expiry has passed. Returns our node
    /// and the session epoch current at the read that decided the win. Waits past `deadline`
    /// never: at the deadline, if we are behind another node, fails with `Contended` (the
    /// caller turns it into its error); `None` waits for ever.
    ///
    /// The node stays ours (and is removed on drop) until [`disarm`](Contender::disarm).
    /// A win on the listing sent with the create also returns that listing's child watch.
    pub(crate) async fn run(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<(OwnNode, CancellationToken, Option<OneshotWatcher>), Outcome> {
        loop {
            // Taken before each read that may decide a win: if the connection is suspended
            // past the grace after it, the win is re-checked with a new read.
            let mut epoch = self.session.epoch();
            let mut children = self.create().await?;
            let own = self.node.clone().ok_or_else(|| {
                Outcome::Failed(SyncError::backend_message(
                    "zookeeper",
                    "create the lock node",
                    "the create succeeded but named no node",
                ))
            })?;
            loop {
                let listed = match children.take() {
                    Some(listed) => listed,
                    None => match self.list_again(&mut epoch).await {
                        Ok(listed) => listed,
                        Err(error) if is_connection_loss(&error) => {
                            self.last_error = Some(error);
                            tokio::time::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                        Err(zookeeper_client::Error::NoNode) => Vec::new(),
                        Err(error) => {
                            return Err(Outcome::Failed(zk_error("list the lock path", error)));
                        }
                    },
                };
                let mut nodes = lock_children(listed);
                self.remove_orphans(&mut nodes, &own).await;
                let Some(position) = nodes.iter().position(|n| n.name == own.name) else {
                    // Our node is gone (deleted by someone who thought it expired, or by an
                    // operator) while we waited: start again with a new one.
                    tracing::debug!(node = %own.path, "our lock node vanished while waiting; recreating");
                    self.node = None;
                    break;
                };
                if position == 0 {
                    if epoch.is_cancelled() {
                        // The connection was suspended since the read began: read again.
                        continue;
                    }
                    return Ok((own, epoch, self.dir_watch.take()));
                }
                self.dir_watch = None;
                self.saw_holder = true;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Outcome::Contended);
                }
                let predecessor = format!("{}/{}", self.dir, nodes[position - 1].name);
                self.wait_for_predecessor(&predecessor, deadline).await?;
            }
        }
    }

    /// Removes, from the server and from `nodes`, any node of ours but `own`: a create whose
    /// answer was lost and that applied after we looked for it would otherwise queue us
    /// behind ourselves.
    async fn remove_orphans(&self, nodes: &mut Vec<Child>, own: &OwnNode) {
        let is_orphan = |child: &Child| {
            child.name != own.name && child.name.starts_with(self.name_prefix.as_str())
        };
        let orphans: Vec<String> = nodes
            .iter()
            .filter(|c| is_orphan(c))
            .map(|c| format!("{}/{}", self.dir, c.name))
            .collect();
        if orphans.is_empty() {
            return;
        }
        nodes.retain(|c| !is_orphan(c));
        for orphan in orphans {
            tracing::info!(node = %orphan, "removing an earlier node of this contender");
            if let Err(error) = delete_until_gone(&self.session, &orphan).await {
                tracing::warn!(node = %orphan, %error, "could not remove an earlier node of this contender");
            }
        }
    }

    /// Lists the lock path again, without a watch (only the listing sent with the create
    /// sets one), taking the session epoch first.
    async fn list_again(
        &mut self,
        epoch: &mut CancellationToken,
    ) -> Result<Vec<String>, zookeeper_client::Error> {
        *epoch = self.session.epoch();
        self.dir_watch = None;
        self.session.client.list_children(&self.dir).await
    }

    /// Waits until the predecessor changes or goes, its expiry passes, or the deadline.
    async fn wait_for_predecessor(
        &mut self,
        predecessor: &str,
        deadline: Option<Instant>,
    ) -> Result<(), Outcome> {
        let client = &self.session.client;
        let (data, stat, watcher) = match client.get_and_watch_data(predecessor).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => return Ok(()),
            Err(error) if is_connection_loss(&error) => {
                self.last_error = Some(error);
                tokio::time::sleep(RETRY_PAUSE).await;
                return Ok(());
            }
            Err(error) => return Err(Outcome::Failed(zk_error("watch the predecessor", error))),
        };
        let mut expires = gotime::decode(&data);
        if let Some(expired) = expires.filter(|at| *at <= SystemTime::now()) {
            if self.reap(predecessor, &stat, expired).await? {
                return Ok(());
            }
            // Not ours to remove (the lock path's ACL): wait for its holder to let go.
            expires = None;
        }
        let expiry = async {
            match expires.and_then(|at| at.duration_since(SystemTime::now()).ok()) {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        let deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = watcher.changed() => {
                if event.event_type == EventType::Session && event.session_state.is_terminated() {
                    return Err(Outcome::Failed(SyncError::SessionExpired));
                }
            }
            () = expiry => {}
            () = deadline => return Err(Outcome::Contended),
            () = self.session.ended() => return Err(Outcome::Failed(SyncError::SessionExpired)),
        }
        Ok(())
    }

    /// Deletes a predecessor whose holder's claim has expired (H2's reaper, done by the one
    /// contender waiting on it). Returns `false` if the lock path's ACL does not let us: the
    /// caller then waits for the holder (whose own `hold_for` removes its node).
    async fn reap(
        &mut self,
        node: &str,
        stat: &Stat,
        expired: SystemTime,
    ) -> Result<bool, Outcome> {
        match self.session.client.delete(node, Some(stat.version)).await {
            Ok(()) => {
                tracing::info!(%node, ?expired, "removed an expired lock node");
                metrics::count(&*self.inst, REGION_LOCK_REAPED);
                Ok(true)
            }
            Err(zookeeper_client::Error::NoNode | zookeeper_client::Error::BadVersion) => Ok(true),
            Err(zookeeper_client::Error::NoAuth) => {
                tracing::warn!(%node, ?expired, "an expired lock node is not ours to remove (ACL); waiting for its holder");
                Ok(false)
            }
            Err(error) if is_connection_loss(&error) => {
                self.last_error = Some(error);
                Ok(true)
            }
            Err(error) => Err(Outcome::Failed(zk_error(
                "remove an expired lock node",
                error,
            ))),
        }
    }

    /// Creates our node, creating the lock path's containers if missing, and lists the lock
    /// path (setting a child watch) in the same round trip: requests on one session are
    /// answered in order, so the list includes our node. Returns the listing, if it could be
    /// had with the create.
    async fn create(&mut self) -> Result<Option<Vec<String>>, Outcome> {
        if std::mem::take(&mut self.fast_path)
            && let FastPath::Took(listing) = self.claim_alone().await?
        {
            return Ok(listing);
        }
        let client = self.session.client.clone();
        let prefix = format!("{}/{}", self.dir, self.name_prefix);
        let acls = self.acls.clone();
        let options = CreateMode::EphemeralSequential.with_acls(acls.node());
        loop {
            self.create_sent = true;
            let create = client.create(&prefix, &self.data, &options);
            let list = client.get_and_watch_children(&self.dir);
            let (created, listed) = tokio::join!(create, list);
            let listed = listed.map(|(children, _, watch)| {
                self.dir_watch = Some(watch);
                children
            });
            match created {
                Ok((stat, sequence)) => {
                    let name = format!("{}{sequence}", self.name_prefix);
                    self.node = Some(OwnNode {
                        path: format!("{}/{name}", self.dir),
                        name,
                        czxid: stat.czxid,
                        alone: false,
                    });
                    return Ok(listed.ok());
                }
                Err(zookeeper_client::Error::NoNode) => {
                    match make_dirs(&client, &self.dir, &acls).await {
                        Ok(()) => {}
                        Err(error) if is_connection_loss(&error) => {
                            self.last_error = Some(error);
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                        Err(error) => {
                            return Err(Outcome::Failed(zk_error("create the lock path", error)));
                        }
                    }
                }
                Err(error) if is_connection_loss(&error) => {
                    self.last_error = Some(error);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    if let Some(node) = self.find_own().await? {
                        self.node = Some(node);
                        return Ok(None);
                    }
                }
                Err(error) => return Err(Outcome::Failed(zk_error("create the lock node", error))),
            }
        }
    }

    /// The fast path: in one transaction, replace the empty lock path with a fresh container
    /// holding only our node (sequence 0), or create both if the path does not exist.
    async fn claim_alone(&mut self) -> Result<FastPath, Outcome> {
        let client = self.session.client.clone();
        let name = format!("{}{:010}", self.name_prefix, 0);
        let path = format!("{}/{name}", self.dir);
        // The same ACLs as the standard path's, so that a path the fast path re-creates is
        // protected as one `make_dirs` creates.
        let acls = self.acls.clone();
        let dir_options = CreateMode::Container.with_acls(acls.dir(&self.dir));
        let node_options = CreateMode::Ephemeral.with_acls(acls.node());
        for replace in [true, false] {
            let mut multi = client.new_multi_writer();
            let built = (if replace {
                multi.add_delete(&self.dir, None)
            } else {
                Ok(())
            })
            .and_then(|()| multi.add_create(&self.dir, &[], &dir_options))
            .and_then(|()| multi.add_create(&path, &self.data, &node_options));
            if built.is_err() {
                return Ok(FastPath::Declined);
            }
            self.create_sent = true;
            match multi.commit().await {
                Ok(results) => {
                    let czxid = match created_zxid(&results) {
                        Some(czxid) => czxid,
                        // A server that answers creates in a transaction without their stat
                        // (ZOOKEEPER-4026): read it.
                        None => match client.check_stat(&path).await {
                            Ok(Some(stat)) => stat.czxid,
                            Ok(None) => return Ok(FastPath::Declined),
                            Err(error) => {
                                self.last_error = Some(error);
                                return self.took_after_lost_answer().await;
                            }
                        },
                    };
                    self.node = Some(OwnNode {
                        path,
                        name: name.clone(),
                        czxid,
                        alone: true,
                    });
                    return Ok(FastPath::Took(Some(vec![name])));
                }
                // The lock path does not exist: create it with our node.
                Err(MultiWriteError::OperationFailed {
                    index: 0,
                    source: zookeeper_client::Error::NoNode,
                }) if replace => {}
                // Refused, and it would be again: no delete right on the namespace, or a server
                // without transactions or containers.
                Err(
                    MultiWriteError::OperationFailed {
                        source:
                            zookeeper_client::Error::NoAuth
                            | zookeeper_client::Error::Unimplemented
                            | zookeeper_client::Error::MarshallingError,
                        ..
                    }
                    | MultiWriteError::RequestFailed {
                        source:
                            zookeeper_client::Error::NoAuth
                            | zookeeper_client::Error::Unimplemented
                            | zookeeper_client::Error::MarshallingError,
                    },
                ) => {
                    if let Some(path_use) = &self.path_use {
                        path_use.refuse_fast_path();
                    }
                    return Ok(FastPath::Declined);
                }
                // Refused this time (the path has children; another contender created it).
                Err(MultiWriteError::OperationFailed { .. }) => return Ok(FastPath::Declined),
                Err(MultiWriteError::RequestFailed {
                    source:
                        error @ (zookeeper_client::Error::SessionExpired
                        | zookeeper_client::Error::ClientClosed),
                }) => return Err(Outcome::Failed(zk_error("create the lock node", error))),
                // No answer we can read (a lost connection, or one the client could not
                // decode): the transaction may have applied.
                Err(MultiWriteError::RequestFailed { source }) => {
                    if is_connection_loss(&source) {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    self.last_error = Some(source);
                    return self.took_after_lost_answer().await;
                }
            }
        }
        Ok(FastPath::Declined)
    }

    /// After a fast-path transaction whose answer was lost: our node if it applied.
    async fn took_after_lost_answer(&mut self) -> Result<FastPath, Outcome> {
        Ok(match self.find_own().await? {
            Some(node) => {
                self.node = Some(node);
                FastPath::Took(None)
            }
            None => FastPath::Declined,
        })
    }

    /// Finds our node by its uuid after a create whose answer was lost. The server we are
    /// connected to is brought up to date first (`sync`), so that a create it has not yet
    /// applied is not missed; an orphan that still appears later is removed by
    /// [`remove_orphans`](Contender::remove_orphans).
    async fn find_own(&mut self) -> Result<Option<OwnNode>, Outcome> {
        let client = &self.session.client;
        loop {
            if let Err(error) = client.sync(&self.dir).await
                && is_connection_loss(&error)
            {
                self.last_error = Some(error);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            let children = match client.list_children(&self.dir).await {
                Ok(children) => children,
                Err(zookeeper_client::Error::NoNode) => return Ok(None),
                Err(error) if is_connection_loss(&error) => {
                    self.last_error = Some(error);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(error) => return Err(Outcome::Failed(zk_error("list the lock path", error))),
            };
            let Some(name) = children
                .into_iter()
                .find(|c| c.starts_with(&self.name_prefix))
            else {
                return Ok(None);
            };
            let path = format!("{}/{name}", self.dir);
            match client.check_stat(&path).await {
                Ok(Some(stat)) => {
                    return Ok(Some(OwnNode {
                        path,
                        name,
                        czxid: stat.czxid,
                        alone: false,
                    }));
                }
                Ok(None) => return Ok(None),
                Err(error) if is_connection_loss(&error) => {
                    self.last_error = Some(error);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => return Err(Outcome::Failed(zk_error("read our lock node", error))),
            }
        }
    }

    /// Hands the node over to its holder, with the use of the lock path: dropping the
    /// contender no longer removes it.
    pub(crate) fn disarm(mut self) -> Option<PathUse> {
        self.armed = false;
        self.path_use.take()
    }

    /// Removes our node now, waiting a little; whatever is left is finished in the
    /// background (and the session's end removes the node if nothing else does).
    pub(crate) async fn withdraw(mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let cleanup = tokio::spawn(self.cleanup());
        if tokio::time::timeout(FOREGROUND_WITHDRAW, cleanup)
            .await
            .is_err()
        {
            tracing::warn!(dir = %self.dir, "lock node not removed yet; retrying in the background");
        }
    }

    /// Removes our node: by path if we know it, else by our uuid among the lock path's
    /// children (a create may have been applied though we never heard back). The use of the
    /// lock path ends once the node is gone.
    fn cleanup(&mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let path_use = self.path_use.take();
        let session = self.session.clone();
        let node = self.node.as_ref().map(|n| n.path.clone());
        let (dir, name_prefix, create_sent) =
            (self.dir.clone(), self.name_prefix.clone(), self.create_sent);
        async move {
            if !create_sent {
                drop(path_use);
                return;
            }
            let path = match node {
                Some(path) => Some(path),
                None => find_by_prefix(&session, &dir, &name_prefix).await,
            };
            if let Some(path) = path
                && let Err(error) = delete_until_gone(&session, &path).await
            {
                tracing::warn!(%path, %error, "could not remove an abandoned lock node");
            }
            drop(path_use);
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Dropped mid-attempt (the acquire future was cancelled): remove the node in the
        // background. Without a runtime the session's end removes it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.cleanup());
        }
    }
}

/// Creates `dir` and its missing parents as containers, each with the ACL [`NodeAcls`] gives
/// its path (`mkdir` would give all of them one ACL). Parents that exist are left as they are.
async fn make_dirs(
    client: &Client,
    dir: &str,
    acls: &NodeAcls,
) -> Result<(), zookeeper_client::Error> {
    // Try the deepest missing node first: usually only the lock path itself is missing.
    let mut end = dir.len();
    loop {
        let path = &dir[..end];
        let options = CreateMode::Container.with_acls(acls.dir(path));
        match client.create(path, &[], &options).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {
                if end == dir.len() {
                    return Ok(());
                }
                end = dir[end + 1..]
                    .find('/')
                    .map_or(dir.len(), |at| end + 1 + at);
            }
            Err(zookeeper_client::Error::NoNode) => match path.rfind('/') {
                Some(at) if at > 0 => end = at,
                // The root (or the chroot) itself is missing.
                _ => return Err(zookeeper_client::Error::NoNode),
            },
            Err(error) => return Err(error),
        }
    }
}

/// The zxid of a transaction that created nodes: every node it created has it as `czxid`.
/// `None` if the server sent no stat (ZOOKEEPER-4026).
fn created_zxid(results: &[MultiWriteResult]) -> Option<i64> {
    results.iter().rev().find_map(|result| match result {
        MultiWriteResult::Create { stat, .. } if !stat.is_invalid() => Some(stat.czxid),
        _ => None,
    })
}

/// How an attempt ended without winning.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Behind another node at the deadline.
    Contended,
    /// The engine failed (or the session ended).
    Failed(SyncError),
}

/// The path of the child of `dir` whose name starts with `prefix`, if any.
async fn find_by_prefix(session: &ZkSession, dir: &str, prefix: &str) -> Option<String> {
    loop {
        match session.client.list_children(dir).await {
            Ok(children) => {
                return children
                    .into_iter()
                    .find(|c| c.starts_with(prefix))
                    .map(|name| format!("{dir}/{name}"));
            }
            Err(error) if is_connection_loss(&error) => tokio::time::sleep(RETRY_PAUSE).await,
            Err(_) => return None,
        }
    }
}

/// How a node we deleted went. Only the answer to the first delete can tell that the node was
/// gone before it: after a delete whose answer was lost, a missing node or an ended session
/// may be our own delete's doing, and counts as `Removed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Our delete removed it, or may have.
    Removed,
    /// It was gone before our first delete reached it: someone else deleted it.
    AlreadyGone,
    /// The session that owned it had ended before our first delete, which removed it.
    SessionEnded,
}

/// Deletes `path`, retrying through lost connections until it is gone or the session that
/// owns it has ended (which removes it too). As H2's rescind, retried every 20 ms.
///
/// # Errors
/// The engine's refusal (e.g. an ACL), which retrying does not change.
pub(crate) async fn delete_until_gone(
    session: &ZkSession,
    path: &str,
) -> Result<Removal, SyncError> {
    let mut retried = false;
    loop {
        match session.client.delete(path, None).await {
            Ok(()) => return Ok(Removal::Removed),
            Err(zookeeper_client::Error::NoNode) if retried => return Ok(Removal::Removed),
            Err(zookeeper_client::Error::NoNode) => return Ok(Removal::AlreadyGone),
            Err(
                zookeeper_client::Error::SessionExpired
                | zookeeper_client::Error::ClientClosed
                | zookeeper_client::Error::AuthFailed,
            ) if !retried => return Ok(Removal::SessionEnded),
            Err(
                zookeeper_client::Error::SessionExpired
                | zookeeper_client::Error::ClientClosed
                | zookeeper_client::Error::AuthFailed,
            ) => return Ok(Removal::Removed),
            Err(error) if is_connection_loss(&error) => {
                // This delete's answer was lost: it may have applied.
                if session.has_ended() {
                    return Ok(Removal::Removed);
                }
                retried = true;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(error) => {
                return Err(SyncError::backend(
                    "zookeeper",
                    "delete the lock node",
                    error,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(children: &[&str]) -> Vec<String> {
        lock_children(children.iter().map(|c| (*c).to_owned()).collect())
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn children_are_ordered_by_the_number_after_the_last_lock_marker() {
        assert_eq!(
            names(&[
                "_c_b-lock-0000000010",
                "_c_a-lock-0000000002",
                "lock-0000000003",
                "_c_c-lock-lock-0000000001",
            ]),
            [
                "_c_c-lock-lock-0000000001",
                "_c_a-lock-0000000002",
                "lock-0000000003",
                "_c_b-lock-0000000010",
            ]
        );
    }

    #[test]
    fn children_that_are_not_lock_nodes_are_ignored() {
        assert!(names(&["leader", "lock-", "lock-12a", "_c_x-latch-0000000001"]).is_empty());
    }
}
