//! Region locks and leaders on the three-server ZooKeeper ensemble while the ensemble's
//! leader dies. Run by `cargo xtask test --cluster` only (docs/services.md, "Cluster tests"):
//! it kills and restarts `zk-N` of `cargo xtask services up --cluster`.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel_sync::{
    ElectionExt, FencingToken, LockBackendExt, LockGuard, LossReason, Namespace, ZkLockBackend,
};
use kernel_testkit::{cluster_address, kill_node};
use support::{unique_name, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(30);

/// How long after the kill the test keeps watching: past the session timeout (6 s) by
/// enough for a session that could not move to have expired and its locks to have passed on.
const WATCH: Duration = Duration::from_secs(14);

/// The ensemble's connect string, as `services up --cluster` wrote it: all three servers.
fn ensemble() -> String {
    let hosts = cluster_address("KERNEL_ZK_HOSTS");
    assert_eq!(hosts.split(',').count(), 3, "KERNEL_ZK_HOSTS = {hosts}");
    hosts
}

/// A backend on its own session; `grace` is the suspension grace (the default, or `0.0`:
/// a holder gives up as soon as its connection drops, as Curator's default does).
async fn backend(hosts: &str, namespace: &Namespace, grace: f64) -> ZkLockBackend {
    within(
        BOUND,
        "a ZooKeeper session on the ensemble",
        ZkLockBackend::builder(hosts.to_owned(), namespace.clone())
            .suspension_grace(grace)
            .connect(),
    )
    .await
    .unwrap()
}

/// The `Mode:` a server reports to the `srvr` four-letter word (`leader`, `follower`), or
/// `None` if it does not answer with one (down, or between elections).
async fn mode(host: &str) -> Option<String> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
        stream.write_all(b"srvr").await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        answer
            .lines()
            .find_map(|line| line.strip_prefix("Mode: "))
            .map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// The nodes (`zk-1`..`zk-3`) whose server answers `srvr`, with their mode.
async fn modes() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for i in 1..=3 {
        if let Some(mode) = mode(&cluster_address(&format!("KERNEL_ZK_{i}_HOST"))).await {
            found.push((format!("zk-{i}"), mode));
        }
    }
    found
}

