//! A consumer's unacked deliveries, by tag.
//!
//! Tags are consecutive per consumer and a delivery only ever joins at the newest end, so the
//! deliveries sit in a ring indexed by tag less the oldest unsettled one: settling one is O(1)
//! and moves no other message, where a tree map moved whole nodes of messages on every insert,
//! split and removal (a tenth of the in-memory broker's time per job).

use std::collections::VecDeque;
use std::collections::vec_deque;

use super::queue::Message;

/// Delivered and unsettled messages of one consumer, oldest first.
#[derive(Debug, Default)]
pub(super) struct Unacked {
    /// The tag of `slots[0]`.
    base: u64,
    /// One slot per tag from `base` on; `None` for a tag settled above an older unsettled one.
    /// Never starts or ends with `None`.
    slots: VecDeque<Option<Message>>,
    /// The `Some` slots.
    len: usize,
}

impl Unacked {
    /// How many deliveries are unsettled.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the delivery of `tag`, newer than every tag held.
    pub(super) fn insert(&mut self, tag: u64, message: Message) {
        if self.slots.is_empty() {
            self.base = tag;
        }
        let index = self.index(tag);
        debug_assert!(index.is_some_and(|index| index >= self.slots.len()));
        if let Some(index) = index {
            self.slots.resize_with(index, || None);
        }
        self.slots.push_back(Some(message));
        self.len += 1;
    }

    /// Whether `tag` is unsettled.
    pub(super) fn contains(&self, tag: u64) -> bool {
        self.index(tag)
            .and_then(|index| self.slots.get(index))
            .is_some_and(Option::is_some)
    }

    /// Removes the delivery of `tag`.
    pub(super) fn remove(&mut self, tag: u64) -> Option<Message> {
        let index = self.index(tag)?;
        let message = self.slots.get_mut(index)?.take()?;
        self.len -= 1;
        self.trim();
        Some(message)
    }

    /// Drops every delivery up to and including `tag` (all of them for `None`), keeping the
    /// ring's room for the deliveries to come; returns how many went.
    pub(super) fn discard_through(&mut self, tag: Option<u64>) -> usize {
        let through = tag.map_or(self.slots.len(), |tag| {
            self.index(tag)
                .map_or(0, |index| (index + 1).min(self.slots.len()))
        });
        let count = self.slots.drain(..through).filter(Option::is_some).count();
        self.len -= count;
        self.base = self
            .base
            .saturating_add(u64::try_from(through).unwrap_or(u64::MAX));
        self.trim();
        count
    }

    /// Removes every delivery up to and including `tag`, oldest first.
    pub(super) fn take_through(&mut self, tag: u64) -> Drain {
        let through = self
            .index(tag)
            .map_or(0, |index| (index + 1).min(self.slots.len()));
        let taken: VecDeque<_> = if through == self.slots.len() {
            std::mem::take(&mut self.slots)
        } else {
            self.slots.drain(..through).collect()
        };
        let count = taken.iter().filter(|slot| slot.is_some()).count();
        self.len -= count;
        self.base = self
            .base
            .saturating_add(u64::try_from(through).unwrap_or(u64::MAX));
        self.trim();
        Drain {
            slots: taken.into_iter(),
            left: count,
        }
    }

    /// Removes every delivery, oldest first.
    pub(super) fn take_all(&mut self) -> Drain {
        let taken = std::mem::take(&mut self.slots);
        let left = std::mem::take(&mut self.len);
        Drain {
            slots: taken.into_iter(),
            left,
        }
    }

    fn index(&self, tag: u64) -> Option<usize> {
        tag.checked_sub(self.base)
            .and_then(|offset| usize::try_from(offset).ok())
    }

    /// Drops the settled slots at both ends.
    fn trim(&mut self) {
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        while matches!(self.slots.back(), Some(None)) {
            self.slots.pop_back();
        }
    }
}

/// Deliveries taken out of [`Unacked`], oldest first.
#[derive(Debug)]
pub(super) struct Drain {
    slots: vec_deque::IntoIter<Option<Message>>,
    left: usize,
}

impl Iterator for Drain {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        let message = self.slots.by_ref().flatten().next()?;
        self.left -= 1;
        Some(message)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Drain {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn message(seq: u64) -> Message {
        let mut message = Message::new("".into(), "q".into(), Envelope::default());
        message.seq = seq;
        message
    }

    fn seqs(drain: Drain) -> Vec<u64> {
        drain.map(|m| m.seq).collect()
    }

    #[test]
    fn settles_alone_through_a_tag_and_all_oldest_first() {
        let mut unacked = Unacked::default();
        for tag in 1..=6 {
            unacked.insert(tag, message(tag));
        }
        assert_eq!(unacked.remove(3).map(|m| m.seq), Some(3));
        assert!(unacked.remove(3).is_none(), "settled once");
        assert!(!unacked.contains(3) && unacked.contains(4) && !unacked.contains(7));
        assert_eq!(unacked.len(), 5);
        assert_eq!(seqs(unacked.take_through(4)), [1, 2, 4]);
        assert!(!unacked.contains(4) && unacked.contains(5));
        assert_eq!(unacked.remove(6).map(|m| m.seq), Some(6));
        unacked.insert(7, message(7));
        assert_eq!(unacked.len(), 2);
        assert_eq!(seqs(unacked.take_all()), [5, 7]);
        assert!(unacked.is_empty());
        unacked.insert(8, message(8));
        assert!(unacked.contains(8) && !unacked.contains(7));
        assert_eq!(seqs(unacked.take_through(8)), [8]);
        assert!(unacked.is_empty());
    }

    #[test]
    fn discards_through_a_tag_or_all() {
        let mut unacked = Unacked::default();
        for tag in 1..=5 {
            unacked.insert(tag, message(tag));
        }
        assert!(unacked.remove(2).is_some());
        assert_eq!(unacked.discard_through(Some(3)), 2);
        assert!(!unacked.contains(3) && unacked.contains(4));
        assert_eq!(unacked.discard_through(None), 2);
        assert!(unacked.is_empty());
        unacked.insert(6, message(6));
        assert!(unacked.contains(6));
        assert_eq!(unacked.len(), 1);
    }

    #[test]
    fn the_oldest_settled_first_moves_the_base_past_settled_tags() {
        let mut unacked = Unacked::default();
        for tag in 1..=3 {
            unacked.insert(tag, message(tag));
        }
        assert!(unacked.remove(2).is_some());
        assert!(unacked.remove(1).is_some());
        assert!(unacked.contains(3) && !unacked.contains(1) && !unacked.contains(2));
        let drain = unacked.take_through(3);
        assert_eq!(drain.len(), 1);
        assert_eq!(seqs(drain), [3]);
    }
}
