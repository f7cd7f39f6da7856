//! The slots of a job with `max_running` that this worker holds (see [`crate::control`]): it
//! consumes the job's queue with one delivery in flight per slot, so the handlers running across
//! every worker never outnumber the slots.

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::SelectAll;
use tokio::sync::{oneshot, watch};

use crate::control;
use crate::envelope::Envelope;
use crate::error::Result;
use crate::transport::{ReplyStream, Transport};

/// How long a worker holding no slot waits before it tries again; up to half as long again
/// is added, so that workers waiting together do not try together.
pub(super) const RETRY: Duration = Duration::from_secs(1);

/// Slots held; dropping it lets go of them.
#[derive(Debug)]
pub(super) struct Held {
    count: u16,
    /// `true` once one of them is lost (its channel closed): the consumer must stop, as the
    /// limit no longer covers its deliveries.
    lost: watch::Receiver<bool>,
    /// Dropped with `Held`, which makes the task holding the slots let go of them.
    _release: oneshot::Sender<()>,
}

impl Held {
    /// How many.
    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// `true` once one is lost.
    pub(super) fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }
}

/// Takes up to `want` of the `max` slots of `job` that no other worker holds, trying them from
/// a place of its own so that workers starting together spread; `None` when every slot is held.
///
/// # Errors
///
/// Connection errors, and a slot queue that is missing.
pub(super) async fn acquire(
    transport: &dyn Transport,
    job: &str,
    max: u16,
    want: u16,
) -> Result<Option<Held>> {
    let start = spread(max);
    let mut holds = SelectAll::<Hold>::new();
    let mut count: u16 = 0;
    for step in 0..max {
        if count == want {
            break;
        }
        let slot = (start + step) % max;
        if let Some(hold) = transport.hold(&control::slot_queue(job, slot)).await? {
            holds.push(with_end(hold));
            count += 1;
        }
    }
    if count == 0 {
        return Ok(None);
    }
    let (lost_sender, lost) = watch::channel(false);
    let (release, released) = oneshot::channel();
    tokio::spawn(keep(holds, lost_sender, released));
    Ok(Some(Held {
        count,
        lost,
        _release: release,
    }))
}

/// Holds the slots until released, reporting the first one lost (its stream ends).
async fn keep(
    mut holds: SelectAll<Hold>,
    lost: watch::Sender<bool>,
    mut released: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut released => return,
            item = holds.next() => match item {
                // A slot queue holds no messages; one that arrives anyway means nothing.
                Some(Some(_)) => {}
                Some(None) | None => {
                    lost.send_replace(true);
                    // The others stay held until the engine lets go of them all.
                    let _ = released.await;
                    return;
                }
            },
        }
    }
}

/// A hold's stream, with `None` after its last message: the hold ended.
type Hold = std::pin::Pin<Box<dyn futures_util::Stream<Item = Option<Envelope>> + Send>>;

fn with_end(hold: ReplyStream) -> Hold {
    Box::pin(
        hold.map(Some)
            .chain(futures_util::stream::once(std::future::ready(None))),
    )
}

/// Where this worker starts trying slots: from the clock and the process id.
fn spread(max: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let mixed = nanos ^ std::process::id().rotate_left(16);
    u16::try_from(mixed % u32::from(max.max(1))).unwrap_or(0)
}

/// A pause before trying for a slot again: [`RETRY`] and up to half of it more.
pub(super) fn retry_after() -> Duration {
    let jitter = u64::from(spread(500));
    RETRY + Duration::from_millis(jitter)
}
