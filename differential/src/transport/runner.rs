//! The runner: applies one scenario to a [`Transport`] and records what it observes.
//!
//! One executor serves both brokers; they differ in their clock and in how the runner knows
//! that a step's effects are all in:
//!
//! * **In memory** ([`run_memory`]), on a paused tokio clock of its own: every operation takes
//!   effect before it returns, and letting time pass is a virtual sleep during which the
//!   broker's expiry timers fire. Deliveries are collected as soon as a step returns.
//! * **On RabbitMQ** ([`run_rabbitmq`]), on the real clock: effects arrive asynchronously
//!   (deliveries, returns of a closed channel, dead-lettering, at-least-once dead-lettering in
//!   particular). After each step the runner waits, bounded by [`Timing::settle`], until the
//!   broker shows the state the in-memory run reached after the same step: each consumer's
//!   deliveries of the step, and each queue's ready messages and consumers. A broker that never
//!   gets there is recorded as it is at the deadline, and the comparison shows the difference.
//!
//! Every step happens at its tick: letting `n` ticks pass sleeps until the scenario's start
//! plus its ticks so far, on either clock. A TTL is a whole number of ticks plus a half, so on
//! RabbitMQ a message expires half-way between two steps; a step that starts more than
//! [`Timing::late`] after its tick, in a scenario with a TTL, makes the run inconclusive
//! ([`Observation::overrun`]) rather than wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::StreamExt;
use jobs_core::topology::{
    BindingSpec, ExchangeBindingSpec, ExchangeSpec, QueueSpec, Topology, argument,
};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Declare, DeliveryStream, Publish, Settle, Settlement, Transport};
use jobs_core::{Envelope, HeaderValue, Headers};
use tokio::time::Instant;

use super::observe::{Observation, Outcome, Seen, StepObservation};
use super::scenario::{HeaderMatch, Names, QueueDecl, Scenario, Step};

/// The runner's clock and patience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// One tick: TTLs are (n + ½) ticks.
    pub tick: Duration,
    /// How long RabbitMQ may take to show a step's effects.
    pub settle: Duration,
    /// How late after its tick a step may start, in a scenario with a TTL, before the run is
    /// inconclusive: well under half a tick, when the next expiry may come.
    pub late: Duration,
}

impl Default for Timing {
    /// Half-second ticks: TTLs of 250 ms, 750 ms and 1.25 s, expiries 250 ms away from any
    /// step, and a scenario of at most six ticks lasts three seconds.
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            settle: Duration::from_secs(3),
            late: Duration::from_millis(150),
        }
    }
}

impl Timing {
    /// The same clock at half the speed: every tick, TTL, allowance for lateness and wait for
    /// RabbitMQ twice as long. A scenario is the same at any speed (its TTLs are in ticks), so
    /// a case the machine was too slow for at one speed can be decided at the other.
    #[must_use]
    pub fn slower(self) -> Self {
        Self {
            tick: self.tick * 2,
            settle: self.settle * 2,
            late: self.late * 2,
        }
    }
}

/// Why a run could not be carried out (as opposed to a broker behaving differently).
#[derive(Debug)]
pub struct RunError(String);

impl RunError {
    fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

/// `err` and its sources, in a line: a connection error says little without its cause.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `scenario` on a fresh in-memory broker, on a paused clock of its own (a thread and a
/// current-thread runtime of its own, so it may be called from anywhere, inside a runtime
/// too).
///
/// # Errors
///
/// [`RunError`] when the runtime cannot be built or the topology is refused.
pub fn run_memory(
    scenario: &Scenario,
    names: &Names,
    timing: &Timing,
) -> Result<Observation, RunError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .map_err(|err| RunError::new(format!("a paused runtime: {err}")))?;
                runtime.block_on(async {
                    let broker = MemoryTransport::new();
                    execute(&broker, scenario, names, timing, None).await
                })
            })
            .join()
            .unwrap_or_else(|_| Err(RunError::new("the in-memory run panicked")))
    })
}

