//! What the broker holds for a set of jobs: exchanges, queues, their arguments and bindings.
//!
//! For a job with queue `Q` on exchange `E`:
//!
//! * `E`: a durable exchange of the job's kind;
//! * `Q`: the durable work queue, bound to `E` with the job's binding. A quorum `Q` has
//!   `x-delivery-limit` and dead-letters (at least once) to `Q.err`, so a message that crashes
//!   its worker every time ends in the error queue rather than in a loop;
//! * `Q.retry.N`: one delay queue per backoff step, with `x-message-ttl` = that step and
//!   dead-lettering back to `Q` through the default exchange. A queue holds one delay, so no
//!   message waits behind a longer one, and no broker plugin is needed. Retry queues are quorum
//!   queues dead-lettering at least once, whatever the work queue's type: a classic queue
//!   dead-letters at most once, and drops what expires while the broker stops or crashes;
//! * `Q.err`: the durable error queue;
//! * a binding of `Q` to the delay cascade's delivery exchange, through which delayed jobs
//!   and `retry_after` retries arrive; the cascade itself (see [`crate::delay`]) is shared by
//!   every job, and part of every job's topology.

use std::collections::HashMap;

use crate::envelope::{HeaderValue, Headers};
use crate::error::{Error, Result};
use crate::job::{ExchangeKind, QueueType};
use crate::settings::JobSettings;

/// The start of the delay cascade's names, which jobs may not use.
pub const RESERVED_PREFIX: &str = "jobs.delay.";

/// Queue argument names.
pub mod argument {
    /// `quorum` or `classic`.
    pub const QUEUE_TYPE: &str = "x-queue-type";
    /// Milliseconds a message may wait in the queue before it is dead-lettered.
    pub const MESSAGE_TTL: &str = "x-message-ttl";
    /// The exchange dead-lettered messages go to (`""`: the default exchange).
    pub const DEAD_LETTER_EXCHANGE: &str = "x-dead-letter-exchange";
    /// The routing key dead-lettered messages go with.
    pub const DEAD_LETTER_ROUTING_KEY: &str = "x-dead-letter-routing-key";
    /// `at-least-once` (quorum queues): dead-lettering survives a crash.
    pub const DEAD_LETTER_STRATEGY: &str = "x-dead-letter-strategy";
    /// `reject-publish`: required by at-least-once dead-lettering.
    pub const OVERFLOW: &str = "x-overflow";
    /// Deliveries after which a quorum queue dead-letters a message.
    pub const DELIVERY_LIMIT: &str = "x-delivery-limit";
    /// `true`: of a queue's consumers, one at a time receives deliveries.
    pub const SINGLE_ACTIVE_CONSUMER: &str = "x-single-active-consumer";
    /// The most ready messages a queue holds.
    pub const MAX_LENGTH: &str = "x-max-length";
    /// Priority levels of a classic queue: messages of priority 0 up to this one, the higher
    /// delivered first.
    pub const MAX_PRIORITY: &str = "x-max-priority";
    /// Milliseconds a delivery may stay unacked before the broker gives it back (and, before
    /// RabbitMQ 4.3, closes the consumer's channel). The framework declares none; a job's
    /// timeout is checked against it where a queue has one.
    pub const CONSUMER_TIMEOUT: &str = "x-consumer-timeout";
    /// `all` or `any`, on a headers binding.
    pub const MATCH: &str = "x-match";
}

/// The declarations for a set of jobs, in the order a broker needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    /// Exchanges, each once.
    pub exchanges: Vec<ExchangeSpec>,
    /// Queues, each once.
    pub queues: Vec<QueueSpec>,
    /// Bindings of work queues to exchanges.
    pub bindings: Vec<BindingSpec>,
    /// Bindings of exchanges to exchanges: the delay cascade's (see [`crate::delay`]).
    pub exchange_bindings: Vec<ExchangeBindingSpec>,
}

/// A durable exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: ExchangeKind,
}

/// A durable queue and its arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// Its `x-` arguments (see [`argument`]).
    pub arguments: Headers,
}

/// A binding of a queue to an exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingSpec {
    /// The queue.
    pub queue: String,
    /// The exchange.
    pub exchange: String,
    /// The binding key (a pattern on topic exchanges; ignored by fanout and headers).
    pub routing_key: String,
    /// Binding arguments: `x-match` and header values on headers exchanges.
    pub arguments: Headers,
}

