//! The scenario model: a topology and the steps a client takes on it, in logical names.
//!
//! Names are logical (`x0`, `q1`): a run gives each a per-run prefix on the broker (see
//! [`Names`]), so that runs on the shared RabbitMQ never meet, and strips it again from what it
//! observes. Time is counted in ticks: every step happens at a tick boundary, and a queue's TTL
//! is a whole number of ticks plus a half, so that a message expires half-way between two
//! steps, never at the same moment as one (see the module docs' timing rules).

use std::fmt;

use jobs_core::ExchangeKind;

/// One random scenario: what is declared, then the steps, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The seed the scenario was generated from; 0 for one written by hand.
    pub seed: u64,
    /// Exchanges, each declared durable with its kind.
    pub exchanges: Vec<ExchangeDecl>,
    /// Queues, each declared durable with its arguments.
    pub queues: Vec<QueueDecl>,
    /// Bindings of queues to exchanges.
    pub bindings: Vec<Binding>,
    /// Bindings of exchanges to exchanges.
    pub exchange_bindings: Vec<ExchangeBinding>,
    /// What the client does, in order.
    pub steps: Vec<Step>,
}

/// An exchange to declare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeDecl {
    /// Its logical name.
    pub name: String,
    /// Its type.
    pub kind: ExchangeKind,
}

/// A queue to declare, with the arguments the framework uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueDecl {
    /// Its logical name.
    pub name: String,
    /// `x-queue-type = quorum` rather than classic.
    pub quorum: bool,
    /// `x-message-ttl` = (`ttl_ticks` + ½) ticks.
    pub ttl_ticks: Option<u32>,
    /// `x-dead-letter-exchange` and `x-dead-letter-routing-key`.
    pub dead_letter: Option<DeadLetter>,
    /// `x-delivery-limit` (quorum queues only).
    pub delivery_limit: Option<u32>,
    /// `x-max-length`, and whether `x-overflow` is `reject-publish` rather than `drop-head`.
    pub max_length: Option<MaxLength>,
    /// `x-single-active-consumer = true`.
    pub single_active: bool,
    /// `x-dead-letter-strategy = at-least-once` with `x-overflow = reject-publish` (quorum
    /// queues with a dead-letter target only), as the framework declares its quorum queues.
    pub at_least_once: bool,
}

/// Where a queue dead-letters to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The exchange: `None` is the default exchange.
    pub exchange: Option<String>,
    /// The routing key; `None` keeps the message's own.
    pub routing_key: Option<Key>,
}

/// A queue's length limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxLength {
    /// `x-max-length`.
    pub max: u32,
    /// `x-overflow = reject-publish` rather than the default `drop-head`.
    pub reject_publish: bool,
}

/// A routing key: a word pattern, or a queue's name (for the default exchange).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// Used as it is: `a.b`, `""`.
    Text(String),
    /// The broker name of the queue with this logical name, which need not exist.
    Queue(String),
}

/// A binding of a queue to an exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The queue's logical name.
    pub queue: String,
    /// The exchange's logical name.
    pub exchange: String,
    /// The binding key (a pattern on topic exchanges; ignored by fanout and headers).
    pub key: String,
    /// On a headers exchange, what headers it matches.
    pub matching: Option<HeaderMatch>,
}

/// A binding of exchange `destination` to exchange `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeBinding {
    /// Where matching messages go on to.
    pub destination: String,
    /// Where they come from.
    pub source: String,
    /// The binding key.
    pub key: String,
    /// On a headers source, what headers it matches.
    pub matching: Option<HeaderMatch>,
}

/// A headers binding's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// `x-match = all` rather than `any`.
    pub all: bool,
    /// Header names and the string values they must have.
    pub values: Vec<(String, String)>,
}

/// Which unsettled delivery of a consumer a settlement names: the `n`-th (modulo how many
/// there are) in tag order. Resolved against what the client holds on each broker, so a
/// scenario stays meaningful whatever it was shrunk to; nothing is settled when the consumer
/// holds nothing.
pub type Pick = u8;

