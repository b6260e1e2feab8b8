//! [`Breakers`]: a client's breakers, one per (service, endpoint), created on first use and
//! bounded in number; [`BreakerSettings`]: which options each key runs with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use kernel_inst::Instrumenter;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::machine::{Breaker, Permit, Transition, Verdict};
use super::{BreakerOptions, CircuitState};
use crate::BuildError;

/// The most (service, endpoint) breakers a client keeps. Past it the least recently used is
/// dropped (and starts closed if that key is called again). Keys come from the calling code,
/// not from the wire, so a service reaches this only if it builds endpoint names from data.
pub const MAX_CIRCUITS: u64 = 10_000;

/// Which [`BreakerOptions`] each (service, endpoint) runs with: one default, and overrides
/// for single endpoints.
///
/// ```
/// use kernel_client::{BreakerOptions, BreakerSettings};
///
/// let settings = BreakerSettings::new(BreakerOptions::new())
///     .endpoint("com.example.flaky", "get", BreakerOptions::new().min_samples(10))
///     .endpoint("com.example.batch", "run", BreakerOptions::disabled());
/// assert_eq!(
///     settings.options_for("com.example.flaky", "get"),
///     BreakerOptions::new().min_samples(10)
/// );
/// assert!(!settings.options_for("com.example.batch", "run").is_enabled());
/// assert_eq!(settings.options_for("com.example.other", "get"), BreakerOptions::new());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BreakerSettings {
    default: BreakerOptions,
    /// service → endpoint → options (nested, so a lookup by `&str` allocates nothing).
    endpoints: HashMap<String, HashMap<String, BreakerOptions>>,
}

impl BreakerSettings {
    /// Every endpoint runs with `default`.
    pub fn new(default: BreakerOptions) -> Self {
        BreakerSettings {
            default,
            endpoints: HashMap::new(),
        }
    }

    /// `service`'s `endpoint` runs with `options` instead of the default.
    #[must_use]
    pub fn endpoint(
        mut self,
        service: impl Into<String>,
        endpoint: impl Into<String>,
        options: BreakerOptions,
    ) -> Self {
        self.set_endpoint(service.into(), endpoint.into(), options);
        self
    }

    /// The options endpoints without their own run with.
    pub fn default_options(&self) -> BreakerOptions {
        self.default
    }

    /// The options `service`'s `endpoint` runs with.
    pub fn options_for(&self, service: &str, endpoint: &str) -> BreakerOptions {
        self.endpoints
            .get(service)
            .and_then(|endpoints| endpoints.get(endpoint))
            .copied()
            .unwrap_or(self.default)
    }

    /// Checks every options value is in range (disabled ones included).
    ///
    /// # Errors
    /// [`BuildError::OutOfRange`] naming the first value that is not.
    pub fn check(&self) -> Result<(), BuildError> {
        self.default.check()?;
        self.endpoints
            .values()
            .flat_map(HashMap::values)
            .try_for_each(BreakerOptions::check)
    }

    pub(crate) fn set_default(&mut self, options: BreakerOptions) {
        self.default = options;
    }

    pub(crate) fn set_endpoint(
        &mut self,
        service: String,
        endpoint: String,
        options: BreakerOptions,
    ) {
        self.endpoints
            .entry(service)
            .or_default()
            .insert(endpoint, options);
    }
}

/// A client's breakers.
pub(crate) struct Breakers {
    /// Read on every call; written by [`replace`](Self::replace). Circuits are created and
    /// re-configured under it, so none is left with options from before a change.
    settings: RwLock<BreakerSettings>,
    /// Hashed with foldhash: every call looks its circuit up, and the keys are the pairs this
    /// program calls (at most `MAX_CIRCUITS` kept).
    circuits: Cache<String, Arc<Circuit>, foldhash::fast::RandomState>,
    instrumenter: Arc<dyn Instrumenter>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("circuits", &self.circuits.entry_count())
            .finish_non_exhaustive()
    }
}

fn key(service: &str, endpoint: &str) -> String {
    // NUL cannot occur in AMQP header values as our transports send them.
    format!("{service}\0{endpoint}")
}

/// Runs `f` with the [`key`] of `service`'s `endpoint`, built on the stack when it is short
/// (every call looks its circuit up, and names are short), else allocated.
fn with_key<R>(service: &str, endpoint: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buffer = [0u8; 128];
    if let Some(room) = buffer.get_mut(..service.len() + 1 + endpoint.len()) {
        let (head, tail) = room.split_at_mut(service.len());
        head.copy_from_slice(service.as_bytes());
        tail[0] = 0;
        tail[1..].copy_from_slice(endpoint.as_bytes());
        if let Ok(key) = std::str::from_utf8(room) {
            return f(key);
        }
    }
    f(&key(service, endpoint))
}

