//! The scheduler of one periodic job, in every worker that serves it: it consumes the job's
//! tick queue, where the broker lets one worker at a time receive, and turns each tick into
//! the job's run for that slot and the tick of the next slot.
//!
//! A tick is handled in this order, each step confirmed before the next: the run, the next
//! tick, the record of the slot fired, the ack. A worker that dies anywhere in between leaves
//! the tick unacked, and the broker hands it to the next active scheduler:
//!
//! * before the record, the slot fires again, under the same message id (a duplicate that the
//!   id names), and the next tick may be published twice: the second of each pair finds its
//!   slot recorded when it arrives, and goes without a successor;
//! * after the record, the tick is a duplicate, and goes.
//!
//! So a takeover fires a slot at most twice, and leaves one chain of ticks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;

use super::spec::{Missed, Schedule};
use super::ticks::{self, LastFired};
use crate::engine::StopSignal;
use crate::error::Result;
use crate::job::Job;
use crate::producer::Producer;
use crate::transport::{Delivery, Settlement, Transport};

/// A tick up to this early (the cascade counts whole seconds, rounded down) waits for its
/// slot; an earlier one (another worker's clock ahead of this one's) is sent again.
const EARLY: Duration = Duration::from_secs(1);
/// A tick up to this late fires its own slot; a later one stands for every slot it missed
/// (see [`Missed`]).
const CATCH_UP: Duration = Duration::from_secs(60);
/// The longest pause between two tries of a failed step.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// One job's scheduler.
pub(crate) struct Scheduler {
    pub(crate) job: &'static Job,
    pub(crate) schedule: Schedule,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) producer: Producer,
    /// Who this worker is, in the record of each slot it fires.
    pub(crate) identity: Arc<str>,
}

/// The last slot fired, as the active scheduler knows it.
#[derive(Clone, Copy, Debug)]
enum LastSlot {
    /// Not read yet in this consumer's time as the active one.
    Unknown,
    /// Read, or recorded by this scheduler since (`None`: no slot fired yet).
    Known(Option<SystemTime>),
}

/// What became of a tick.
#[derive(Debug, PartialEq, Eq)]
enum Handled {
    /// Its slot, or a later one, was fired before: it goes, without a successor.
    Duplicate,
    /// It came early, and was sent again to arrive on time.
    Delayed,
    /// Its slot (or, for a late tick, the latest slot) fired, or was skipped, and the next tick
    /// is on its way.
    Fired,
}

