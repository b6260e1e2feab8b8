//! [`Window`]: counts over a rolling span of time, in slots that age out as time passes.
//!
//! Used by the circuit breaker (successes and failures over 10 s) and the retry budget
//! (deposits and withdrawals over 10 s). The window moves with **elapsed time**, whatever
//! happened meanwhile: after an idle spell as long as the window, everything in it is gone.
//! (H2's breaker library moved one slot per recorded event, so stale counts outlived an idle
//! spell.) Nothing here reads a clock: instants are passed in.

use std::time::{Duration, Instant};

/// How many slots a window has: each covers a tenth of the window (H2's 10 × 1 s).
pub(crate) const SLOTS: usize = 10;

/// A rolling window of [`SLOTS`] slots of `T`. An event counts until the slot it fell in is
/// reused, a whole window after that slot began: for between 9/10 of the window and all of it.
#[derive(Clone, Debug)]
pub(crate) struct Window<T> {
    slot: Duration,
    slots: [T; SLOTS],
    /// The slot now being written.
    head: usize,
    /// When the head slot began; `None` until the first event.
    head_start: Option<Instant>,
}

impl<T: Default + Copy> Window<T> {
    /// A window spanning `span` (at least one nanosecond per slot).
    pub(crate) fn new(span: Duration) -> Self {
        let slot = (span / SLOTS as u32).max(Duration::from_nanos(1));
        Window {
            slot,
            slots: [T::default(); SLOTS],
            head: 0,
            head_start: None,
        }
    }

    /// Moves the window to `now`: the slots that are more than a window old are cleared.
    /// An instant earlier than the head slot's start (two threads racing) counts as that start.
    pub(crate) fn advance(&mut self, now: Instant) {
        let Some(start) = self.head_start else {
            self.head_start = Some(now);
            return;
        };
        let steps = now.saturating_duration_since(start).as_nanos() / self.slot.as_nanos();
        if steps == 0 {
            return;
        }
        if steps >= SLOTS as u128 {
            self.clear();
            self.head_start = Some(now);
            return;
        }
        // steps < SLOTS, so these conversions are exact.
        for _ in 0..steps {
            self.head = (self.head + 1) % SLOTS;
            self.slots[self.head] = T::default();
        }
        self.head_start = Some(start + self.slot * steps as u32);
    }

    /// The slot being written (call [`advance`](Self::advance) first).
    pub(crate) fn head_mut(&mut self) -> &mut T {
        &mut self.slots[self.head]
    }

    /// Every slot, in no particular order.
    pub(crate) fn slots(&self) -> &[T; SLOTS] {
        &self.slots
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.slots = [T::default(); SLOTS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(window: &Window<u32>) -> u32 {
        window.slots().iter().sum()
    }

    fn at(t: Instant, ms: u64) -> Instant {
        t + Duration::from_millis(ms)
    }

    #[test]
    fn counts_age_out_slot_by_slot_as_time_passes() {
        let t = Instant::now();
        let mut window = Window::<u32>::new(Duration::from_secs(10));
        window.advance(t);
        *window.head_mut() += 3; // slot [0 s, 1 s)
        window.advance(at(t, 4_500));
        *window.head_mut() += 2; // slot [4 s, 5 s)
        window.advance(at(t, 9_999));
        assert_eq!(sum(&window), 5);
        // At 10 s the first slot is a whole window old.
        window.advance(at(t, 10_000));
        assert_eq!(sum(&window), 2);
        // The slot of 4.5 s goes when the slot of 14 s begins (an event counts for 9 to 10 s).
        window.advance(at(t, 13_999));
        assert_eq!(sum(&window), 2);
        window.advance(at(t, 14_000));
        assert_eq!(sum(&window), 0);
    }

    #[test]
    fn an_idle_spell_as_long_as_the_window_clears_it_however_few_events() {
        let t = Instant::now();
        let mut window = Window::<u32>::new(Duration::from_secs(10));
        window.advance(t);
        *window.head_mut() += 100;
        // One event after a long idle spell: H2's window moved one slot and kept the 100.
        window.advance(at(t, 3_600_000));
        assert_eq!(sum(&window), 0);
        *window.head_mut() += 1;
        assert_eq!(sum(&window), 1);
    }

    #[test]
    fn an_instant_from_the_past_writes_the_head_slot() {
        let t = Instant::now();
        let mut window = Window::<u32>::new(Duration::from_secs(10));
        window.advance(at(t, 5_000));
        window.advance(t);
        *window.head_mut() += 1;
        window.advance(at(t, 5_999));
        assert_eq!(sum(&window), 1);
    }
}
