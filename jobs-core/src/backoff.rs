//! Delays between attempts.

use std::time::Duration;

/// The delays between a job's attempts.
///
/// Each distinct delay is one retry queue on the broker (`Q.retry.N`), whose TTL is that delay,
/// so a message never waits behind a longer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// The listed delays in turn; retries past the end reuse the last.
    Steps(&'static [Duration]),
    /// `initial`, then each delay `factor` times the one before, up to `max`.
    Exponential {
        /// The first delay.
        initial: Duration,
        /// What each delay is multiplied by.
        factor: u32,
        /// The longest delay.
        max: Duration,
    },
}

impl Default for Backoff {
    /// 1 s, doubling, capped at 5 minutes.
    fn default() -> Self {
        Self::Exponential {
            initial: Duration::from_secs(1),
            factor: 2,
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Steps decided at run time, from configuration.
    ///
    /// A job definition is a `static`, so its steps are too: these are leaked, once, which
    /// suits configuration read at startup.
    #[must_use]
    pub fn steps(delays: Vec<Duration>) -> Self {
        Self::Steps(Vec::leak(delays))
    }

    /// The distinct delays used by `retries` retries, in order: one retry queue each.
    ///
    /// Retry `n` (from 1) waits `levels[min(n, levels.len()) - 1]`.
    #[must_use]
    pub fn levels(&self, retries: u32) -> Vec<Duration> {
        let retries = retries as usize;
        match self {
            Self::Steps(steps) => steps.iter().copied().take(retries).collect(),
            Self::Exponential {
                initial,
                factor,
                max,
            } => {
                let mut levels = Vec::new();
                let mut delay = (*initial).min(*max);
                while levels.len() < retries {
                    levels.push(delay);
                    let next = delay.saturating_mul(*factor).min(*max);
                    if next == delay {
                        break;
                    }
                    delay = next;
                }
                levels
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn default_doubles_from_one_second() {
        assert_eq!(Backoff::default().levels(5), secs(&[1, 2, 4, 8, 16]));
    }

    #[test]
    fn exponential_stops_adding_levels_at_the_cap() {
        let backoff = Backoff::Exponential {
            initial: Duration::from_secs(1),
            factor: 3,
            max: Duration::from_secs(10),
        };
        assert_eq!(backoff.levels(10), secs(&[1, 3, 9, 10]));
    }

    #[test]
    fn steps_are_cut_to_the_retries() {
        let backoff = Backoff::steps(secs(&[1, 5, 30]));
        assert_eq!(backoff.levels(2), secs(&[1, 5]));
        assert_eq!(backoff.levels(9), secs(&[1, 5, 30]));
        assert!(backoff.levels(0).is_empty());
    }

    #[test]
    fn a_factor_of_one_is_a_single_level() {
        let backoff = Backoff::Exponential {
            initial: Duration::from_secs(2),
            factor: 1,
            max: Duration::from_secs(60),
        };
        assert_eq!(backoff.levels(4), secs(&[2]));
    }
}