/// Waits until `live` servers answer, one of them as the leader, and returns its node name.
async fn leader_of(live: usize) -> String {
    within(BOUND, "an ensemble with one leader", async {
        loop {
            let modes = modes().await;
            let leaders: Vec<_> = modes.iter().filter(|(_, m)| m == "leader").collect();
            if modes.len() == live && leaders.len() == 1 {
                return leaders[0].0.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// Something that happened to a lock, and when.
#[derive(Clone, Copy, Debug)]
struct Stamped<T> {
    at: Instant,
    what: T,
}

/// A region lock held on one session, watched for loss, with a contender on another
/// session that keeps trying to take it.
struct HeldLock {
    id: &'static str,
    guard: LockGuard,
    lost: Arc<Mutex<Option<Stamped<LossReason>>>>,
    got: Arc<Mutex<Option<Stamped<FencingToken>>>>,
    contender: JoinHandle<Result<(), kernel_sync::SyncError>>,
}

impl HeldLock {
    async fn take(hosts: &str, namespace: &Namespace, id: &'static str, grace: f64) -> Self {
        let guard = backend(hosts, namespace, grace)
            .await
            .lock(id)
            .hold_for(Duration::from_secs(120))
            .acquire()
            .await
            .unwrap();
        let lost: Arc<Mutex<Option<Stamped<LossReason>>>> = Arc::default();
        {
            let (signal, lost) = (guard.loss_signal(), lost.clone());
            tokio::spawn(async move {
                let what = signal.lost().await;
                *lost.lock().unwrap() = Some(Stamped {
                    at: Instant::now(),
                    what,
                });
            });
        }
        let got: Arc<Mutex<Option<Stamped<FencingToken>>>> = Arc::default();
        let contender = {
            let backend = backend(hosts, namespace, ZkLockBackend::DEFAULT_SUSPENSION_GRACE).await;
            let got = got.clone();
            tokio::spawn(async move {
                loop {
                    let attempt = backend
                        .lock(id)
                        .wait_for(Duration::from_secs(2))
                        .acquire()
                        .await;
                    match attempt {
                        Ok(next) => {
                            *got.lock().unwrap() = Some(Stamped {
                                at: Instant::now(),
                                what: next.fencing_token(),
                            });
                            return next.unlock().await;
                        }
                        // Contended, or the ensemble was between leaders: try again.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        HeldLock {
            id,
            guard,
            lost,
            got,
            contender,
        }
    }

    /// Checks the holder kept the lock or was told before the contender got it, then lets
    /// the contender in (unlocking if still held) and checks its token is higher. Returns
    /// whether the holder kept the lock.
    async fn check(self, killed_at: Instant) -> bool {
        let HeldLock {
            id,
            guard,
            lost,
            got,
            contender,
        } = self;
        let first_token = guard.fencing_token();
        let lost = *lost.lock().unwrap();
        let early = *got.lock().unwrap();
        let kept = match (lost, early) {
            (None, None) => {
                eprintln!("{id}: the holder kept its lock: its session moved");
                guard.unlock().await.unwrap();
                true
            }
            (Some(lost), None) => {
                eprintln!(
                    "{id}: the holder was told ({}) {:.1?} after the kill",
                    lost.what,
                    lost.at - killed_at
                );
                false
            }
            (Some(lost), Some(got)) => {
                assert!(
                    lost.at < got.at,
                    "{id}: the holder was told {} only {:?} after the contender got the lock",
                    lost.what,
                    lost.at - got.at
                );
                eprintln!(
                    "{id}: the holder was told ({}) {:.1?} after the kill, {:.1?} before the \
                     contender got the lock",
                    lost.what,
                    lost.at - killed_at,
                    got.at - lost.at
                );
                false
            }
            (None, Some(got)) => panic!(
                "{id}: the contender got the lock ({:?} after the kill) while its holder still \
                 believed it held it",
                got.at - killed_at
            ),
        };
        within(BOUND, "the contender's turn", contender)
            .await
            .unwrap()
            .unwrap();
        let next = got.lock().unwrap().unwrap();
        assert!(
            next.what > first_token,
            "{:?} after {first_token:?}",
            next.what
        );
        kept
    }
}

/// One candidate of the election: runs for leader until `stop`, runs again after each loss,
/// and counts itself in `leading` while it believes it leads; `overlaps` counts every term
/// that began while another candidate still believed it led.
async fn candidate(
    backend: ZkLockBackend,
    leading: Arc<AtomicUsize>,
    overlaps: Arc<AtomicUsize>,
    terms: Arc<Mutex<Vec<FencingToken>>>,
    stop: CancellationToken,
) {
    loop {
        let elected = tokio::select! {
            elected = backend.leader("scheduler") => elected,
            () = stop.cancelled() => return,
        };
        let Ok(leadership) = elected else {
            // The session died while campaigning: campaign again on a new one.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if leading.fetch_add(1, Ordering::SeqCst) != 0 {
            overlaps.fetch_add(1, Ordering::SeqCst);
        }
        terms.lock().unwrap().push(leadership.fencing_token());
        let lost = tokio::select! {
            reason = leadership.rescinded() => Some(reason),
            () = stop.cancelled() => None,
        };
        leading.fetch_sub(1, Ordering::SeqCst);
        match lost {
            Some(reason) => eprintln!("a leader was told its term ended: {reason}"),
            None => {
                leadership.rescind().await;
                return;
            }
        }
    }
}

/// With region locks held and a leader elected on the ensemble, the ensemble's leader server
/// is killed. Each lock's holder either keeps it (its session moves to a surviving server) or
/// is told it lost it before its contender acquires it, and the contender's token is higher:
/// one holder has the default suspension grace (it may keep its lock), one has none (its
/// connection drops when the ensemble loses its leader, so it is told). At every moment at
/// most one candidate believes it leads (the candidates have no grace, so a leader whose
/// connection drops hands over), and once the ensemble has a new leader, so does the
/// election. The killed server is restarted at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holders_and_a_leader_keep_or_are_told_first_when_the_zk_leader_dies() {
    let hosts = ensemble();
    let namespace = Namespace::new(unique_name("zkcluster")).unwrap();
    let zk_leader = leader_of(3).await;

    let graceful = HeldLock::take(
        &hosts,
        &namespace,
        "nightly-close",
        ZkLockBackend::DEFAULT_SUSPENSION_GRACE,
    )
    .await;
    let strict = HeldLock::take(&hosts, &namespace, "hourly-close", 0.0).await;

    // The election: three candidates, each on its own session.
    let leading = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let terms: Arc<Mutex<Vec<FencingToken>>> = Arc::default();
    let stop = CancellationToken::new();
    let mut candidates = Vec::new();
    for _ in 0..3 {
        candidates.push(tokio::spawn(candidate(
            backend(&hosts, &namespace, 0.0).await,
            leading.clone(),
            overlaps.clone(),
            terms.clone(),
            stop.clone(),
        )));
    }
    within(BOUND, "a first leader", async {
        while leading.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Kill the ensemble's leader.
    let killed_at = Instant::now();
    let killed = kill_node(&zk_leader).await;
    let new_zk_leader = leader_of(2).await;
    eprintln!(
        "killed {zk_leader}; {new_zk_leader} leads the ensemble after {:.1?}",
        killed_at.elapsed()
    );
    tokio::time::sleep_until(killed_at + WATCH).await;

    // The locks: kept, or lost and then (only then) passed on.
    graceful.check(killed_at).await;
    assert!(
        !strict.check(killed_at).await,
        "a holder without grace kept its lock through the ensemble's election"
    );

    // The election: never two leaders, and a leader again after the failover.
    within(BOUND, "a leader after the failover", async {
        while leading.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two leaders at once");
    stop.cancel();
    for candidate in candidates {
        within(BOUND, "the candidates to stop", candidate)
            .await
            .unwrap();
    }
    let terms = terms.lock().unwrap().clone();
    assert!(terms.windows(2).all(|w| w[0] < w[1]), "{terms:?}");
    eprintln!("election: {} terms, never two at once", terms.len());

    let took = killed.restart().await;
    eprintln!("restarted {zk_leader} in {took:.1?}");
    leader_of(3).await;
}