impl Breakers {
    /// Breakers with `settings` (checked by the caller), counted on `instrumenter`.
    pub(crate) fn new(settings: BreakerSettings, instrumenter: Arc<dyn Instrumenter>) -> Self {
        Breakers {
            settings: RwLock::new(settings),
            circuits: Cache::builder()
                .max_capacity(MAX_CIRCUITS)
                .eviction_policy(EvictionPolicy::lru())
                .build_with_hasher(foldhash::fast::RandomState::default()),
            instrumenter,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BreakerSettings> {
        self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The breaker of `service`'s `endpoint`, created closed on first use; `None` if that key
    /// has no breaker (disabled).
    pub(crate) fn circuit(&self, service: &str, endpoint: &str) -> Option<Arc<Circuit>> {
        let settings = self.read();
        let options = settings.options_for(service, endpoint);
        if !options.is_enabled() {
            return None;
        }
        Some(with_key(service, endpoint, |key| {
            self.circuits.get_with_by_ref(key, || {
                Arc::new(Circuit::new(
                    service,
                    endpoint,
                    options,
                    Arc::clone(&self.instrumenter),
                ))
            })
        }))
    }

    /// Where the breaker of `service`'s `endpoint` stands at `now` (closed if it has none).
    /// Creates nothing and takes no probe.
    pub(crate) fn state(&self, service: &str, endpoint: &str, now: Instant) -> CircuitState {
        self.circuits
            .get(&key(service, endpoint))
            .map_or(CircuitState::Closed, |circuit| circuit.state(now))
    }

    /// The (service, endpoint) pairs whose breaker is not closed at `now`, sorted.
    pub(crate) fn not_closed(&self, now: Instant) -> Vec<(String, String, CircuitState)> {
        let mut found: Vec<_> = self
            .circuits
            .iter()
            .filter_map(|(_, circuit)| {
                let state = circuit.state(now);
                (state != CircuitState::Closed)
                    .then(|| (circuit.service.clone(), circuit.endpoint.clone(), state))
            })
            .collect();
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        found
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> BreakerSettings {
        self.read().clone()
    }

    /// Puts `settings` in force. A key whose options are unchanged keeps its state; one whose
    /// options changed starts afresh (closed) with the new ones; a disabled one is dropped.
    pub(crate) fn replace(&self, settings: BreakerSettings) -> Result<(), BuildError> {
        settings.check()?;
        let mut current = self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, circuit) in &self.circuits {
            let options = settings.options_for(&circuit.service, &circuit.endpoint);
            if !options.is_enabled() {
                self.circuits.invalidate(key.as_str());
                continue;
            }
            let mut machine = circuit.lock();
            if *machine.options() != options {
                machine.reset(options);
                tracing::info!(
                    service = %circuit.service,
                    endpoint = %circuit.endpoint,
                    "circuit breaker options changed: closed, counts cleared"
                );
            }
        }
        *current = settings;
        Ok(())
    }
}

/// The breaker of one (service, endpoint), with its metric names.
pub(crate) struct Circuit {
    service: String,
    endpoint: String,
    machine: Mutex<Breaker>,
    instrumenter: Arc<dyn Instrumenter>,
    opened: String,
    half_opened: String,
    closed: String,
    rejected: String,
}

impl Circuit {
    fn new(
        service: &str,
        endpoint: &str,
        options: BreakerOptions,
        instrumenter: Arc<dyn Instrumenter>,
    ) -> Self {
        let base = format!("client.circuit.{service}.{endpoint}");
        Circuit {
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
            machine: Mutex::new(Breaker::new(options)),
            instrumenter,
            opened: format!("{base}.open"),
            half_opened: format!("{base}.halfopen"),
            closed: format!("{base}.closed"),
            // H2's name.
            rejected: format!("client.error.{service}.{endpoint}.circuitbroken"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self, now: Instant) -> CircuitState {
        self.lock().state(now)
    }

    /// Leave to send one attempt at `now`, or `None` (counted) while the breaker is open.
    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Option<Ticket> {
        let permit = self.lock().admit(now);
        match permit {
            None => {
                self.instrumenter.counter(&self.rejected, 1, 1.0);
                None
            }
            Some(permit) => {
                if permit.is_probe() {
                    self.instrumenter.counter(&self.half_opened, 1, 1.0);
                    tracing::info!(
                        service = %self.service,
                        endpoint = %self.endpoint,
                        "circuit half-open: sending one probe"
                    );
                }
                Some(Ticket {
                    circuit: Arc::clone(self),
                    permit: Some(permit),
                })
            }
        }
    }

    fn record(&self, permit: Permit, verdict: Verdict, now: Instant) {
        let transition = self.lock().record(permit, verdict, now);
        match transition {
            Some(Transition::Opened { backoff }) => {
                self.instrumenter.counter(&self.opened, 1, 1.0);
                tracing::warn!(
                    service = %self.service,
                    endpoint = %self.endpoint,
                    ?backoff,
                    "circuit opened: calls fail with CircuitBroken until a probe succeeds"
                );
            }
            Some(Transition::Closed) => {
                self.instrumenter.counter(&self.closed, 1, 1.0);
                tracing::info!(
                    service = %self.service,
                    endpoint = %self.endpoint,
                    "circuit closed: the probe succeeded"
                );
            }
            None => {}
        }
    }
}

/// One attempt's leave from its breaker. [`record`](Self::record) its outcome; dropped
/// without one (the call was cancelled, or ran out of time before sending), a probe is
/// handed back.
pub(crate) struct Ticket {
    circuit: Arc<Circuit>,
    permit: Option<Permit>,
}

impl Ticket {
    /// Records how the attempt went.
    pub(crate) fn record(mut self, verdict: Verdict, now: Instant) {
        if let Some(permit) = self.permit.take() {
            self.circuit.record(permit, verdict, now);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.circuit.lock().abandon(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kernel_inst::MemoryInstrumenter;

    use super::*;

    #[test]
    fn a_key_is_the_same_built_on_the_stack_or_allocated() {
        let long = "e".repeat(200);
        for (service, endpoint) in [("svc", "hello"), ("", ""), ("svc", long.as_str())] {
            with_key(service, endpoint, |k| assert_eq!(k, key(service, endpoint)));
        }
    }

    const SVC: &str = "com.example.flaky";

    fn touchy() -> BreakerOptions {
        BreakerOptions::new()
            .min_samples(2)
            .threshold(0.5)
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn trip(breakers: &Breakers, endpoint: &str, now: Instant) {
        let circuit = breakers.circuit(SVC, endpoint).expect("enabled");
        for _ in 0..2 {
            circuit
                .admit(now)
                .expect("closed")
                .record(Verdict::Failure, now);
        }
        assert_eq!(breakers.state(SVC, endpoint, now), CircuitState::Open);
    }

    #[test]
    fn keys_have_their_own_breakers_and_state_creates_none() {
        let t = Instant::now();
        let breakers = Breakers::new(
            BreakerSettings::new(touchy()),
            Arc::new(MemoryInstrumenter::new()),
        );
        assert_eq!(breakers.state(SVC, "a", t), CircuitState::Closed);
        assert_eq!(breakers.circuits.iter().count(), 0);
        trip(&breakers, "a", t);
        assert_eq!(breakers.state(SVC, "b", t), CircuitState::Closed);
        assert_eq!(
            breakers.not_closed(t),
            [(SVC.to_owned(), "a".to_owned(), CircuitState::Open)]
        );
    }

    #[test]
    fn disabled_keys_have_no_breaker() {
        let settings =
            BreakerSettings::new(touchy()).endpoint(SVC, "off", BreakerOptions::disabled());
        let breakers = Breakers::new(settings, Arc::new(MemoryInstrumenter::new()));
        assert!(breakers.circuit(SVC, "off").is_none());
        assert!(breakers.circuit(SVC, "on").is_some());
        let all_off = Breakers::new(
            BreakerSettings::new(BreakerOptions::disabled()),
            Arc::new(MemoryInstrumenter::new()),
        );
        assert!(all_off.circuit(SVC, "on").is_none());
    }

    #[test]
    fn new_settings_keep_the_state_of_keys_whose_options_did_not_change() {
        let t = Instant::now();
        let breakers = Breakers::new(
            BreakerSettings::new(touchy()),
            Arc::new(MemoryInstrumenter::new()),
        );
        for endpoint in ["same", "changed", "dropped"] {
            trip(&breakers, endpoint, t);
        }
        let settings = BreakerSettings::new(touchy())
            .endpoint(SVC, "changed", touchy().min_samples(3))
            .endpoint(SVC, "dropped", BreakerOptions::disabled());
        breakers.replace(settings.clone()).expect("valid");
        assert_eq!(breakers.state(SVC, "same", t), CircuitState::Open);
        assert_eq!(breakers.state(SVC, "changed", t), CircuitState::Closed);
        assert_eq!(breakers.state(SVC, "dropped", t), CircuitState::Closed);
        assert!(breakers.circuit(SVC, "dropped").is_none());
        assert_eq!(breakers.settings(), settings);
        // Out-of-range settings are refused and change nothing.
        let bad = BreakerSettings::new(touchy().threshold(2.0));
        assert!(breakers.replace(bad).is_err());
        assert_eq!(breakers.state(SVC, "same", t), CircuitState::Open);
    }

    #[test]
    fn transitions_and_rejections_are_counted() {
        let t = Instant::now();
        let memory = Arc::new(MemoryInstrumenter::new());
        let breakers = Breakers::new(BreakerSettings::new(touchy()), memory.clone());
        trip(&breakers, "a", t);
        let circuit = breakers.circuit(SVC, "a").expect("enabled");
        assert!(circuit.admit(t).is_none());
        // A dropped probe is handed back: the next caller probes.
        let half = t + Duration::from_millis(100);
        drop(circuit.admit(half).expect("probe"));
        circuit
            .admit(half)
            .expect("probe again")
            .record(Verdict::Success, half);
        assert_eq!(breakers.state(SVC, "a", half), CircuitState::Closed);
        let snapshot = memory.snapshot();
        let count = |name: &str| snapshot.counter(name);
        assert_eq!(count("client.circuit.com.example.flaky.a.open"), Some(1));
        assert_eq!(
            count("client.circuit.com.example.flaky.a.halfopen"),
            Some(2)
        );
        assert_eq!(count("client.circuit.com.example.flaky.a.closed"), Some(1));
        assert_eq!(
            count("client.error.com.example.flaky.a.circuitbroken"),
            Some(1)
        );
    }
}
