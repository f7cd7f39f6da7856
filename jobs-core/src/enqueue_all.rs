//! Enqueueing many jobs at once, with their confirms pipelined.
//!
//! An importer or a fan-out handler that enqueues thousands of jobs one `enqueue(..).await`
//! after another waits a broker round trip per job. [`enqueue_all`] keeps up to
//! 1,000 publishes in flight and collects their confirms as they come, as a careful
//! raw-lapin publisher does, so a batch costs about one round trip per window instead of one
//! per job.
//!
//! Each job is its own message with its own outcome, exactly as if enqueued alone: the batch is
//! not atomic (RabbitMQ has no such thing across messages; the transactional outbox of the
//! `jobs-outbox` crate is the way to enqueue all or nothing with database work). On error the
//! caller learns which jobs were confirmed and which were not, so it can enqueue again exactly
//! the ones that failed; nothing is dropped silently.

use std::fmt;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt as _, StreamExt as _};

use crate::error::Error;
use crate::job::JobMessage;
use crate::message_id::MessageId;
use crate::otel;
use crate::producer::{Enqueue, Producer};
use crate::transport::Publish;

/// Publishes a batch keeps unconfirmed at most: enough to keep the broker busy across a round
/// trip, few enough that a batch of millions holds a bounded number of encoded messages.
const IN_FLIGHT: usize = 1_000;

/// Enqueues every job of `jobs`, keeping up to 1,000 unconfirmed at once, and returns
/// their message ids in the order given once the broker has confirmed them all.
///
/// `my_job::enqueue_all(&producer, messages)` calls this with each message's default options;
/// pass [`Enqueue`]s (`my_job::with(m).message_id(..)`) for per-job options. Jobs go out in the
/// order given, but as with concurrent enqueues their order in the queue is not promised.
///
/// # Errors
///
/// [`EnqueueAllError`] when any job was not enqueued: it holds every job's outcome, in order,
/// each exactly what [`Enqueue::enqueue`] would have returned for it. The other jobs were
/// still published; a job refused before publishing (too large, a priority the job does not
/// have) does not stop the rest.
pub async fn enqueue_all<M: JobMessage>(
    producer: &impl AsRef<Producer>,
    jobs: impl IntoIterator<Item = Enqueue<M>>,
) -> Result<Vec<MessageId>, EnqueueAllError> {
    let producer = producer.as_ref();
    // Each publish in the window is allocated: on RabbitMQ it holds lapin's future in place,
    // as an enqueue does; on another transport it holds the transport's small boxed one, not
    // room for RabbitMQ's (over 2 KiB) that it would never use.
    #[cfg(feature = "amqp")]
    if let Some(amqp) = producer.amqp() {
        return pipelined(producer, jobs, |publish| {
            producer.publish_in_place(amqp, publish)
        })
        .await;
    }
    pipelined(producer, jobs, |publish| producer.publish_boxed(publish)).await
}

/// [`enqueue_all`] with each job's confirmed publish made by `publish`.
async fn pipelined<M: JobMessage, P: Future<Output = crate::Result<()>>>(
    producer: &Producer,
    jobs: impl IntoIterator<Item = Enqueue<M>>,
    publish: impl Fn(Publish) -> P,
) -> Result<Vec<MessageId>, EnqueueAllError> {
    // Each job's outcome with its place in the batch, as confirms come in.
    let mut outcomes: Vec<(usize, crate::Result<MessageId>)> = Vec::new();
    let mut in_flight = FuturesOrdered::new();
    for (index, job) in jobs.into_iter().enumerate() {
        // Declared once per producer: after the first job, a lookup.
        if let Err(error) = producer.declare(job.definition()).await {
            outcomes.push((index, Err(error)));
            continue;
        }
        match job.into_message(producer) {
            Ok((id, message, span)) => {
                let publish = &publish;
                // The publish's future is made inside this one, in the window's allocation:
                // made outside, its 2 KiB on RabbitMQ would be copied in.
                in_flight.push_back(async move {
                    let result = publish(message).await;
                    match &result {
                        Ok(()) => span.end(None),
                        Err(error) => span.end(Some((otel::error_type(error), error))),
                    }
                    (index, result.map(|()| id))
                });
            }
            Err(error) => outcomes.push((index, Err(error))),
        }
        // A future does nothing until polled: polling the window now sends the publish just
        // pushed, and takes the confirms already in.
        while let Some(Some(outcome)) = in_flight.next().now_or_never() {
            outcomes.push(outcome);
        }
        while in_flight.len() >= IN_FLIGHT {
            if let Some(outcome) = in_flight.next().await {
                outcomes.push(outcome);
            }
        }
    }
    while let Some(outcome) = in_flight.next().await {
        outcomes.push(outcome);
    }
    outcomes.sort_unstable_by_key(|(index, _)| *index);
    let outcomes: Vec<crate::Result<MessageId>> =
        outcomes.into_iter().map(|(_, outcome)| outcome).collect();
    if outcomes.iter().all(Result::is_ok) {
        Ok(outcomes.into_iter().flatten().collect())
    } else {
        Err(EnqueueAllError { outcomes })
    }
}

/// Some jobs of an [`enqueue_all`] were not enqueued: every job's outcome, in the order
/// given.
#[derive(Debug)]
pub struct EnqueueAllError {
    outcomes: Vec<crate::Result<MessageId>>,
}

impl EnqueueAllError {
    /// Every job's outcome, in the order given: its message id once confirmed, or why it was
    /// not enqueued.
    pub fn outcomes(&self) -> &[crate::Result<MessageId>] {
        &self.outcomes
    }

    /// Takes the outcomes, for example to enqueue the failed jobs again.
    pub fn into_outcomes(self) -> Vec<crate::Result<MessageId>> {
        self.outcomes
    }

    /// How many jobs were not enqueued.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.is_err())
            .count()
    }

    /// The first job's error, in the order given.
    #[must_use]
    pub fn first(&self) -> Option<&Error> {
        self.outcomes
            .iter()
            .find_map(|outcome| outcome.as_ref().err())
    }
}

impl fmt::Display for EnqueueAllError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} jobs not enqueued",
            self.failed(),
            self.outcomes.len()
        )?;
        if let Some(error) = self.first() {
            write!(f, ", the first: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EnqueueAllError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.first().map(|error| error as _)
    }
}
