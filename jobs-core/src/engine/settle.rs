//! The settle pipeline: handlers report outcomes here, and acks go to the broker in batches.
//!
//! Handlers finish out of order. Delivery tags are consecutive per consumer, so the lowest
//! unsettled tag (the floor) tells which run of tags is fully acked: that run goes out as one
//! `multiple = true` ack. Tags that finish above a gap are acked one by one at the end of each
//! batch, so one slow handler never holds back the acks (and the prefetch credit) of the others.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::broker::FailedReturn;
use crate::transport::{Settle, Settlement};

/// How a handler's delivery ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its outcome is durable: ack.
    Ack,
    /// Give it back to the broker, not as a failure of the delivery: unrun at shutdown or
    /// pause, aborted at the shutdown deadline, or its consumer gone. `basic.nack` with
    /// requeue, which RabbitMQ counts toward a quorum queue's delivery limit before 4.3 and
    /// not from 4.3 on.
    Requeue,
    /// Give it back as failed: its outcome could not be made durable, or its task panicked.
    /// Counted toward the delivery limit on every version (the crash-loop backstop), with the
    /// settlement that counts on the broker's: [`FailedReturn`].
    Failed,
}

/// A delivery's promise to be settled exactly once: [`send`](Self::send) reports its verdict,
/// and one dropped without it (aborted at the shutdown deadline, given up unrun) requeues the
/// delivery. A panic outside the handler is caught by the handler task, which sends
/// [`Verdict::Failed`] itself. Without it, one unsettled tag would hold a prefetch slot for
/// good and stop the ack coalescing from ever passing it.
#[derive(Debug)]
pub(crate) struct SettleOnce {
    tag: u64,
    outcomes: Option<mpsc::UnboundedSender<(u64, Verdict)>>,
}

impl SettleOnce {
    pub(crate) fn new(tag: u64, outcomes: mpsc::UnboundedSender<(u64, Verdict)>) -> Self {
        Self {
            tag,
            outcomes: Some(outcomes),
        }
    }

    /// Reports the delivery's verdict.
    pub(crate) fn send(mut self, verdict: Verdict) {
        if let Some(outcomes) = self.outcomes.take() {
            // A closed pipeline means the channel is gone: the broker takes the delivery back.
            let _ = outcomes.send((self.tag, verdict));
        }
    }
}

impl Drop for SettleOnce {
    fn drop(&mut self) {
        if let Some(outcomes) = self.outcomes.take() {
            let _ = outcomes.send((self.tag, Verdict::Requeue));
        }
    }
}

/// The most outcomes settled together.
const BATCH: usize = 1024;

/// Settles outcomes until every sender is gone, then hands the settler back. Stops early, also
/// handing the settler back, when the channel refuses a settlement: it is gone, and the broker
/// redelivers whatever was unsettled.
pub(crate) async fn run(
    settler: Box<dyn Settle>,
    mut outcomes: mpsc::UnboundedReceiver<(u64, Verdict)>,
    failed_return: FailedReturn,
) -> Box<dyn Settle> {
    let mut batch = Vec::new();
    let mut settlements = Vec::new();
    let mut acks = Acks {
        failed_return,
        ..Acks::default()
    };
    while outcomes.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            // Once the other tasks that are ready have run, more outcomes are in: settled
            // together, they make fewer settlements and fewer wake-ups of this task, where
            // settling each at once cost a wake-up and a settlement per job.
            tokio::task::yield_now().await;
            while batch.len() < BATCH {
                match outcomes.try_recv() {
                    Ok(outcome) => batch.push(outcome),
                    Err(_) => break,
                }
            }
        }
        acks.settle_into(&batch, &mut settlements);
        for &settlement in &settlements {
            if let Err(err) = settler.settle(settlement).await {
                tracing::warn!(error = %err, "settling failed; the broker redelivers what was unsettled");
                return settler;
            }
        }
        batch.clear();
        settlements.clear();
    }
    settler
}