/// Runs `scenario` on the RabbitMQ at `url`, waiting after each step for the state `expected`
/// (the in-memory run's observation) reached, then deletes everything it declared.
///
/// # Errors
///
/// [`RunError`] when the broker cannot be reached or refuses the topology.
pub async fn run_rabbitmq(
    url: &str,
    scenario: &Scenario,
    names: &Names,
    timing: &Timing,
    expected: &Observation,
) -> Result<Observation, RunError> {
    let transport = AmqpTransport::builder(url)
        .connection_name("jobs-differential")
        .connect()
        .await
        .map_err(|err| RunError::new(format!("connecting to RabbitMQ: {}", chain(&err))))?;
    let observed = execute(&transport, scenario, names, timing, Some(expected)).await;
    let cleaned = clean_up(url, &transport, scenario, names).await;
    transport.close().await;
    let observed = observed?;
    cleaned.map(|()| observed)
}

/// Deletes the scenario's queues and exchanges from the broker.
async fn clean_up(
    url: &str,
    transport: &AmqpTransport,
    scenario: &Scenario,
    names: &Names,
) -> Result<(), RunError> {
    for queue in &scenario.queues {
        transport
            .delete_queue(&names.physical(&queue.name))
            .await
            .map_err(|err| {
                RunError::new(format!("deleting queue {}: {}", queue.name, chain(&err)))
            })?;
    }
    if scenario.exchanges.is_empty() {
        return Ok(());
    }
    // The transport deletes no exchanges (the framework never does); a connection of its own.
    let failed = |err: lapin::Error| RunError::new(format!("deleting exchanges: {err}"));
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .map_err(failed)?;
    let channel = connection.create_channel().await.map_err(failed)?;
    for exchange in &scenario.exchanges {
        channel
            .exchange_delete(
                names.physical(&exchange.name).as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(failed)?;
    }
    connection
        .close(200, "cleaned up".into())
        .await
        .map_err(failed)
}

/// The topology of `scenario`, in broker names.
#[must_use]
pub fn topology(scenario: &Scenario, names: &Names, timing: &Timing) -> Topology {
    Topology {
        exchanges: scenario
            .exchanges
            .iter()
            .map(|exchange| ExchangeSpec {
                name: names.physical(&exchange.name),
                kind: exchange.kind,
            })
            .collect(),
        queues: scenario
            .queues
            .iter()
            .map(|queue| QueueSpec {
                name: names.physical(&queue.name),
                arguments: queue_arguments(queue, names, timing),
            })
            .collect(),
        bindings: scenario
            .bindings
            .iter()
            .map(|binding| BindingSpec {
                queue: names.physical(&binding.queue),
                exchange: names.physical(&binding.exchange),
                routing_key: binding.key.clone(),
                arguments: match_arguments(binding.matching.as_ref()),
            })
            .collect(),
        exchange_bindings: scenario
            .exchange_bindings
            .iter()
            .map(|binding| ExchangeBindingSpec {
                destination: names.physical(&binding.destination),
                source: names.physical(&binding.source),
                routing_key: binding.key.clone(),
                arguments: match_arguments(binding.matching.as_ref()),
            })
            .collect(),
    }
}

fn queue_arguments(queue: &QueueDecl, names: &Names, timing: &Timing) -> Headers {
    let mut arguments = Headers::new();
    let kind = if queue.quorum { "quorum" } else { "classic" };
    arguments.insert(argument::QUEUE_TYPE, kind);
    if let Some(ticks) = queue.ttl_ticks {
        let ttl = timing.tick * (2 * ticks + 1) / 2;
        arguments.insert(
            argument::MESSAGE_TTL,
            i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        );
    }
    if let Some(target) = &queue.dead_letter {
        let exchange = target
            .exchange
            .as_ref()
            .map_or_else(String::new, |name| names.physical(name));
        arguments.insert(argument::DEAD_LETTER_EXCHANGE, exchange);
        if let Some(key) = &target.routing_key {
            arguments.insert(argument::DEAD_LETTER_ROUTING_KEY, names.key(key));
        }
        if queue.quorum && queue.at_least_once {
            arguments.insert(argument::DEAD_LETTER_STRATEGY, "at-least-once");
            arguments.insert(argument::OVERFLOW, "reject-publish");
        }
    }
    if let Some(limit) = queue.delivery_limit {
        arguments.insert(argument::DELIVERY_LIMIT, i64::from(limit));
    }
    if let Some(limit) = queue.max_length {
        arguments.insert(argument::MAX_LENGTH, i64::from(limit.max));
        if limit.reject_publish {
            arguments.insert(argument::OVERFLOW, "reject-publish");
        }
    }
    if queue.single_active {
        arguments.insert(argument::SINGLE_ACTIVE_CONSUMER, true);
    }
    arguments
}

fn match_arguments(matching: Option<&HeaderMatch>) -> Headers {
    let mut arguments = Headers::new();
    if let Some(matching) = matching {
        arguments.insert(argument::MATCH, if matching.all { "all" } else { "any" });
        for (name, value) in &matching.values {
            arguments.insert(name.clone(), HeaderValue::from(value.as_str()));
        }
    }
    arguments
}

/// The steps the runner adds after the scenario's: every consumer still open is closed, in
/// order, so that what it holds goes back to its queue before the queues are drained.
#[must_use]
pub fn closing_steps(scenario: &Scenario) -> Vec<Step> {
    let mut open = Vec::new();
    for step in &scenario.steps {
        match step {
            Step::Consume { consumer, .. } => open.push(*consumer),
            Step::Close { consumer } => open.retain(|c| c != consumer),
            _ => {}
        }
    }
    open.into_iter()
        .map(|consumer| Step::Close { consumer })
        .collect()
}

/// A consumer the client holds.
struct Client {
    /// The queue's logical name.
    queue: String,
    /// `None` once the stream ended (cancelled or closed by the broker).
    deliveries: Option<DeliveryStream>,
    settler: Box<dyn Settle>,
    /// Tags delivered and not settled, ascending.
    unsettled: Vec<u64>,
}

/// What the run holds while it goes.
struct Run<'a> {
    transport: &'a dyn Transport,
    scenario: &'a Scenario,
    names: &'a Names,
    timing: &'a Timing,
    expected: Option<&'a Observation>,
    start: Instant,
    ticks: u32,
    consumers: BTreeMap<u32, Client>,
    observation: Observation,
    /// A step's effects never matched the expected ones: the runs differ already, and any
    /// lateness that follows is that difference's doing, not the machine's.
    diverged: bool,
}

