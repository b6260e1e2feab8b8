//! Metric buckets, as H2 named them (h2-behaviour.md §7), recorded through the `Instrumenter`.
//!
//! H2 sent its `sync.*` counters without a value, so they never reached statsd; ours count 1
//! per event.

use std::time::Duration;

use kernel_inst::Instrumenter;

/// The buckets of one kind of lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LockMetrics {
    /// Timing of every acquire attempt, successful or not.
    pub(crate) acquire: &'static str,
    /// Counter of acquired locks.
    pub(crate) success: &'static str,
    /// Counter of failed acquires (contention or engine failure).
    pub(crate) failure: &'static str,
    /// Counter of locks lost before unlock.
    pub(crate) lost: &'static str,
}

/// ZooKeeper region locks, and the in-memory backend that stands in for them.
pub(crate) const REGION_LOCK: LockMetrics = LockMetrics {
    acquire: "sync.regionlock.acquire",
    success: "sync.regionlock.acquire.success",
    failure: "sync.regionlock.acquire.failure",
    lost: "sync.regionlock.lost",
};

/// The Cassandra global lock.
#[cfg_attr(not(feature = "cassandra"), allow(dead_code))]
pub(crate) const GLOBAL_LOCK: LockMetrics = LockMetrics {
    acquire: "sync.globaltimedlock.acquire",
    success: "sync.globaltimedlock.acquire.success",
    failure: "sync.globaltimedlock.acquire.failure",
    lost: "sync.globaltimedlock.lost",
};

/// A contender removed a lock node whose recorded expiry had passed.
#[cfg_attr(not(feature = "zookeeper"), allow(dead_code))]
pub(crate) const REGION_LOCK_REAPED: &str = "sync.regionlock.reaped";

/// A candidate became leader.
pub(crate) const LEADER_ELECTED: &str = "sync.regionleader.elected";
/// A leader gave up its leadership (rescind or drop).
pub(crate) const LEADER_RESCINDED: &str = "sync.regionleader.rescinded";
/// A leader lost its leadership otherwise: node deleted, session expired or suspended.
pub(crate) const LEADER_REMOTELY_RESCINDED: &str = "sync.regionleader.remotely-rescinded";

impl LockMetrics {
    /// Records one acquire attempt's time and outcome.
    pub(crate) fn record_acquire(self, inst: &dyn Instrumenter, elapsed: Duration, ok: bool) {
        inst.timing(self.acquire, elapsed, 1.0);
        inst.counter(if ok { self.success } else { self.failure }, 1, 1.0);
    }
}

/// Counts one event.
pub(crate) fn count(inst: &dyn Instrumenter, bucket: &str) {
    inst.counter(bucket, 1, 1.0);
}
