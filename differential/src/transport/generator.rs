//! The scenario generator: a seed in, a [`Scenario`] out, the same one every time.
//!
//! It draws from the broker features the framework relies on (see the module docs' scenario
//! space) and keeps to what both brokers make deterministic:
//!
//! * a queue has at most one consumer taking deliveries at a time, since RabbitMQ spreads
//!   messages over several by credit and timing; only a quorum single-active-consumer queue
//!   has up to three, one of them active (a classic one's hand-over is broken in RabbitMQ
//!   3.10.8, see the in-memory broker's table);
//! * no message that expires can reach a queue with a TTL through dead-lettering (directly or
//!   down a chain of dead-letter targets): it would enter that queue half-way between two
//!   ticks and expire on a tick, at the same moment as a step;
//! * no two queues with a TTL dead-letter into a common queue (directly or down a chain): two
//!   messages published on the same tick to two such queues with the same TTL expire at the
//!   same moment, and which dead letter arrives first is a race on RabbitMQ (a full target
//!   then keeps one or the other), where the in-memory broker expires queues in a fixed order;
//! * at most [`MAX_TICKS`] ticks pass, so a scenario takes a few seconds on RabbitMQ.

use std::collections::BTreeSet;

use jobs_core::ExchangeKind;

use super::rng::Rng;
use super::scenario::{
    Binding, DeadLetter, ExchangeBinding, ExchangeDecl, HeaderMatch, Key, MaxLength, QueueDecl,
    Scenario, Step,
};

/// The most ticks a scenario lets pass.
pub const MAX_TICKS: u32 = 6;

/// The most steps a scenario has (before the runner's closing steps).
pub const MAX_STEPS: u32 = 24;

/// The words of routing keys and topic patterns: few, so that patterns match often.
const WORDS: [&str; 3] = ["a", "b", "c"];

/// The scenario of `seed`.
#[must_use]
pub fn generate(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let exchanges = exchanges(&mut rng);
    let mut queues = queues(&mut rng);
    let bindings = bindings(&mut rng, &exchanges, &queues);
    let exchange_bindings = exchange_bindings(&mut rng, &exchanges);
    let names = queues_names(&queues);
    for queue in &mut queues {
        queue.dead_letter = dead_letter(&mut rng, &exchanges, &names);
        if !(queue.quorum && queue.dead_letter.is_some()) {
            queue.at_least_once = false;
        }
        if queue.quorum {
            // A quorum queue's `reject-publish` with a length limit is left out: RabbitMQ 3.10
            // tells each publishing channel asynchronously when the queue refuses and when it
            // takes publishes again, which the in-memory broker does not emulate (see its
            // table). At-least-once dead-lettering declares `reject-publish`, so such a queue
            // has no length limit, as the framework's have none.
            if queue.at_least_once {
                queue.max_length = None;
            } else if let Some(limit) = &mut queue.max_length {
                limit.reject_publish = false;
            }
        }
    }
    for queue in &mut queues {
        if queue.quorum && queue.single_active {
            // RabbitMQ 3.10.8 hands nothing over to the next consumer of a quorum queue with
            // a single active consumer and a TTL when the active one's channel closes: see the
            // in-memory broker's table. The framework's schedule queues have no TTL.
            queue.ttl_ticks = None;
        }
    }
    let mut scenario = Scenario {
        seed,
        exchanges,
        queues,
        bindings,
        exchange_bindings,
        steps: Vec::new(),
    };
    keep_expiry_away_from_ttl_queues(&mut scenario);
    keep_expiries_from_meeting(&mut scenario);
    keep_at_least_once_away_from_full_queues(&mut scenario);
    scenario.steps = steps(&mut rng, &scenario);
    scenario
}

fn queues_names(queues: &[QueueDecl]) -> Vec<String> {
    queues.iter().map(|queue| queue.name.clone()).collect()
}

fn exchanges(rng: &mut Rng) -> Vec<ExchangeDecl> {
    const KINDS: [ExchangeKind; 4] = [
        ExchangeKind::Direct,
        ExchangeKind::Topic,
        ExchangeKind::Fanout,
        ExchangeKind::Headers,
    ];
    (0..rng.range(0, 3))
        .map(|n| ExchangeDecl {
            name: format!("x{n}"),
            kind: KINDS[rng.below(KINDS.len())],
        })
        .collect()
}

fn queues(rng: &mut Rng) -> Vec<QueueDecl> {
    (0..rng.range(1, 4))
        .map(|n| {
            let quorum = rng.chance(40);
            QueueDecl {
                name: format!("q{n}"),
                quorum,
                ttl_ticks: rng.chance(30).then(|| rng.range(0, 2)),
                dead_letter: None,
                delivery_limit: (quorum && rng.chance(40)).then(|| rng.range(0, 2)),
                max_length: rng.chance(20).then(|| MaxLength {
                    max: rng.range(1, 3),
                    reject_publish: rng.chance(30),
                }),
                single_active: rng.chance(15),
                at_least_once: rng.chance(30),
            }
        })
        .collect()
}