/// The bookkeeping that turns out-of-order outcomes into as few settlements as possible.
#[derive(Debug)]
struct Acks {
    /// How a [`Verdict::Failed`] delivery goes back.
    failed_return: FailedReturn,
    /// Every tag up to here is settled.
    floor: u64,
    /// Whether each tag from `floor + 1` on is settled (`floor + 1` itself never is, or the
    /// floor would be past it): a window rather than a set, as handlers finish close to
    /// delivery order.
    above: VecDeque<bool>,
    /// Reused buffer of the acks of a batch not yet sent.
    fresh: Vec<u64>,
}

impl Default for Acks {
    fn default() -> Self {
        Self {
            failed_return: FailedReturn::Nack,
            floor: 0,
            above: VecDeque::new(),
            fresh: Vec::new(),
        }
    }
}

impl Acks {
    #[cfg(test)]
    fn settle(&mut self, batch: &[(u64, Verdict)]) -> Vec<Settlement> {
        let mut out = Vec::new();
        self.settle_into(batch, &mut out);
        out
    }

    /// Marks `tag`, above the floor, as settled; `false` when it was already.
    fn settle_above(&mut self, tag: u64) -> bool {
        let Some(index) = tag
            .checked_sub(self.floor + 1)
            .and_then(|offset| usize::try_from(offset).ok())
        else {
            return false;
        };
        if index >= self.above.len() {
            self.above.resize(index + 1, false);
        }
        !std::mem::replace(&mut self.above[index], true)
    }

