//! A job's kill switch on this worker ([`KillSwitch`]): closed, it counts attempts and their
//! failures in a sliding window; when they trip it, it opens, and the job's consumer stops as
//! for a pause; after the cool-down it lets one delivery through as a probe, and closes when
//! the probe succeeds or opens again when it fails.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::consumer::Abandon;
use crate::settings::KillSwitch;

/// Buckets of the sliding window: attempts older than the window leave it a tenth at a time.
const BUCKETS: usize = 10;

/// A change of the switch that the engine reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// It opened, on these counts.
    Tripped {
        /// Failed attempts in the window.
        failures: u32,
        /// Attempts in the window.
        attempts: u32,
    },
    /// A probe succeeded.
    Closed,
}

/// One job's switch on this worker.
#[derive(Debug)]
pub(crate) struct Switch {
    config: KillSwitch,
    state: Mutex<State>,
    /// `true` while open: the job's consumer stops (see `engine::consumer`).
    open: watch::Sender<bool>,
    /// Wakes deliveries waiting for a probe to end.
    changed: Notify,
}

#[derive(Debug)]
enum State {
    Closed(Window),
    Open,
    /// After the cool-down; `probe` is the number of the probe running, if one is.
    HalfOpen {
        probe: Option<u64>,
    },
}

/// What a delivery may do: run, perhaps as the probe.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The switch and the probe's number, for the probe.
    probe: Option<(Arc<Switch>, u64)>,
}

impl Drop for Admission {
    /// A probe that ended without an outcome (its message was refused before the handler ran,
    /// or its task ended) lets another delivery be the probe.
    fn drop(&mut self) {
        if let Some((switch, number)) = self.probe.take() {
            let mut state = switch.lock();
            if let State::HalfOpen { probe } = &mut *state
                && *probe == Some(number)
            {
                *probe = None;
                drop(state);
                switch.changed.notify_waiters();
            }
        }
    }
}

impl Switch {
    /// A closed switch, and the signal that is `true` while it is open.
    pub(crate) fn new(config: KillSwitch) -> (Arc<Self>, watch::Receiver<bool>) {
        let (open, receiver) = watch::channel(false);
        let switch = Self {
            config,
            state: Mutex::new(State::Closed(Window::new(config.window))),
            open,
            changed: Notify::new(),
        };
        (Arc::new(switch), receiver)
    }