/// A dead-letter target, half the time: the default exchange with a queue's name, or a
/// declared exchange with a key of its kind or the message's own.
fn dead_letter(rng: &mut Rng, exchanges: &[ExchangeDecl], queues: &[String]) -> Option<DeadLetter> {
    if !rng.chance(50) {
        return None;
    }
    match rng.pick(exchanges) {
        Some(exchange) if rng.chance(50) => Some(DeadLetter {
            exchange: Some(exchange.name.clone()),
            routing_key: rng
                .chance(60)
                .then(|| Key::Text(publish_key(rng, exchange.kind))),
        }),
        _ => Some(DeadLetter {
            exchange: None,
            routing_key: Some(queue_key(rng, queues)),
        }),
    }
}

/// A key naming one of `queues`, or now and then one that does not exist.
fn queue_key(rng: &mut Rng, queues: &[String]) -> Key {
    match rng.pick(queues) {
        Some(queue) if !rng.chance(10) => Key::Queue(queue.clone()),
        _ => Key::Queue("none".to_owned()),
    }
}

fn bindings(rng: &mut Rng, exchanges: &[ExchangeDecl], queues: &[QueueDecl]) -> Vec<Binding> {
    let mut bindings = Vec::new();
    for exchange in exchanges {
        for _ in 0..rng.range(0, 3) {
            let Some(queue) = rng.pick(queues) else {
                continue;
            };
            let (key, matching) = binding_key(rng, exchange.kind);
            let binding = Binding {
                queue: queue.name.clone(),
                exchange: exchange.name.clone(),
                key,
                matching,
            };
            // RabbitMQ keeps one binding per (queue, exchange, key, arguments).
            if !bindings.contains(&binding) {
                bindings.push(binding);
            }
        }
    }
    bindings
}

fn exchange_bindings(rng: &mut Rng, exchanges: &[ExchangeDecl]) -> Vec<ExchangeBinding> {
    if exchanges.len() < 2 || !rng.chance(30) {
        return Vec::new();
    }
    let source = &exchanges[rng.below(exchanges.len())];
    let destination = &exchanges[rng.below(exchanges.len())];
    if source.name == destination.name {
        return Vec::new();
    }
    let (key, matching) = binding_key(rng, source.kind);
    vec![ExchangeBinding {
        destination: destination.name.clone(),
        source: source.name.clone(),
        key,
        matching,
    }]
}

/// A binding key for an exchange of `kind`, and on a headers exchange what it matches.
fn binding_key(rng: &mut Rng, kind: ExchangeKind) -> (String, Option<HeaderMatch>) {
    match kind {
        ExchangeKind::Direct => (direct_key(rng), None),
        ExchangeKind::Topic => (topic_pattern(rng), None),
        ExchangeKind::Fanout => (String::new(), None),
        ExchangeKind::Headers => {
            let mut values = Vec::new();
            for name in ["h1", "h2"] {
                if rng.chance(60) {
                    values.push((name.to_owned(), WORDS[rng.below(2)].to_owned()));
                }
            }
            (
                String::new(),
                Some(HeaderMatch {
                    all: rng.chance(50),
                    values,
                }),
            )
        }
    }
}

/// A routing key a publish to an exchange of `kind` carries.
fn publish_key(rng: &mut Rng, kind: ExchangeKind) -> String {
    match kind {
        ExchangeKind::Topic => {
            let words: Vec<&str> = (0..rng.range(0, 3))
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect();
            words.join(".")
        }
        _ => direct_key(rng),
    }
}

fn direct_key(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => String::new(),
        n => WORDS[n - 1].to_owned(),
    }
}

/// A topic binding pattern: up to three of `a`, `b`, `*` and `#`.
fn topic_pattern(rng: &mut Rng) -> String {
    const TOKENS: [&str; 4] = ["a", "b", "*", "#"];
    let tokens: Vec<&str> = (0..rng.range(0, 3))
        .map(|_| TOKENS[rng.below(TOKENS.len())])
        .collect();
    tokens.join(".")
}

/// Takes the TTL off every queue from which an expired message could reach a queue with a
/// TTL: see the [module docs](self).
pub(super) fn keep_expiry_away_from_ttl_queues(scenario: &mut Scenario) {
    loop {
        let offending = scenario.queues.iter().position(|queue| {
            queue.ttl_ticks.is_some()
                && reachable_by_dead_letter(scenario, &queue.name)
                    .iter()
                    .any(|name| scenario.queue(name).is_some_and(|q| q.ttl_ticks.is_some()))
        });
        match offending {
            Some(index) => scenario.queues[index].ttl_ticks = None,
            None => return,
        }
    }
}

