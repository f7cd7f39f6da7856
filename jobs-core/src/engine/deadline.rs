//! A handler's deadline, with its timer made only for a handler that waits.
//!
//! `tokio::time::timeout` carries its timer inside the future, a few hundred bytes more of the
//! future every delivery builds in its handler task, and a timer set up per job. A handler that
//! finishes at its first poll needs neither; one that waits pays one allocation for the timer,
//! next to the waiting it does anyway.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// The deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Late;

pin_project_lite::pin_project! {
    /// Runs `future` until `deadline`, as `tokio::time::timeout_at` does: the future is polled
    /// first, so one that is ready is never late.
    pub(super) struct Within<F> {
        #[pin]
        future: F,
        deadline: Instant,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// `future`, given until `deadline`.
pub(super) fn within<F: Future>(deadline: Instant, future: F) -> Within<F> {
    Within {
        future,
        deadline,
        timer: None,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Late>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).map(|()| Err(Late))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ready_future_is_in_time_and_a_late_one_is_not() {
        let now = Instant::now();
        assert_eq!(within(now, async { 7 }).await, Ok(7));
        let waits = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            8
        };
        assert_eq!(within(now + Duration::from_secs(2), waits).await, Ok(8));
        let late = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(
            within(Instant::now() + Duration::from_secs(2), late).await,
            Err(Late)
        );
        assert_eq!(Instant::now() - now, Duration::from_secs(3));
    }
}
