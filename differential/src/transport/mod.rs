//! Transport-level scenarios: random broker operations, run on the in-memory broker and on
//! RabbitMQ through the [`Transport`](jobs_core::transport::Transport) trait, and what a
//! client observes compared.
//!
//! * [`generator`]: a seed in, a [`Scenario`] out, the same one every time ([`rng`]).
//! * [`scenario`]: the model: declarations and steps in logical names.
//! * [`runner`]: one scenario on a transport, in memory on a paused clock or on RabbitMQ on
//!   the real one, waiting (bounded) for RabbitMQ's asynchronous effects.
//! * [`observe`]: what a run observes, normalised.
//! * [`compare`]: the differences between two runs, in words.
//! * [`shrink`]: smaller scenarios that still fail.
//! * [`case`]: one scenario on both brokers.
//!
//! The test `differential/tests/transport.rs` runs 200 seeds in CI (`JOBS_DIFF_CASES` for
//! more), prints the run's seed, shrinks the first failing case and prints its seed and the
//! shrunk scenario; `docs/testing.md` ("Differential testing") says how to replay either.
//!
//! # The scenario space
//!
//! What the framework relies on, at the transport level:
//!
//! * exchanges of the four kinds, and exchange-to-exchange bindings (the delay cascade's);
//! * queues, classic or quorum, with any of: a TTL, a dead-letter exchange (the default one
//!   with a queue's name, or a declared one with or without a routing key), a delivery limit
//!   (quorum), a length limit with `drop-head` or (classic) `reject-publish`, a single active
//!   consumer,
//!   at-least-once dead-lettering (quorum, with `reject-publish`, as the framework declares its
//!   quorum queues); a dead-letter target may be the queue itself;
//! * bindings: direct keys, topic patterns of `a`, `b`, `*` and `#` (empty ones included),
//!   fanout, and headers bindings matching `all` or `any` of up to two values (none too);
//! * publishes to a declared exchange or the default one (to a queue, or to a name no queue
//!   has), with and without `mandatory`, with string headers;
//! * consumers with a prefetch of 0 to 3, each on its own channel; ack, nack and reject, with
//!   and without requeue, single and `multiple`, of a delivery picked among those the client
//!   holds; cancel; closing a channel with deliveries unsettled; letting ticks pass.
//!
//! Left out, and why:
//!
//! * per-message TTL (`expiration`): the framework's [`Publish`](jobs_core::transport::Publish)
//!   has none;
//! * priorities, direct reply-to, subscriptions, holds, purge, deletion and disconnects: the
//!   framework uses them, but the memory broker's own tests and the shared suites cover them,
//!   and they would widen the space past what 200 cases explore;
//! * several consumers taking deliveries from one queue at once, but for a quorum
//!   single-active-consumer queue: RabbitMQ spreads messages over them by credit and timing,
//!   which no run can reproduce;
//! * what RabbitMQ 3.10.8 gets wrong, listed in the in-memory broker's table as not emulated
//!   and kept out of the generator: a consumer's double credit at a quorum queue's delivery
//!   limit (consumers of a quorum queue with a delivery limit take prefetch 0), a classic
//!   single-active-consumer queue's hand-over (one consumer at a time there), a quorum
//!   single-active-consumer queue with a TTL (no TTL there), and at-least-once dead-lettering
//!   into a full `reject-publish` queue (no at-least-once where it could happen); and the
//!   asynchronous refusals of a quorum `reject-publish` queue with a length limit, which the
//!   in-memory broker approximates (quorum queues get `drop-head`).
//!
//! # Timing
//!
//! Every step happens at a tick (half a second, [`Timing`]); letting ticks pass sleeps until
//! the scenario's start plus its ticks, virtually in memory, really on RabbitMQ. A TTL is a
//! whole number of ticks plus a half, so a message expires half-way between two steps and
//! never races with one; the generator keeps expired messages from reaching a queue with a
//! TTL, where they would expire on a tick, and keeps two TTL queues from dead-lettering into a
//! common queue, where two messages expiring at the same half-tick would race. On RabbitMQ, a step that starts more than
//! [`Timing::late`] after its tick in a scenario with a TTL (or whose operation ends that late,
//! when what follows never matches) makes the run inconclusive, and the
//! case runs again (five times at most); the test fails when more than one case in twenty
//! stays inconclusive.
//!
//! After each step the RabbitMQ run waits, up to [`Timing::settle`], until it sees what the
//! in-memory run saw after the same step (each consumer's deliveries, each queue's counts), by
//! waiting on deliveries and polling passive declares: a wait on the broker's state, never a
//! sleep for an effect. One that never comes is a difference.
//!
//! # What is compared, and the normalisation rules
//!
//! Per step: what the operation returned (ok, unroutable, nacked, or an error's kind), each
//! consumer's deliveries in tag order (message id, tag, `redelivered`, exchange, routing key,
//! headers), and each queue's ready messages and consumers as a passive declare reports them.
//! At the end, after the runner closes every consumer still open, each queue's ready messages
//! head first, as a fresh consumer receives them. The rules, each for something RabbitMQ
//! leaves unspecified or that cannot be the same on two clocks:
//!
//! 1. **Names.** Each run's queues and exchanges have a prefix of their own; it is removed
//!    wherever it appears (names, routing keys, `x-death`). Both brokers get the same prefix in
//!    one case, so topic patterns see the same words.
//! 2. **Time.** The `time` of each `x-death` entry is left out: virtual in memory, real on
//!    RabbitMQ. Every other `x-death` field is compared, in order, and so are the
//!    `x-first-death-*` headers and `x-delivery-count`.
//! 3. **Header tables** are compared as maps, sorted by name (AMQP field tables are keyed; the
//!    AMQP transport hands them over sorted, the in-memory broker in insertion order); nested
//!    tables too.
//! 4. **Order across consumers** is not compared: each consumer's deliveries are their own
//!    sequence, in tag order, and RabbitMQ orders nothing between channels. Within a consumer,
//!    order is compared: one queue feeds it, and RabbitMQ keeps a queue's order.
//! 5. **When** a delivery comes is compared by step: RabbitMQ's effects are waited for before
//!    the next step, so a delivery counts in the step that caused it, not the instant it
//!    arrived.
//! 6. **Errors** are compared by kind: their texts differ between transports.
//! 7. **Senders into one queue.** At the end, a queue's messages are compared sender by
//!    sender, each sender's in order: the client's publishes, and what each queue
//!    dead-lettered into it (the newest `x-death` entry's queue). How the senders interleave
//!    is not compared: RabbitMQ keeps the order of each sender (a channel, or a queue process
//!    dead-lettering) and promises none between them, and 3.10.8 was seen to interleave the
//!    same senders either way (a channel's enqueue and a classic queue's dead letter racing
//!    to a quorum queue's Ra leader; two classic queues dead-lettering into a third). Delivery
//!    tags there are positions, so they are left out with the interleaving. Deliveries to
//!    consumers are still compared in order, step by step.
//!
//! # Divergences found
//!
//! Each is a regression test in `jobs-core/src/transport/memory/tests/differential.rs` and
//! fixed in the in-memory broker, or listed in its table as not emulated:
//!
//! * quorum queues put every returned message back at its original place; RabbitMQ 3.10 gives
//!   returns first in the order they came back, and without a delivery limit enqueues a
//!   requeued message afresh at the back (fixed);
//! * a quorum queue's consumer count left out a cancelled consumer still holding deliveries
//!   and counted the waiting consumers of a single active consumer (fixed);
//! * a publish whose arrival made a queue dead-letter its head delivered that head to the
//!   other queues first (fixed: a publish reaches all its queues first);
//! * a classic queue delivered a returned message to a consumer with credit before applying
//!   its length limit (fixed);
//! * a message a nack or reject dead-lettered back into its own queue arrived before the
//!   queue delivered with the credit the settlement freed, which kept a quorum
//!   `reject-publish` queue refusing (fixed: they come after, as RabbitMQ's separate publish
//!   does);
//! * a channel's close that sent one message past a quorum queue's delivery limit and gave
//!   back another already expired dead-lettered the expired one first; RabbitMQ's `return`
//!   command dead-letters at the limit before it finds what expired (fixed);
//! * a quorum queue dead-lettered several heads it dropped at once in queue order; RabbitMQ
//!   3.10 sends them last first, each drop prepending its dead-letter effect (fixed, as 3.10
//!   does);
//! * two classic queues dead-lettering into each other's length limit through one fanout
//!   ended with their messages in another order: the in-memory broker forwarded a dead letter,
//!   and what it caused, before the next one was sent; RabbitMQ's queues exchange them as
//!   messages, in the order sent (fixed: breadth first); that fix first decided at sending
//!   whether a full `reject-publish` queue takes a dead letter, so two sent at once both got
//!   in, where RabbitMQ's queue takes the first and refuses the second as each arrives (found
//!   by the next long run, fixed);
//! * a publish to a quorum queue and to a full classic queue dead-lettering into the quorum
//!   one: RabbitMQ 3.10.8 put the dead letter ahead of the publish there in one scenario, and
//!   behind it in another (a race, so not emulated; rule 7), and two classic queues
//!   dead-lettering into a third interleaved either way (rule 7);
//! * two queues with a TTL dead-lettering into one full `reject-publish` queue: a message
//!   published to one of them two ticks before another with a TTL two ticks shorter expires at
//!   the same moment, and which dead letter the full queue kept was RabbitMQ's race, where the
//!   in-memory broker expires its queues in a fixed order (not a broker difference: the
//!   generator keeps TTL queues from sharing a dead-letter target);
//! * a quorum `reject-publish` queue with a length limit refuses and takes publishes as
//!   RabbitMQ 3.10 tells each channel, asynchronously: not emulated, and left out (quorum
//!   queues get `drop-head`, and none with at-least-once dead-lettering has a length limit);
//! * RabbitMQ 3.10.8 bugs, not emulated: a consumer credited twice at the delivery limit
//!   (rabbitmq-server#5609, fixed in 3.11), a classic single-active-consumer queue that crashes
//!   after its active consumer is cancelled, a quorum single-active-consumer queue with a TTL
//!   that hands nothing over.

pub mod case;
pub mod compare;
pub mod generator;
pub mod observe;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod shrink;

pub use case::{Verdict, check};
pub use generator::generate;
pub use observe::{Observation, Outcome, Seen, StepObservation};
pub use runner::{RunError, Timing, run_memory, run_rabbitmq};
pub use scenario::{Names, Scenario, Step};