async fn execute(
    transport: &dyn Transport,
    scenario: &Scenario,
    names: &Names,
    timing: &Timing,
    expected: Option<&Observation>,
) -> Result<Observation, RunError> {
    transport
        .declare(&topology(scenario, names, timing), Declare::Create)
        .await
        .map_err(|err| RunError::new(format!("declaring the topology: {}", chain(&err))))?;
    let mut run = Run {
        transport,
        scenario,
        names,
        timing,
        expected,
        start: Instant::now(),
        ticks: 0,
        consumers: BTreeMap::new(),
        observation: Observation::default(),
        diverged: false,
    };
    let closing = closing_steps(scenario);
    for (index, step) in scenario.steps.iter().chain(&closing).enumerate() {
        let described = if index < scenario.steps.len() {
            describe(step)
        } else {
            format!("{} (end)", describe(step))
        };
        let outcome = run.step(index, step, &described).await;
        let mut observed = StepObservation {
            step: described,
            outcome,
            ..StepObservation::default()
        };
        run.settle(index, &mut observed).await;
        run.observation.steps.push(observed);
    }
    for queue in &scenario.queues {
        let drained = run.drain(&queue.name).await;
        run.observation.drained.push((queue.name.clone(), drained));
    }
    run.check_late(run.observation.steps.len(), "the final drain");
    Ok(run.observation)
}