    /// Waits until a delivery may run: at once while closed; while half-open, when it is the
    /// probe or the probe closed the switch. `None` when it should not run: the switch opened,
    /// or the delivery was abandoned (its consumer stops as the switch opens).
    pub(crate) async fn admit(self: &Arc<Self>, abandon: &Abandon) -> Option<Admission> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                match &mut *state {
                    State::Closed(_) => return Some(Admission { probe: None }),
                    State::HalfOpen {
                        probe: probe @ None,
                    } => {
                        let number = next_probe_number();
                        *probe = Some(number);
                        return Some(Admission {
                            probe: Some((Arc::clone(self), number)),
                        });
                    }
                    State::HalfOpen { probe: Some(_) } | State::Open => {}
                }
            }
            tokio::select! {
                () = notified => {}
                () = abandon.lost_stopped_or_paused() => return None,
            }
        }
    }

    /// Counts an attempt's outcome, and returns the change it made, if any, after `report`ing
    /// it: before any delivery can see the new state, so that what the change lets run is
    /// reported after it.
    pub(crate) fn record(
        self: &Arc<Self>,
        failed: bool,
        report: impl FnOnce(Change),
    ) -> Option<Change> {
        let mut state = self.lock();
        let change = match &mut *state {
            State::Closed(window) => {
                let (attempts, failures) = window.record(failed, Instant::now());
                let tripped = attempts >= self.config.min_attempts
                    && f64::from(failures) >= self.config.failure_ratio * f64::from(attempts);
                tripped.then_some(Change::Tripped { failures, attempts })
            }
            // An attempt that started before the switch opened; it changes nothing.
            State::Open => None,
            State::HalfOpen { .. } if failed => Some(Change::Tripped {
                failures: 1,
                attempts: 1,
            }),
            State::HalfOpen { .. } => Some(Change::Closed),
        };
        if let Some(change) = change {
            report(change);
        }
        match change {
            Some(Change::Tripped { .. }) => {
                *state = State::Open;
                drop(state);
                self.open.send_replace(true);
                self.changed.notify_waiters();
                tokio::spawn(Arc::clone(self).half_open_after_cool_down());
            }
            Some(Change::Closed) => {
                *state = State::Closed(Window::new(self.config.window));
                drop(state);
                self.changed.notify_waiters();
            }
            None => {}
        }
        change
    }

    /// Waits out the cool-down, then lets a probe through: the consumer attaches again, and
    /// the first delivery admitted is the probe.
    async fn half_open_after_cool_down(self: Arc<Self>) {
        tokio::time::sleep(self.config.cool_down).await;
        *self.lock() = State::HalfOpen { probe: None };
        self.open.send_replace(false);
        self.changed.notify_waiters();
    }

    /// How long it stays open.
    pub(crate) fn cool_down(&self) -> Duration {
        self.config.cool_down
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A number for a probe, telling it from the probes before it.
fn next_probe_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Attempts and failures over the last `window`, in [`BUCKETS`] buckets.
#[derive(Debug)]
struct Window {
    origin: Instant,
    width: Duration,
    /// Per bucket: the slot it counts (time since `origin` in widths), attempts, failures.
    buckets: [(u64, u32, u32); BUCKETS],
}

impl Window {
    fn new(window: Duration) -> Self {
        let divisor = u32::try_from(BUCKETS).unwrap_or(u32::MAX);
        Self {
            origin: Instant::now(),
            width: (window / divisor).max(Duration::from_millis(1)),
            buckets: [(0, 0, 0); BUCKETS],
        }
    }

    /// Counts one attempt at `now`, and returns the attempts and failures in the window.
    fn record(&mut self, failed: bool, now: Instant) -> (u32, u32) {
        let width = self.width.as_nanos().max(1);
        let slot =
            u64::try_from(now.duration_since(self.origin).as_nanos() / width).unwrap_or(u64::MAX);
        let index = usize::try_from(slot % BUCKETS as u64).unwrap_or(0);
        let bucket = &mut self.buckets[index];
        if bucket.0 != slot {
            *bucket = (slot, 0, 0);
        }
        bucket.1 = bucket.1.saturating_add(1);
        bucket.2 = bucket.2.saturating_add(u32::from(failed));
        let oldest = slot.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|(counted, ..)| *counted >= oldest && *counted <= slot)
            .fold((0, 0), |(attempts, failures), (_, a, f)| {
                (attempts + a, failures + f)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_window_forgets_attempts_older_than_it() {
        let mut window = Window::new(Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..5 {
            window.record(true, start);
        }
        assert_eq!(window.record(false, start + Duration::from_secs(5)), (6, 5));
        // 10.5 s later the first five are out; the one at 5 s is not.
        assert_eq!(
            window.record(false, start + Duration::from_millis(10_500)),
            (2, 0)
        );
        assert_eq!(
            window.record(false, start + Duration::from_secs(100)),
            (1, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn it_trips_on_the_ratio_once_there_are_enough_attempts() {
        let config = KillSwitch {
            failure_ratio: 0.5,
            min_attempts: 4,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        };
        let (switch, open) = Switch::new(config);
        assert_eq!(switch.record(true, drop), None);
        assert_eq!(switch.record(true, drop), None);
        assert_eq!(
            switch.record(true, drop),
            None,
            "three attempts are too few"
        );
        assert_eq!(
            switch.record(false, drop),
            Some(Change::Tripped {
                failures: 3,
                attempts: 4
            })
        );
        assert!(*open.borrow());
        assert_eq!(
            switch.record(false, drop),
            None,
            "open: an old attempt ending"
        );
        // Just past it: the switch's own timer fires first.
        tokio::time::sleep(config.cool_down + Duration::from_millis(1)).await;
        assert!(!*open.borrow(), "half-open after the cool-down");
        assert!(matches!(*switch.lock(), State::HalfOpen { probe: None }));
        assert_eq!(
            switch.record(true, drop),
            Some(Change::Tripped {
                failures: 1,
                attempts: 1
            }),
            "a failed probe"
        );
        // Just past it: the switch's own timer fires first.
        tokio::time::sleep(config.cool_down + Duration::from_millis(1)).await;
        assert_eq!(
            switch.record(false, drop),
            Some(Change::Closed),
            "a good probe"
        );
        assert!(!*open.borrow());
    }
}