/// One thing the client does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Publishes message `id` (its `message_id` and body) and waits for the confirm.
    Publish {
        /// The message's number; `m<id>` is its id.
        id: u32,
        /// The exchange's logical name; `None` is the default exchange.
        exchange: Option<String>,
        /// The routing key.
        key: Key,
        /// Whether an unroutable message comes back as an error.
        mandatory: bool,
        /// String headers, for headers exchanges.
        headers: Vec<(String, String)>,
    },
    /// Starts consumer `consumer` on a channel of its own.
    Consume {
        /// The consumer's number, which later steps name.
        consumer: u32,
        /// The queue's logical name.
        queue: String,
        /// Its prefetch (0: unlimited).
        prefetch: u16,
    },
    /// Acks a delivery (with `multiple`, every earlier one too).
    Ack {
        /// The consumer.
        consumer: u32,
        /// Which delivery.
        pick: Pick,
        /// `multiple`.
        multiple: bool,
    },
    /// Nacks a delivery.
    Nack {
        /// The consumer.
        consumer: u32,
        /// Which delivery.
        pick: Pick,
        /// `multiple`.
        multiple: bool,
        /// Whether the broker keeps it for another delivery.
        requeue: bool,
    },
    /// Rejects a delivery.
    Reject {
        /// The consumer.
        consumer: u32,
        /// Which delivery.
        pick: Pick,
        /// Whether the broker keeps it for another delivery.
        requeue: bool,
    },
    /// Cancels the consumer (`basic.cancel`); what it holds stays settleable.
    Cancel {
        /// The consumer.
        consumer: u32,
    },
    /// Closes the consumer's channel with whatever it still holds unsettled.
    Close {
        /// The consumer.
        consumer: u32,
    },
    /// Lets time pass.
    Advance {
        /// How many ticks.
        ticks: u32,
    },
}

impl Step {
    /// The consumer the step acts on, when it acts on one.
    #[must_use]
    pub fn consumer(&self) -> Option<u32> {
        match self {
            Self::Consume { consumer, .. }
            | Self::Ack { consumer, .. }
            | Self::Nack { consumer, .. }
            | Self::Reject { consumer, .. }
            | Self::Cancel { consumer }
            | Self::Close { consumer } => Some(*consumer),
            Self::Publish { .. } | Self::Advance { .. } => None,
        }
    }
}

impl Scenario {
    /// Whether any queue has a TTL: only then does the real clock's precision matter on
    /// RabbitMQ.
    #[must_use]
    pub fn has_ttl(&self) -> bool {
        self.queues.iter().any(|queue| queue.ttl_ticks.is_some())
    }

    /// The queue named `name`.
    #[must_use]
    pub fn queue(&self, name: &str) -> Option<&QueueDecl> {
        self.queues.iter().find(|queue| queue.name == name)
    }

    /// The exchange named `name`.
    #[must_use]
    pub fn exchange(&self, name: &str) -> Option<&ExchangeDecl> {
        self.exchanges.iter().find(|exchange| exchange.name == name)
    }

    /// How many ticks the scenario lasts.
    #[must_use]
    pub fn ticks(&self) -> u32 {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Advance { ticks } => *ticks,
                _ => 0,
            })
            .sum()
    }
}

/// The broker names of one run: each logical name behind a prefix unique to the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names behind `prefix`, which should end with a dot and be unique to the run.
    #[must_use]
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// A prefix no other run uses: the process, the time and a counter.
    #[must_use]
    pub fn unique() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() % 1_000_000_000_000);
        Self::new(format!("jobs.diff.{}.{nanos}.{run}.", std::process::id()))
    }

    /// The broker name of logical name `name`.
    #[must_use]
    pub fn physical(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The routing key `key` stands for.
    #[must_use]
    pub fn key(&self, key: &Key) -> String {
        match key {
            Key::Text(text) => text.clone(),
            Key::Queue(queue) => self.physical(queue),
        }
    }

    /// `text` with every occurrence of the prefix removed: a broker name back to its logical
    /// one, wherever it appears (a routing key, an `x-death` entry).
    #[must_use]
    pub fn logical(&self, text: &str) -> String {
        text.replace(&self.prefix, "")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => write!(f, "{text:?}"),
            Self::Queue(queue) => write!(f, "<{queue}>"),
        }
    }
}