impl Scheduler {
    /// Keeps the scheduler running until the stop signal: starts a chain of ticks (a
    /// duplicate of a running chain goes at its first slot), then consumes the tick queue,
    /// attaching again whenever the consumer ends.
    pub(crate) async fn supervise(self, mut stop: StopSignal) {
        let queue = ticks::tick_queue(self.job);
        let mut pause = Duration::from_millis(100);
        loop {
            match self.start_chain().await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(job = self.job.name(), %error, retry_in = ?pause, "could not start the schedule");
                }
            }
            if wait_or_stop(&mut stop, pause).await {
                return;
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
        loop {
            if stop.borrow().is_some() {
                return;
            }
            let consumer = match self.transport.consume(&queue, 1).await {
                Ok(consumer) => consumer,
                Err(error) => {
                    tracing::warn!(queue, %error, retry_in = ?pause, "could not attach the scheduler");
                    if wait_or_stop(&mut stop, pause).await {
                        return;
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
            };
            pause = Duration::from_millis(100);
            let mut deliveries = consumer.deliveries;
            // While this consumer is the active one, no other scheduler fires a slot: the
            // last slot fired is read from the broker once, then kept here.
            let mut last = LastSlot::Unknown;
            loop {
                let delivery = tokio::select! {
                    _ = stop.wait_for(Option::is_some) => return,
                    next = deliveries.next() => match next {
                        Some(delivery) => delivery,
                        None => break,
                    },
                };
                let tag = delivery.tag;
                let Some(handled) = self
                    .handle_until_done(&delivery, &mut last, &mut stop)
                    .await
                else {
                    // Stopping: the unacked tick goes back to the queue with the channel.
                    return;
                };
                tracing::debug!(job = self.job.name(), ?handled, "tick handled");
                let acked = consumer
                    .settler
                    .settle(Settlement::Ack {
                        tag,
                        multiple: false,
                    })
                    .await;
                if let Err(error) = acked {
                    // The channel is gone, and the broker gives the tick to the next
                    // scheduler, which finds its slot recorded.
                    tracing::warn!(queue, %error, "could not ack a tick; attaching again");
                    break;
                }
            }
            tracing::info!(queue, "scheduler consumer ended; attaching again");
        }
    }

    /// Starts a chain of ticks: one for the next slot, and for a missed slot (when the
    /// schedule fires missed slots once) one due now.
    async fn start_chain(&self) -> Result<()> {
        let now = self.transport.now();
        let last = ticks::last_fired(self.transport.as_ref(), self.job).await?;
        if let (Some(LastFired { slot: last, .. }), Missed::FireOnce) =
            (&last, self.schedule.missed())
            && let Some(latest) = self.schedule.latest_at_or_before(now)
            && latest > *last
        {
            self.producer
                .publish(ticks::tick(self.job, latest, Duration::ZERO)?)
                .await?;
        }
        if let Some(next) = self.schedule.next_after(now) {
            let delay = next.duration_since(now).unwrap_or_default();
            self.producer
                .publish(ticks::tick(self.job, next, delay)?)
                .await?;
        }
        Ok(())
    }

    /// Handles a tick, trying again after a pause while a step fails; `None` when the stop
    /// signal came first.
    async fn handle_until_done(
        &self,
        delivery: &Delivery,
        last: &mut LastSlot,
        stop: &mut StopSignal,
    ) -> Option<Handled> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.handle(delivery, last).await {
                Ok(handled) => return Some(handled),
                Err(error) => {
                    // A step may have gone through before the error: read the record again.
                    *last = LastSlot::Unknown;
                    tracing::warn!(job = self.job.name(), %error, retry_in = ?pause, "could not handle a tick; trying again");
                }
            }
            if wait_or_stop(stop, pause).await {
                return None;
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    async fn handle(&self, delivery: &Delivery, last: &mut LastSlot) -> Result<Handled> {
        let Some(slot) = ticks::slot_of(&delivery.envelope) else {
            tracing::warn!(job = self.job.name(), "a tick without a slot; dropped");
            return Ok(Handled::Duplicate);
        };
        let last_slot = match *last {
            LastSlot::Known(slot) => slot,
            LastSlot::Unknown => ticks::last_fired(self.transport.as_ref(), self.job)
                .await?
                .map(|last| last.slot),
        };
        *last = LastSlot::Known(last_slot);
        let now = self.transport.now();
        let decision = decide(&self.schedule, slot, last_slot, now);
        let Decision::Go { fire, record, next } = decision else {
            if decision == Decision::Early {
                let delay = slot.duration_since(now).unwrap_or_default();
                self.producer
                    .publish(ticks::tick(self.job, slot, delay)?)
                    .await?;
                return Ok(Handled::Delayed);
            }
            return Ok(Handled::Duplicate);
        };
        if let Some(fire) = fire {
            // A tick comes up to a second early (see `ticks::tick`): the rest is waited here.
            if let Ok(early) = fire.duration_since(self.transport.now()) {
                tokio::time::sleep(early).await;
            }
            self.producer.publish(ticks::run(self.job, fire)).await?;
            tracing::info!(job = self.job.name(), slot = %ticks::run_id(self.job, fire), "scheduled job enqueued");
        }
        if let Some(next) = next {
            let delay = next.duration_since(now).unwrap_or_default();
            self.producer
                .publish(ticks::tick(self.job, next, delay)?)
                .await?;
        }
        self.producer
            .publish(ticks::record(self.job, record, &self.identity))
            .await?;
        *last = LastSlot::Known(Some(record));
        Ok(Handled::Fired)
    }
}

/// What to do with the tick of `slot`, given the last slot fired and the time.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// `slot`, or a later one, was fired: drop the tick.
    Duplicate,
    /// The tick came early: send it again.
    Early,
    /// Fire `fire` (when a slot is to run), record `record`, and send the tick of `next`.
    Go {
        fire: Option<SystemTime>,
        record: SystemTime,
        next: Option<SystemTime>,
    },
}

fn decide(
    schedule: &Schedule,
    slot: SystemTime,
    last: Option<SystemTime>,
    now: SystemTime,
) -> Decision {
    if last.is_some_and(|last| slot <= last) {
        return Decision::Duplicate;
    }
    if slot > now + EARLY {
        return Decision::Early;
    }
    // A tick a takeover or a busy broker held back a little fires its own slot, and its
    // successor, already due, follows at once: no slot is lost to a hiccup. A tick that
    // waited while no worker ran may be for a slot long gone: the latest due slot stands for
    // every slot missed.
    let late = now.duration_since(slot).unwrap_or_default();
    let latest = if late <= CATCH_UP {
        slot
    } else {
        schedule
            .latest_at_or_before(now)
            .map_or(slot, |latest| latest.max(slot))
    };
    let fire = if latest > slot && schedule.missed() == Missed::Skip {
        None
    } else {
        Some(latest)
    };
    Decision::Go {
        fire,
        record: latest,
        next: schedule.next_after(latest),
    }
}

/// Waits `pause`; `true` when the stop signal came first.
async fn wait_or_stop(stop: &mut StopSignal, pause: Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(Option::is_some) => true,
        () = tokio::time::sleep(pause) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::schedule::ScheduleSpec;

    fn every_minute(missed: Missed) -> Schedule {
        Schedule::parse(ScheduleSpec {
            cron: None,
            every: Some(Duration::from_secs(60)),
            timezone: "UTC",
            missed,
        })
        .unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_tick_on_time_fires_its_slot_and_sends_the_next() {
        let schedule = every_minute(Missed::FireOnce);
        assert_eq!(
            decide(&schedule, at(600), Some(at(540)), at(600)),
            Decision::Go {
                fire: Some(at(600)),
                record: at(600),
                next: Some(at(660))
            }
        );
    }

    #[test]
    fn a_tick_at_or_before_the_last_slot_fired_is_a_duplicate() {
        let schedule = every_minute(Missed::FireOnce);
        assert_eq!(
            decide(&schedule, at(600), Some(at(600)), at(601)),
            Decision::Duplicate
        );
        assert_eq!(
            decide(&schedule, at(540), Some(at(600)), at(601)),
            Decision::Duplicate
        );
    }

    #[test]
    fn a_late_tick_fires_the_latest_slot_once_or_skips_it() {
        let once = every_minute(Missed::FireOnce);
        assert_eq!(
            decide(&once, at(600), Some(at(540)), at(3_605)),
            Decision::Go {
                fire: Some(at(3_600)),
                record: at(3_600),
                next: Some(at(3_660))
            }
        );
        let skip = every_minute(Missed::Skip);
        assert_eq!(
            decide(&skip, at(600), Some(at(540)), at(3_605)),
            Decision::Go {
                fire: None,
                record: at(3_600),
                next: Some(at(3_660))
            }
        );
    }

    #[test]
    fn a_tick_held_back_less_than_a_minute_fires_its_own_slot() {
        for missed in [Missed::FireOnce, Missed::Skip] {
            assert_eq!(
                decide(&every_minute(missed), at(600), Some(at(540)), at(659)),
                Decision::Go {
                    fire: Some(at(600)),
                    record: at(600),
                    next: Some(at(660))
                }
            );
        }
    }

    #[test]
    fn an_early_tick_is_sent_again() {
        let schedule = every_minute(Missed::FireOnce);
        assert_eq!(decide(&schedule, at(600), None, at(590)), Decision::Early);
        assert!(matches!(
            decide(&schedule, at(600), None, at(599)),
            Decision::Go { .. }
        ));
    }
}