/// Takes the TTL off every queue whose expired messages could meet another TTL queue's in a
/// common dead-letter target, keeping the first: see the [module docs](self).
pub(super) fn keep_expiries_from_meeting(scenario: &mut Scenario) {
    let mut kept: Vec<BTreeSet<String>> = Vec::new();
    for index in 0..scenario.queues.len() {
        if scenario.queues[index].ttl_ticks.is_none() {
            continue;
        }
        let reached = reachable_by_dead_letter(scenario, &scenario.queues[index].name);
        if kept.iter().any(|other| !other.is_disjoint(&reached)) {
            scenario.queues[index].ttl_ticks = None;
        } else {
            kept.push(reached);
        }
    }
}

/// Takes at-least-once dead-lettering off every queue from which a dead-lettered message
/// could reach a queue with `x-overflow = reject-publish` and a length limit: RabbitMQ keeps
/// such a message in its source until the target has room, and the in-memory broker lets it
/// in at once (or drops it, into a classic queue); see its table.
pub(super) fn keep_at_least_once_away_from_full_queues(scenario: &mut Scenario) {
    for index in 0..scenario.queues.len() {
        if !scenario.queues[index].at_least_once {
            continue;
        }
        let name = scenario.queues[index].name.clone();
        let refusing = reachable_by_dead_letter(scenario, &name)
            .iter()
            .any(|target| {
                scenario
                    .queue(target)
                    .and_then(|q| q.max_length)
                    .is_some_and(|limit| limit.reject_publish)
            });
        if refusing {
            scenario.queues[index].at_least_once = false;
        }
    }
}

/// The queues a message dead-lettered from `queue` may end in, down chains of dead-letter
/// targets, counted generously: every queue an exchange routes to whatever the key, and every
/// queue when the default exchange keeps the message's own key.
fn reachable_by_dead_letter(scenario: &Scenario, queue: &str) -> BTreeSet<String> {
    let mut reached = BTreeSet::new();
    let mut frontier = vec![queue.to_owned()];
    while let Some(from) = frontier.pop() {
        let Some(target) = scenario.queue(&from).and_then(|q| q.dead_letter.as_ref()) else {
            continue;
        };
        for next in dead_letter_targets(scenario, target) {
            if reached.insert(next.clone()) {
                frontier.push(next);
            }
        }
    }
    reached
}

fn dead_letter_targets(scenario: &Scenario, target: &DeadLetter) -> BTreeSet<String> {
    match (&target.exchange, &target.routing_key) {
        (None, Some(Key::Queue(queue))) => BTreeSet::from([queue.clone()]),
        (None, _) => scenario.queues.iter().map(|q| q.name.clone()).collect(),
        (Some(exchange), _) => {
            let mut exchanges = BTreeSet::from([exchange.clone()]);
            let mut frontier = vec![exchange.clone()];
            while let Some(source) = frontier.pop() {
                for binding in &scenario.exchange_bindings {
                    if binding.source == source && exchanges.insert(binding.destination.clone()) {
                        frontier.push(binding.destination.clone());
                    }
                }
            }
            scenario
                .bindings
                .iter()
                .filter(|binding| exchanges.contains(&binding.exchange))
                .map(|binding| binding.queue.clone())
                .collect()
        }
    }
}

/// A consumer as the generator tracks it.
struct Tracked {
    id: u32,
    queue: String,
    cancelled: bool,
    closed: bool,
}

