//! When a periodic job runs: a cron expression in a time zone, or a fixed period.

use std::fmt;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};

/// What a slot that passed while no worker ran becomes.
///
/// A slot counts as missed when its tick comes more than a minute late (no worker ran, or
/// none could reach the broker); a tick held back less than that, by a takeover or a busy
/// broker, fires its own slot whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Missed {
    /// The latest missed slot runs once when a worker is back, however many passed; the ones
    /// before it are skipped. The default, as a cron daemon with catch-up (anacron) or
    /// Sidekiq's and Celery beat's behaviour on a late tick.
    #[default]
    FireOnce,
    /// Missed slots are skipped: the next run is the next slot to come.
    Skip,
}

impl Missed {
    /// The attribute's spelling: `fire-once` or `skip`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FireOnce => "fire-once",
            Self::Skip => "skip",
        }
    }
}

/// A job's schedule as its `#[job]` attribute spells it; [`Schedule::parse`] checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// A cron expression with seconds first: `sec min hour day-of-month month day-of-week
    /// [year]`, as `"0 */5 * * * *"` (every five minutes) or `"0 0 9 * * Mon-Fri"`.
    pub cron: Option<&'static str>,
    /// A fixed period in whole seconds; its slots fall on multiples of it since the Unix
    /// epoch, the same on every worker.
    pub every: Option<Duration>,
    /// The IANA time zone a cron expression is read in (`Europe/Paris`); `UTC` by default.
    pub timezone: &'static str,
    /// What a missed slot becomes.
    pub missed: Missed,
}

/// A checked schedule: the slots at which a periodic job runs.
#[derive(Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron(Box<cron::Schedule>, Tz),
    Every(u64),
}

impl Schedule {
    /// Checks `spec`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a malformed cron expression, an unknown time zone, a period that
    /// is not a whole number of seconds (at least one), or neither or both of `cron` and
    /// `every`.
    pub fn parse(spec: ScheduleSpec) -> Result<Self> {
        let kind = match (spec.cron, spec.every) {
            (Some(expression), None) => {
                let schedule = cron::Schedule::from_str(expression).map_err(|err| {
                    Error::Config(format!("invalid schedule `{expression}`: {err}"))
                })?;
                let zone = spec
                    .timezone
                    .parse::<Tz>()
                    .map_err(|_| Error::Config(format!("unknown time zone `{}`", spec.timezone)))?;
                Kind::Cron(Box::new(schedule), zone)
            }
            (None, Some(period)) => {
                if period.subsec_nanos() != 0 || period.as_secs() == 0 {
                    return Err(Error::Config(format!(
                        "a schedule's period is whole seconds, at least one: not {period:?}"
                    )));
                }
                Kind::Every(period.as_secs())
            }
            _ => {
                return Err(Error::Config(
                    "a schedule is a cron expression or a period, one of them".into(),
                ));
            }
        };
        Ok(Self { spec, kind })
    }

    /// What the attribute said.
    #[must_use]
    pub fn spec(&self) -> ScheduleSpec {
        self.spec
    }

    /// What a missed slot becomes.
    #[must_use]
    pub fn missed(&self) -> Missed {
        self.spec.missed
    }

    /// The first slot strictly after `time`; `None` when the schedule has no more (a cron
    /// expression with a past year).
    #[must_use]
    pub fn next_after(&self, time: SystemTime) -> Option<SystemTime> {
        match &self.kind {
            Kind::Cron(schedule, zone) => {
                let after = DateTime::<Utc>::from(time).with_timezone(zone);
                let next = schedule.after(&after).next()?;
                Some(SystemTime::from(next.with_timezone(&Utc)))
            }
            Kind::Every(period) => {
                let seconds = unix_seconds(time);
                let next = (seconds / period + 1).checked_mul(*period)?;
                Some(UNIX_EPOCH + Duration::from_secs(next))
            }
        }
    }

