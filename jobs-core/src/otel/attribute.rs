//! The attribute names the spans carry: the semantic conventions' for messaging, and the job's
//! own under `jobs.`.

/// `rabbitmq`.
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// `send` on the producer span, `process` on the consumer span.
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
/// `publish` on the producer span, `process` on the consumer span.
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
/// The exchange the job is enqueued to.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
/// The routing key it is enqueued with, when not empty.
pub const MESSAGING_RABBITMQ_ROUTING_KEY: &str = "messaging.rabbitmq.destination.routing_key";
/// The queue a consumer span's delivery came from.
pub const MESSAGING_SUBSCRIPTION_NAME: &str = "messaging.destination.subscription.name";
/// The message id, kept across retries.
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
/// The body's size in bytes.
pub const MESSAGING_BODY_SIZE: &str = "messaging.message.body.size";
/// On failure: the failure kind (consumer) or the enqueue's error (producer).
pub const ERROR_TYPE: &str = "error.type";

/// The job's name.
pub const JOB_NAME: &str = "jobs.job.name";
/// The attempt, from 1.
pub const ATTEMPT: &str = "jobs.attempt";
/// Whether the broker had delivered the message before (to a worker that did not settle it).
pub const REDELIVERED: &str = "jobs.redelivered";
/// What came of the attempt: `succeeded`, `retried`, `failed` (to the error queue), or
/// `requeued` (its outcome could not be made durable; the delivery went back to its queue).
pub const OUTCOME: &str = "jobs.outcome";
/// Why an attempt failed: a [`FailureKind`](crate::FailureKind), as `x-jobs-error-kind` spells it.
pub const FAILURE_KIND: &str = "jobs.failure.kind";