/// A step in a line.
#[must_use]
pub fn describe(step: &Step) -> String {
    match step {
        Step::Publish {
            id,
            exchange,
            key,
            mandatory,
            headers,
        } => format!(
            "publish m{id} to {} with key {key}{}{}",
            exchange.as_deref().unwrap_or("the default exchange"),
            if *mandatory { ", mandatory" } else { "" },
            if headers.is_empty() {
                String::new()
            } else {
                format!(", headers {headers:?}")
            }
        ),
        Step::Consume {
            consumer,
            queue,
            prefetch,
        } => format!("consume {queue} as c{consumer}, prefetch {prefetch}"),
        Step::Ack {
            consumer,
            pick,
            multiple,
        } => format!(
            "ack c{consumer}'s unsettled #{pick}{}",
            if *multiple { " (multiple)" } else { "" }
        ),
        Step::Nack {
            consumer,
            pick,
            multiple,
            requeue,
        } => format!(
            "nack c{consumer}'s unsettled #{pick}{}, requeue {requeue}",
            if *multiple { " (multiple)" } else { "" }
        ),
        Step::Reject {
            consumer,
            pick,
            requeue,
        } => format!("reject c{consumer}'s unsettled #{pick}, requeue {requeue}"),
        Step::Cancel { consumer } => format!("cancel c{consumer}"),
        Step::Close { consumer } => format!("close c{consumer}'s channel"),
        Step::Advance { ticks } => format!("let {ticks} tick(s) pass"),
    }
}