fn steps(rng: &mut Rng, scenario: &Scenario) -> Vec<Step> {
    let count = rng.range(4, MAX_STEPS);
    let mut steps = Vec::new();
    let mut consumers: Vec<Tracked> = Vec::new();
    let mut messages = 0;
    let mut ticks = 0;
    while steps.len() < count as usize {
        let open: Vec<u32> = consumers
            .iter()
            .filter(|c| !c.closed)
            .map(|c| c.id)
            .collect();
        let consumable: Vec<&QueueDecl> = scenario
            .queues
            .iter()
            .filter(|queue| {
                let taking = consumers
                    .iter()
                    .filter(|c| c.queue == queue.name && !c.closed && !c.cancelled)
                    .count();
                // Several at once only where one of them receives: a quorum queue's single
                // active consumer. RabbitMQ 3.10.8's classic queue does not deliver to the
                // consumer that becomes active when the active one is cancelled, and crashes
                // at the next publish (see the in-memory broker's table).
                if queue.single_active && queue.quorum {
                    taking < 3
                } else {
                    taking == 0
                }
            })
            .collect();
        let step = match rng.below(100) {
            0..34 => publish(rng, scenario, &mut messages),
            34..46 => match rng.pick(&consumable) {
                Some(queue) => {
                    let id = u32::try_from(consumers.len()).unwrap_or(u32::MAX);
                    consumers.push(Tracked {
                        id,
                        queue: queue.name.clone(),
                        cancelled: false,
                        closed: false,
                    });
                    let prefetch = [1, 1, 2, 3, 0][rng.below(5)];
                    Step::Consume {
                        consumer: id,
                        queue: queue.name.clone(),
                        // RabbitMQ before 3.11 credits a consumer twice for a message its
                        // requeue sends past the delivery limit (rabbitmq-server#5609): with a
                        // prefetch it would then hold one delivery more. Not emulated.
                        prefetch: if queue.delivery_limit.is_some() {
                            0
                        } else {
                            prefetch
                        },
                    }
                }
                None => continue,
            },
            46..58 => match rng.pick(&open) {
                Some(&consumer) => Step::Ack {
                    consumer,
                    pick: pick(rng),
                    multiple: rng.chance(25),
                },
                None => continue,
            },
            58..68 => match rng.pick(&open) {
                Some(&consumer) => Step::Nack {
                    consumer,
                    pick: pick(rng),
                    multiple: rng.chance(25),
                    requeue: rng.chance(50),
                },
                None => continue,
            },
            68..74 => match rng.pick(&open) {
                Some(&consumer) => Step::Reject {
                    consumer,
                    pick: pick(rng),
                    requeue: rng.chance(50),
                },
                None => continue,
            },
            74..78 => match rng.pick(&open) {
                Some(&consumer) => {
                    if let Some(c) = consumers.iter_mut().find(|c| c.id == consumer) {
                        c.cancelled = true;
                    }
                    Step::Cancel { consumer }
                }
                None => continue,
            },
            78..84 => match rng.pick(&open) {
                Some(&consumer) => {
                    if let Some(c) = consumers.iter_mut().find(|c| c.id == consumer) {
                        c.closed = true;
                    }
                    Step::Close { consumer }
                }
                None => continue,
            },
            _ if ticks < MAX_TICKS => {
                let n = rng.range(1, (MAX_TICKS - ticks).min(3));
                ticks += n;
                Step::Advance { ticks: n }
            }
            _ => continue,
        };
        steps.push(step);
    }
    steps
}

fn pick(rng: &mut Rng) -> u8 {
    u8::try_from(rng.below(8)).unwrap_or(0)
}

fn publish(rng: &mut Rng, scenario: &Scenario, messages: &mut u32) -> Step {
    let id = *messages;
    *messages += 1;
    let (exchange, key) = match rng.pick(&scenario.exchanges) {
        Some(exchange) if rng.chance(70) => (
            Some(exchange.name.clone()),
            Key::Text(publish_key(rng, exchange.kind)),
        ),
        _ => (None, queue_key(rng, &queues_names(&scenario.queues))),
    };
    let mut headers = Vec::new();
    for name in ["h1", "h2"] {
        if rng.chance(50) {
            headers.push((name.to_owned(), WORDS[rng.below(2)].to_owned()));
        }
    }
    Step::Publish {
        id,
        exchange,
        key,
        mandatory: rng.chance(50),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_scenario() {
        for seed in 0..50 {
            assert_eq!(generate(seed), generate(seed));
        }
    }

    #[test]
    fn no_expired_message_reaches_a_ttl_queue() {
        for seed in 0..500 {
            let scenario = generate(seed);
            for queue in scenario.queues.iter().filter(|q| q.ttl_ticks.is_some()) {
                for reached in reachable_by_dead_letter(&scenario, &queue.name) {
                    assert!(
                        scenario
                            .queue(&reached)
                            .is_none_or(|q| q.ttl_ticks.is_none()),
                        "seed {seed}: {} reaches {reached}",
                        queue.name
                    );
                }
            }
            assert!(scenario.ticks() <= MAX_TICKS);
        }
    }

    #[test]
    fn no_two_ttl_queues_dead_letter_into_one_queue() {
        for seed in 0..500 {
            let scenario = generate(seed);
            let ttl_queues: Vec<&QueueDecl> = scenario
                .queues
                .iter()
                .filter(|q| q.ttl_ticks.is_some())
                .collect();
            for (n, first) in ttl_queues.iter().enumerate() {
                for second in &ttl_queues[n + 1..] {
                    let shared: Vec<String> = reachable_by_dead_letter(&scenario, &first.name)
                        .intersection(&reachable_by_dead_letter(&scenario, &second.name))
                        .cloned()
                        .collect();
                    assert!(
                        shared.is_empty(),
                        "seed {seed}: {} and {} both reach {shared:?}",
                        first.name,
                        second.name
                    );
                }
            }
        }
    }
}