    /// The latest slot at or before `time`; `None` when there is none.
    #[must_use]
    pub fn latest_at_or_before(&self, time: SystemTime) -> Option<SystemTime> {
        match &self.kind {
            Kind::Cron(schedule, zone) => {
                // Slots fall on whole seconds: the second of `time`, if it is one, counts.
                let second = UNIX_EPOCH + Duration::from_secs(unix_seconds(time));
                let at = DateTime::<Utc>::from(second).with_timezone(zone);
                if schedule.includes(at) {
                    return Some(second);
                }
                let previous = schedule.after(&at).next_back()?;
                Some(SystemTime::from(previous.with_timezone(&Utc)))
            }
            Kind::Every(period) => {
                let seconds = unix_seconds(time);
                Some(UNIX_EPOCH + Duration::from_secs(seconds / period * period))
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Cron(_, zone) => write!(f, "cron `{}` ({zone})", self.spec.cron.unwrap_or("")),
            Kind::Every(period) => write!(
                f,
                "every {}",
                humantime_seconds(Duration::from_secs(*period))
            ),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Whole seconds since the Unix epoch; 0 before it.
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    crate::message_id::since_epoch(time).as_secs()
}

/// `5m`, `1h30m`, `45s`.
fn humantime_seconds(period: Duration) -> String {
    let mut left = period.as_secs();
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= size {
            text.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expression: &'static str, timezone: &'static str) -> Schedule {
        Schedule::parse(ScheduleSpec {
            cron: Some(expression),
            every: None,
            timezone,
            missed: Missed::FireOnce,
        })
        .unwrap()
    }

    fn every(seconds: u64) -> Schedule {
        Schedule::parse(ScheduleSpec {
            cron: None,
            every: Some(Duration::from_secs(seconds)),
            timezone: "UTC",
            missed: Missed::Skip,
        })
        .unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_period_falls_on_its_multiples_since_the_epoch() {
        let five = every(300);
        assert_eq!(five.next_after(at(1_000)), Some(at(1_200)));
        assert_eq!(five.next_after(at(1_200)), Some(at(1_500)));
        assert_eq!(five.latest_at_or_before(at(1_200)), Some(at(1_200)));
        assert_eq!(five.latest_at_or_before(at(1_499)), Some(at(1_200)));
        assert_eq!(five.to_string(), "every 5m");
    }

    #[test]
    fn a_cron_expression_is_read_in_its_time_zone() {
        // 09:00 in Paris, 2026-11-30 (UTC+1): 08:00 UTC.
        let nine = cron("0 0 9 * * *", "Europe/Paris");
        let midnight = at(1_796_000_000 - 1_796_000_000 % 86_400);
        assert_eq!(
            nine.next_after(midnight),
            Some(midnight + Duration::from_secs(8 * 3600))
        );
        let five = cron("0 */5 * * * *", "UTC");
        assert_eq!(five.next_after(at(1_000)), Some(at(1_200)));
        assert_eq!(five.latest_at_or_before(at(1_200)), Some(at(1_200)));
        assert_eq!(five.latest_at_or_before(at(1_199)), Some(at(900)));
        assert_eq!(five.to_string(), "cron `0 */5 * * * *` (UTC)");
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let bad = |spec| Schedule::parse(spec).unwrap_err().to_string();
        let spec = ScheduleSpec {
            cron: Some("every minute"),
            every: None,
            timezone: "UTC",
            missed: Missed::FireOnce,
        };
        assert!(bad(spec).contains("invalid schedule `every minute`"));
        let spec = ScheduleSpec {
            cron: Some("0 * * * * *"),
            timezone: "Mars/Olympus",
            ..spec
        };
        assert!(bad(spec).contains("unknown time zone `Mars/Olympus`"));
        let spec = ScheduleSpec {
            cron: None,
            every: Some(Duration::from_millis(1500)),
            ..spec
        };
        assert!(bad(spec).contains("whole seconds"));
    }
}