    /// Appends to `out` the settlements of `batch`.
    fn settle_into(&mut self, batch: &[(u64, Verdict)], out: &mut Vec<Settlement>) {
        // Requeues first: a later `multiple` ack must not be the one that settles them.
        for &(tag, verdict) in batch {
            let requeue = Settlement::Nack {
                tag,
                multiple: false,
                requeue: true,
            };
            match (verdict, self.failed_return) {
                (Verdict::Ack, _) => {}
                (Verdict::Requeue, _) | (Verdict::Failed, FailedReturn::Nack) => out.push(requeue),
                (Verdict::Failed, FailedReturn::Reject) => {
                    out.push(Settlement::Reject { tag, requeue: true });
                }
            }
        }
        let mut fresh = std::mem::take(&mut self.fresh);
        for &(tag, verdict) in batch {
            // In order, the common case, the floor just moves up: no window to keep.
            let in_order = tag == self.floor + 1;
            if in_order {
                self.floor = tag;
                self.above.pop_front();
            }
            if (in_order || (tag > self.floor && self.settle_above(tag))) && verdict == Verdict::Ack
            {
                fresh.push(tag);
            }
            while self.above.front() == Some(&true) {
                self.above.pop_front();
                self.floor += 1;
            }
        }
        // A `multiple` ack must name a tag the broker still holds unacked: the highest tag
        // acked in this batch at or below the floor. It also settles every earlier fresh ack;
        // tags settled alone before are no longer unacked, so it does not touch them.
        if let Some(&tag) = fresh.iter().filter(|&&tag| tag <= self.floor).max() {
            out.push(Settlement::Ack {
                tag,
                multiple: true,
            });
        }
        out.extend(
            fresh
                .iter()
                .filter(|&&tag| tag > self.floor)
                .map(|&tag| Settlement::Ack {
                    tag,
                    multiple: false,
                }),
        );
        fresh.clear();
        self.fresh = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(list: &[u64]) -> Vec<(u64, Verdict)> {
        list.iter().map(|&tag| (tag, Verdict::Ack)).collect()
    }

    #[test]
    fn a_contiguous_run_is_one_multiple_ack() {
        let mut state = Acks::default();
        assert_eq!(
            state.settle(&acks(&[2, 1, 3])),
            [Settlement::Ack {
                tag: 3,
                multiple: true
            }]
        );
    }

    #[test]
    fn tags_above_a_gap_are_acked_alone_and_not_again() {
        let mut state = Acks::default();
        assert_eq!(
            state.settle(&acks(&[1, 3, 4])),
            [
                Settlement::Ack {
                    tag: 1,
                    multiple: true
                },
                Settlement::Ack {
                    tag: 3,
                    multiple: false
                },
                Settlement::Ack {
                    tag: 4,
                    multiple: false
                },
            ]
        );
        // The gap fills: the floor moves past 3 and 4, and only 2 still needs acking.
        assert_eq!(
            state.settle(&acks(&[2])),
            [Settlement::Ack {
                tag: 2,
                multiple: true
            }]
        );
        assert_eq!(
            state.settle(&acks(&[5])),
            [Settlement::Ack {
                tag: 5,
                multiple: true
            }]
        );
    }

    #[test]
    fn requeues_go_first_and_are_never_covered_by_a_multiple_ack() {
        let mut state = Acks::default();
        let batch = [(1, Verdict::Ack), (2, Verdict::Requeue), (3, Verdict::Ack)];
        assert_eq!(
            state.settle(&batch),
            [
                Settlement::Nack {
                    tag: 2,
                    multiple: false,
                    requeue: true
                },
                Settlement::Ack {
                    tag: 3,
                    multiple: true
                },
            ]
        );
        let mut state = Acks::default();
        let batch = [(1, Verdict::Ack), (2, Verdict::Requeue)];
        assert_eq!(
            state.settle(&batch),
            [
                Settlement::Nack {
                    tag: 2,
                    multiple: false,
                    requeue: true
                },
                Settlement::Ack {
                    tag: 1,
                    multiple: true
                },
            ],
            "never a multiple ack of the nacked tag"
        );
    }

    #[test]
    fn a_failed_delivery_goes_back_with_the_settlement_that_counts_on_the_broker() {
        let batch = [
            (1, Verdict::Failed),
            (2, Verdict::Requeue),
            (3, Verdict::Ack),
        ];
        let mut before_4_3 = Acks::default();
        assert_eq!(
            before_4_3.settle(&batch)[..2],
            [
                Settlement::Nack {
                    tag: 1,
                    multiple: false,
                    requeue: true
                },
                Settlement::Nack {
                    tag: 2,
                    multiple: false,
                    requeue: true
                },
            ],
            "before 4.3, exactly the nacks sent before versions were read"
        );
        let mut from_4_3 = Acks {
            failed_return: FailedReturn::Reject,
            ..Acks::default()
        };
        assert_eq!(
            from_4_3.settle(&batch),
            [
                Settlement::Reject {
                    tag: 1,
                    requeue: true
                },
                Settlement::Nack {
                    tag: 2,
                    multiple: false,
                    requeue: true
                },
                Settlement::Ack {
                    tag: 3,
                    multiple: true
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_promise_dropped_without_a_verdict_requeues_and_a_sent_one_is_not_sent_twice() {
        let (outcomes, mut received) = mpsc::unbounded_channel();
        SettleOnce::new(1, outcomes.clone()).send(Verdict::Failed);
        let aborted = SettleOnce::new(2, outcomes.clone());
        let task = tokio::spawn(async move {
            let _promise = aborted;
            std::future::pending::<()>().await;
        });
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        drop(SettleOnce::new(3, outcomes));
        let mut got = Vec::new();
        received.recv_many(&mut got, 8).await;
        assert_eq!(
            got,
            [
                (1, Verdict::Failed),
                (2, Verdict::Requeue),
                (3, Verdict::Requeue)
            ]
        );
    }

    #[test]
    fn a_requeue_alone_sends_no_ack() {
        let mut state = Acks::default();
        assert_eq!(
            state.settle(&[(1, Verdict::Requeue)]),
            [Settlement::Nack {
                tag: 1,
                multiple: false,
                requeue: true
            }]
        );
        assert_eq!(
            state.settle(&acks(&[2])),
            [Settlement::Ack {
                tag: 2,
                multiple: true
            }]
        );
    }
}