impl Run<'_> {
    /// Carries out one step and returns what its operation returned.
    async fn step(&mut self, index: usize, step: &Step, described: &str) -> Outcome {
        if let Step::Advance { ticks } = step {
            self.ticks += ticks;
            tokio::time::sleep_until(self.tick_start()).await;
            return Outcome::Ok;
        }
        self.check_late(index, described);
        match step {
            Step::Publish {
                id,
                exchange,
                key,
                mandatory,
                headers,
            } => {
                let mut envelope = Envelope::default();
                envelope.properties.message_id = Some(format!("m{id}"));
                for (name, value) in headers {
                    envelope
                        .properties
                        .headers
                        .insert(name.clone(), value.as_str());
                }
                envelope.body = format!("m{id}").into_bytes().into();
                let publish = Publish {
                    exchange: exchange
                        .as_ref()
                        .map_or_else(String::new, |name| self.names.physical(name))
                        .into(),
                    routing_key: self.names.key(key).into(),
                    mandatory: *mandatory,
                    envelope,
                };
                Outcome::of(&self.transport.publish(publish).await)
            }
            Step::Consume {
                consumer,
                queue,
                prefetch,
            } => {
                let physical = self.names.physical(queue);
                match self.transport.consume(&physical, *prefetch).await {
                    Ok(attached) => {
                        self.consumers.insert(
                            *consumer,
                            Client {
                                queue: queue.clone(),
                                deliveries: Some(attached.deliveries),
                                settler: attached.settler,
                                unsettled: Vec::new(),
                            },
                        );
                        Outcome::Ok
                    }
                    Err(err) => Outcome::of(&Err(err)),
                }
            }
            Step::Ack {
                consumer,
                pick,
                multiple,
            } => {
                self.settle_one(*consumer, *pick, *multiple, |tag| Settlement::Ack {
                    tag,
                    multiple: *multiple,
                })
                .await
            }
            Step::Nack {
                consumer,
                pick,
                multiple,
                requeue,
            } => {
                self.settle_one(*consumer, *pick, *multiple, |tag| Settlement::Nack {
                    tag,
                    multiple: *multiple,
                    requeue: *requeue,
                })
                .await
            }
            Step::Reject {
                consumer,
                pick,
                requeue,
            } => {
                self.settle_one(*consumer, *pick, false, |tag| Settlement::Reject {
                    tag,
                    requeue: *requeue,
                })
                .await
            }
            Step::Cancel { consumer } => match self.consumers.get(consumer) {
                Some(client) => Outcome::of(&client.settler.cancel().await),
                None => Outcome::Skipped,
            },
            Step::Close { consumer } => match self.consumers.remove(consumer) {
                // Dropping the stream and the settler closes the consumer's channel.
                Some(client) => {
                    drop(client);
                    Outcome::Ok
                }
                None => Outcome::Skipped,
            },
            Step::Advance { .. } => Outcome::Ok,
        }
    }

    /// Settles the `pick`-th unsettled delivery of `consumer` (and with `multiple` every
    /// earlier one).
    async fn settle_one(
        &mut self,
        consumer: u32,
        pick: u8,
        multiple: bool,
        settlement: impl FnOnce(u64) -> Settlement,
    ) -> Outcome {
        let Some(client) = self.consumers.get_mut(&consumer) else {
            return Outcome::Skipped;
        };
        if client.unsettled.is_empty() {
            return Outcome::Skipped;
        }
        let tag = client.unsettled[usize::from(pick) % client.unsettled.len()];
        if multiple {
            client.unsettled.retain(|&t| t > tag);
        } else {
            client.unsettled.retain(|&t| t != tag);
        }
        Outcome::of(&client.settler.settle(settlement(tag)).await)
    }

    /// When the current tick began.
    fn tick_start(&self) -> Instant {
        self.start + self.timing.tick * self.ticks
    }

    /// Marks the run inconclusive when `what`, before step `index` is observed, happens too
    /// late after its tick while a message could expire: one is ready in a queue with a TTL
    /// (after the step before, in the in-memory run), or a consumer of such a queue holds one
    /// it may give back.
    fn check_late(&mut self, index: usize, what: &str) {
        self.check_late_at(index, what, Instant::now());
    }

    /// [`check_late`](Self::check_late) for something that happened `at`.
    fn check_late_at(&mut self, index: usize, what: &str, at: Instant) {
        if self.expected.is_none() || self.diverged || self.observation.overrun.is_some() {
            return;
        }
        let ttl = |queue: &str| {
            self.scenario
                .queue(queue)
                .is_some_and(|q| q.ttl_ticks.is_some())
        };
        let waiting = index
            .checked_sub(1)
            .and_then(|before| self.expected.and_then(|e| e.steps.get(before)))
            .is_some_and(|step| {
                step.queues
                    .iter()
                    .any(|(queue, (ready, _))| *ready > 0 && ttl(queue))
            });
        let held = self
            .consumers
            .values()
            .any(|client| !client.unsettled.is_empty() && ttl(&client.queue));
        if !waiting && !held {
            return;
        }
        let late = at.saturating_duration_since(self.tick_start());
        if late > self.timing.late {
            self.observation.overrun = Some(format!(
                "`{what}` at tick {} came {late:?} after it",
                self.ticks
            ));
        }
    }

    /// Records the deliveries that arrived and the queues' counts after step `index`: at once
    /// in memory, on RabbitMQ once they match the expected ones or the settle time is up.
    async fn settle(&mut self, index: usize, observed: &mut StepObservation) {
        let expected = self.expected.and_then(|e| e.steps.get(index));
        let looked = Instant::now();
        let deadline = looked + self.timing.settle;
        loop {
            self.take_ready(&mut observed.deliveries);
            let Some(expected) = expected else {
                observed.queues = self.queue_counts().await;
                return;
            };
            if same_counts(&observed.deliveries, &expected.deliveries) {
                observed.queues = self.queue_counts().await;
                if observed.queues == expected.queues {
                    return;
                }
            }
            if Instant::now() >= deadline {
                observed.queues = self.queue_counts().await;
                // The step's operation itself ended too late after its tick (a slow machine
                // closing a channel, say): an expiry may have come first, so the run proves
                // nothing rather than showing a difference.
                self.check_late_at(index + 1, &format!("observing step {index}"), looked);
                if self.observation.overrun.is_none() {
                    self.diverged = true;
                }
                return;
            }
            self.wait_for_delivery(&mut observed.deliveries).await;
        }
    }

    /// Takes every delivery already arrived, without waiting.
    fn take_ready(&mut self, into: &mut BTreeMap<u32, Vec<Seen>>) {
        for (&id, client) in &mut self.consumers {
            while let Some(stream) = client.deliveries.as_mut() {
                match stream.next().now_or_never() {
                    Some(Some(delivery)) => {
                        client.unsettled.push(delivery.tag);
                        into.entry(id)
                            .or_default()
                            .push(Seen::of(&delivery, self.names));
                    }
                    Some(None) => client.deliveries = None,
                    None => break,
                }
            }
        }
    }

    /// Waits a little for the next delivery to any consumer: the poll interval of a bounded
    /// wait on the broker's state, cut short by a delivery.
    async fn wait_for_delivery(&mut self, into: &mut BTreeMap<u32, Vec<Seen>>) {
        const POLL: Duration = Duration::from_millis(5);
        let mut waiting: Vec<(u32, &mut Client)> = self
            .consumers
            .iter_mut()
            .filter(|(_, client)| client.deliveries.is_some())
            .map(|(&id, client)| (id, client))
            .collect();
        if waiting.is_empty() {
            tokio::time::sleep(POLL).await;
            return;
        }
        let next = futures_util::future::select_all(waiting.iter_mut().map(|(_, client)| {
            // Only streams still open were kept.
            let stream = client.deliveries.as_mut();
            async move {
                match stream {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            }
            .boxed()
        }));
        let Ok((delivery, index, _)) = tokio::time::timeout(POLL, next).await else {
            return;
        };
        let (id, client) = &mut waiting[index];
        match delivery {
            Some(delivery) => {
                client.unsettled.push(delivery.tag);
                into.entry(*id)
                    .or_default()
                    .push(Seen::of(&delivery, self.names));
            }
            None => client.deliveries = None,
        }
    }

    /// Each queue's ready messages and consumers, as a passive declare reports them.
    async fn queue_counts(&self) -> BTreeMap<String, (u64, Option<u32>)> {
        let mut counts = BTreeMap::new();
        for queue in &self.scenario.queues {
            let stats = self
                .transport
                .queue_stats(&self.names.physical(&queue.name))
                .await
                .map_or((u64::MAX, None), |stats| (stats.ready, stats.consumers));
            counts.insert(queue.name.clone(), stats);
        }
        counts
    }

    /// Reads `queue`'s ready messages with a fresh consumer, acks them, and closes it.
    async fn drain(&mut self, queue: &str) -> Vec<Seen> {
        let expected = self.expected.and_then(|e| {
            e.drained
                .iter()
                .find(|(name, _)| name == queue)
                .map(|(_, seen)| seen.len())
        });
        let physical = self.names.physical(queue);
        let Ok(attached) = self.transport.consume(&physical, 0).await else {
            return Vec::new();
        };
        let mut stream = attached.deliveries;
        let mut seen = Vec::new();
        let mut last = 0;
        let deadline = Instant::now() + self.timing.settle;
        loop {
            while let Some(Some(delivery)) = stream.next().now_or_never() {
                last = delivery.tag;
                seen.push(Seen::of(&delivery, self.names));
            }
            let Some(expected) = expected else { break };
            if seen.len() >= expected {
                let ready = self.transport.message_count(&physical).await.unwrap_or(0);
                if ready == 0 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            if let Ok(Some(delivery)) =
                tokio::time::timeout(Duration::from_millis(5), stream.next()).await
            {
                last = delivery.tag;
                seen.push(Seen::of(&delivery, self.names));
            }
        }
        if last > 0 {
            // Acked, so that closing the channel gives nothing back to dead-letter elsewhere.
            let _ = attached
                .settler
                .settle(Settlement::Ack {
                    tag: last,
                    multiple: true,
                })
                .await;
        }
        let _ = attached.settler.cancel().await;
        seen
    }
}

/// Whether each consumer got as many deliveries in the step as expected.
fn same_counts(got: &BTreeMap<u32, Vec<Seen>>, expected: &BTreeMap<u32, Vec<Seen>>) -> bool {
    let count = |map: &BTreeMap<u32, Vec<Seen>>, id: &u32| map.get(id).map_or(0, Vec::len);
    got.keys()
        .chain(expected.keys())
        .all(|id| count(got, id) == count(expected, id))
}