/// A binding of an exchange to another: what the `source` exchange routes with a matching key
/// goes on to the `destination` exchange, which routes it again (RabbitMQ's
/// exchange-to-exchange bindings).
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeBindingSpec {
    /// The exchange messages go on to.
    pub destination: String,
    /// The exchange they come from.
    pub source: String,
    /// The binding key (a pattern on topic exchanges).
    pub routing_key: String,
    /// Binding arguments.
    pub arguments: Headers,
}

impl Topology {
    /// The queues that belong to the jobs: every queue but the delay cascade's, which every
    /// job on the broker shares. What a test or a tool may purge or delete as its own.
    pub fn job_queues(&self) -> impl Iterator<Item = &QueueSpec> {
        self.queues
            .iter()
            .filter(|queue| !queue.name.starts_with(RESERVED_PREFIX))
    }

    /// The topology that serves `jobs`.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] when two jobs give one exchange different types, share a queue, or
    /// share a name.
    pub fn for_jobs<'a>(jobs: impl IntoIterator<Item = &'a JobSettings>) -> Result<Self> {
        let mut topology = Self::default();
        let mut exchange_owner: HashMap<&str, (&str, ExchangeKind)> = HashMap::new();
        let mut queue_owner: HashMap<&str, &str> = HashMap::new();
        let mut name_owner: HashMap<&str, &str> = HashMap::new();
        for settings in jobs {
            let job = settings.job();
            for name in [job.exchange(), job.queue()] {
                if let Some(prefix) = [
                    RESERVED_PREFIX,
                    crate::schedule::RESERVED_PREFIX,
                    crate::control::PAUSED_PREFIX,
                    crate::control::SLOTS_PREFIX,
                    crate::control::RATE_PREFIX,
                    crate::control::EXCHANGE,
                ]
                .into_iter()
                .find(|prefix| name.starts_with(prefix))
                {
                    return Err(Error::Topology(format!(
                        "job `{}` uses `{name}`: names starting `{prefix}` are the framework's",
                        job.name()
                    )));
                }
            }
            if let Some(other) = name_owner.insert(job.name(), job.queue()) {
                return Err(Error::Topology(format!(
                    "two jobs are named `{}` (queues `{other}` and `{}`)",
                    job.name(),
                    job.queue()
                )));
            }
            if let Some(other) = queue_owner.insert(job.queue(), job.name()) {
                return Err(Error::Topology(format!(
                    "jobs `{other}` and `{}` both use queue `{}`",
                    job.name(),
                    job.queue()
                )));
            }
            match exchange_owner.get(job.exchange()) {
                Some(&(other, kind)) if kind != job.kind() => {
                    return Err(Error::Topology(format!(
                        "exchange `{}` is `{kind}` for job `{other}` but `{}` for job `{}`",
                        job.exchange(),
                        job.kind(),
                        job.name()
                    )));
                }
                Some(_) => {}
                None => {
                    exchange_owner.insert(job.exchange(), (job.name(), job.kind()));
                    topology.exchanges.push(ExchangeSpec {
                        name: job.exchange().to_owned(),
                        kind: job.kind(),
                    });
                }
            }
            topology.add_job_queues(settings);
        }
        if !topology.queues.is_empty() {
            topology.merge(crate::delay::cascade());
            topology.exchanges.push(crate::control::exchange());
        }
        Ok(topology)
    }

    /// Adds `other`'s declarations after this one's.
    pub(crate) fn merge(&mut self, other: Self) {
        self.exchanges.extend(other.exchanges);
        self.queues.extend(other.queues);
        self.bindings.extend(other.bindings);
        self.exchange_bindings.extend(other.exchange_bindings);
    }

    /// What a producer declares before a job's first enqueue: its exchange, its work and error
    /// queues and their bindings (to the exchange and to the delay cascade's delivery
    /// exchange, declared here too). Not its retry queues, whose delays are the worker's to
    /// set, nor the cascade's levels, declared once per producer.
    pub(crate) fn for_producer(settings: &JobSettings) -> Self {
        let job = settings.job();
        let mut topology = Self {
            exchanges: vec![
                ExchangeSpec {
                    name: job.exchange().to_owned(),
                    kind: job.kind(),
                },
                ExchangeSpec {
                    name: crate::delay::DELIVER_EXCHANGE.to_owned(),
                    kind: ExchangeKind::Topic,
                },
            ],
            ..Self::default()
        };
        topology.add_job_queues(settings);
        // The slot, ticket and keeper queues are the workers' own.
        topology.queues.retain(|queue| {
            !settings.retry_queues().contains(&queue.name)
                && !queue.name.starts_with(crate::control::SLOTS_PREFIX)
                && !queue.name.starts_with(crate::control::RATE_PREFIX)
        });
        topology
    }

    fn add_job_queues(&mut self, settings: &JobSettings) {
        let job = settings.job();
        let queue_type = settings.queue_type();
        let quorum = queue_type == QueueType::Quorum;
        let typed = || Headers::from_iter([(argument::QUEUE_TYPE, queue_type.as_str())]);

        let mut work = typed();
        work.insert(argument::DEAD_LETTER_EXCHANGE, "");
        work.insert(argument::DEAD_LETTER_ROUTING_KEY, settings.error_queue());
        if quorum {
            work.insert(
                argument::DELIVERY_LIMIT,
                i64::from(settings.delivery_limit()),
            );
            work.insert(argument::DEAD_LETTER_STRATEGY, "at-least-once");
            work.insert(argument::OVERFLOW, "reject-publish");
        }
        if let Some(levels) = settings.priorities() {
            work.insert(argument::MAX_PRIORITY, i64::from(levels));
        }
        self.queues.push(QueueSpec {
            name: job.queue().to_owned(),
            arguments: work,
        });

        for (name, delay) in settings.retry_queues().iter().zip(settings.retry_delays()) {
            // Quorum whatever the work queue is: only a quorum queue dead-letters at least once,
            // and a classic one drops what expires while the broker shuts down or crashes.
            let mut retry =
                Headers::from_iter([(argument::QUEUE_TYPE, QueueType::Quorum.as_str())]);
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            retry.insert(argument::MESSAGE_TTL, ttl);
            retry.insert(argument::DEAD_LETTER_EXCHANGE, "");
            retry.insert(argument::DEAD_LETTER_ROUTING_KEY, job.queue());
            retry.insert(argument::DEAD_LETTER_STRATEGY, "at-least-once");
            retry.insert(argument::OVERFLOW, "reject-publish");
            self.queues.push(QueueSpec {
                name: name.clone(),
                arguments: retry,
            });
        }

        self.queues.push(QueueSpec {
            name: settings.error_queue().to_owned(),
            arguments: typed(),
        });

        let mut arguments = Headers::new();
        if let Some(binding) = job.header_binding() {
            arguments.insert(argument::MATCH, binding.matching.as_str());
            for (name, value) in binding.values {
                arguments.insert(*name, HeaderValue::from(*value));
            }
        }
        self.bindings.push(BindingSpec {
            queue: job.queue().to_owned(),
            exchange: job.exchange().to_owned(),
            routing_key: job.binding().to_owned(),
            arguments,
        });
        self.bindings
            .push(crate::delay::deliver_binding(job.queue()));
        for n in 0..settings.max_running().unwrap_or(0) {
            self.queues.push(QueueSpec {
                name: crate::control::slot_queue(job.name(), n),
                arguments: Headers::from_iter([(
                    argument::QUEUE_TYPE,
                    QueueType::Classic.as_str(),
                )]),
            });
        }
        if let Some(rate) = settings.rate() {
            let classic =
                || Headers::from_iter([(argument::QUEUE_TYPE, QueueType::Classic.as_str())]);
            // One tick's tickets at most: those nobody took give way to the next tick's.
            let mut tickets = classic();
            tickets.insert(argument::MAX_LENGTH, i64::from(rate.tick().1));
            self.queues.push(QueueSpec {
                name: crate::control::tickets_queue(job.name()),
                arguments: tickets,
            });
            self.queues.push(QueueSpec {
                name: crate::control::keeper_queue(job.name()),
                arguments: classic(),
            });
        }
        if job.options().schedule.is_some() {
            let queues = crate::schedule::queues(job);
            self.bindings
                .push(crate::delay::deliver_binding(&queues[0].name));
            self.queues.extend(queues);
        }
    }
}
