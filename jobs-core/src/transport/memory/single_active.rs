//! Single active consumer (`x-single-active-consumer`, on quorum and classic queues): of a
//! queue's consumers, only the earliest attached one that is not cancelled receives
//! deliveries; the others wait and hold nothing.
//!
//! As in RabbitMQ 3.10 (`rabbit_fifo`'s `single_active` strategy, and classic queues alike),
//! when the active consumer is cancelled or its channel closes, the next one in attach order
//! becomes active at once. A cancelled consumer keeps its unacked deliveries until it settles
//! them or its channel closes.
//!
//! What a closing channel gives back goes ahead of every message never delivered (as any
//! return does here: at its original place in a classic queue, in the order it came back in a
//! quorum queue), so the new active consumer gets those messages first. Neither broker keeps the queue's order across a hand-over in general: when the
//! old consumer was cancelled first, the new one may take newer messages before the old
//! channel gives its messages back, and RabbitMQ makes no promise about that order either.

use super::queue::Queue;

impl Queue {
    /// The consumer the next delivery goes to: the single active consumer if it has credit,
    /// or else none, on a single-active-consumer queue; the next one with credit in
    /// round-robin order on any other.
    pub(super) fn next_recipient(&self) -> Option<usize> {
        if self.args.single_active {
            self.active_consumer()
                .filter(|&index| self.consumers[index].has_credit())
        } else {
            self.next_with_credit()
        }
    }

    /// The single active consumer: the earliest attached one not cancelled.
    fn active_consumer(&self) -> Option<usize> {
        self.consumers
            .iter()
            .position(super::consumer::ConsumerState::is_consuming)
    }
}
