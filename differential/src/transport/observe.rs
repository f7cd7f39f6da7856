//! What a run observes, already normalised: the same on both brokers when they behave alike.
//!
//! Each normalisation rule is listed in the module docs ([`super`]); this file applies them:
//! names lose the run's prefix, `x-death` entries lose their `time`, header tables are sorted
//! by name, and errors are reduced to their kind.

use std::collections::BTreeMap;
use std::fmt;

use jobs_core::transport::Delivery;
use jobs_core::{Error, HeaderValue, Headers};

use super::scenario::Names;

/// Everything a run of one scenario observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Per step of the scenario, then per closing step the runner added.
    pub steps: Vec<StepObservation>,
    /// Per queue (logical name, in declaration order), its ready messages at the end, head
    /// first, as a fresh consumer received them.
    pub drained: Vec<(String, Vec<Seen>)>,
    /// On RabbitMQ: a step started later than the timing rules allow, so expiries may have
    /// raced with steps and the run proves nothing.
    pub overrun: Option<String>,
}

/// What one step did and what followed from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepObservation {
    /// The step, as the runner describes it.
    pub step: String,
    /// What the operation returned.
    pub outcome: Outcome,
    /// Deliveries that arrived during the step, per consumer, in arrival (tag) order.
    pub deliveries: BTreeMap<u32, Vec<Seen>>,
    /// Per queue: ready messages and consumers after the step, as a passive declare reports
    /// them.
    pub queues: BTreeMap<String, (u64, Option<u32>)>,
}

/// What an operation returned, reduced to what both brokers can agree on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    #[default]
    Ok,
    /// Nothing to do: the consumer it names is gone, or it holds nothing to settle.
    Skipped,
    /// A `mandatory` message no queue took.
    Unroutable,
    /// A negative confirm.
    Nacked,
    /// Any other error, by kind (its text differs between brokers).
    Failed(String),
}

impl Outcome {
    /// The outcome of `result`.
    #[must_use]
    pub fn of(result: &jobs_core::Result<()>) -> Self {
        match result {
            Ok(()) => Self::Ok,
            Err(Error::Unroutable { .. }) => Self::Unroutable,
            Err(Error::Nacked { .. }) => Self::Nacked,
            Err(err) => Self::Failed(kind(err).to_owned()),
        }
    }
}

fn kind(err: &Error) -> &'static str {
    match err {
        Error::NotFound { .. } => "not found",
        Error::Topology(_) => "topology",
        Error::QueueMismatch { .. } => "queue mismatch",
        Error::Connection(_) => "connection",
        Error::Broker(_) => "broker",
        Error::Timeout { .. } => "timeout",
        _ => "other",
    }
}

/// A delivered message, normalised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// Its `message_id`.
    pub id: String,
    /// The delivery tag.
    pub tag: u64,
    /// Whether the broker says it delivered it before.
    pub redelivered: bool,
    /// The exchange it was published or dead-lettered to, logical.
    pub exchange: String,
    /// Its routing key, names logical.
    pub routing_key: String,
    /// Its headers, sorted by name, each value rendered with names logical and `x-death`
    /// times left out.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// `delivery`, normalised with `names`.
    #[must_use]
    pub fn of(delivery: &Delivery, names: &Names) -> Self {
        let envelope = &delivery.envelope;
        let mut headers: Vec<(String, String)> = envelope
            .properties
            .headers
            .iter()
            .map(|(name, value)| (name.to_owned(), render(name, value, names)))
            .collect();
        headers.sort();
        Self {
            id: envelope
                .properties
                .message_id
                .clone()
                .unwrap_or_else(|| String::from_utf8_lossy(&envelope.body).into_owned()),
            tag: delivery.tag,
            redelivered: delivery.redelivered,
            exchange: names.logical(&delivery.exchange),
            routing_key: names.logical(&delivery.routing_key),
            headers,
        }
    }
}

/// A header value as text: tables sorted by name (AMQP tables are maps), names logical, and
/// the `time` of `x-death` entries left out (real time on RabbitMQ, virtual in memory).
fn render(name: &str, value: &HeaderValue, names: &Names) -> String {
    match value {
        HeaderValue::String(text) => format!("{:?}", names.logical(text)),
        HeaderValue::Array(values) => {
            let items: Vec<String> = values
                .iter()
                .map(|value| render(name, value, names))
                .collect();
            format!("[{}]", items.join(", "))
        }
        HeaderValue::Table(table) => render_table(name, table, names),
        HeaderValue::Timestamp(_) if name == "x-death" => "<time>".to_owned(),
        other => other.to_string(),
    }
}

fn render_table(name: &str, table: &Headers, names: &Names) -> String {
    let mut fields: Vec<String> = table
        .iter()
        .filter(|(field, _)| !(name == "x-death" && *field == "time"))
        .map(|(field, value)| format!("{field}: {}", render(name, value, names)))
        .collect();
    fields.sort();
    format!("{{{}}}", fields.join(", "))
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tag {}{} via {:?}/{:?}",
            self.id,
            self.tag,
            if self.redelivered { " redelivered" } else { "" },
            self.exchange,
            self.routing_key
        )?;
        for (name, value) in &self.headers {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Skipped => f.write_str("skipped"),
            Self::Unroutable => f.write_str("unroutable"),
            Self::Nacked => f.write_str("nacked"),
            Self::Failed(kind) => write!(f, "failed ({kind})"),
        }
    }
}
