//! Random transport-level scenarios on the in-memory broker and on RabbitMQ, compared.
//!
//! `JOBS_DIFF_CASES` (200 by default) cases, each a scenario generated from its own seed,
//! [`JOBS`] at a time on RabbitMQ; the run's seed is printed, a failing case's seed too, and
//! a failing case is shrunk. See `docs/testing.md`, "Differential testing", for the
//! variables that replay a run or a case.

use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jobs_differential::transport::rng::Rng;
use jobs_differential::transport::shrink::shrink;
use jobs_differential::transport::{Scenario, Timing, Verdict, check, generate};

/// Cases of a run unless `JOBS_DIFF_CASES` says otherwise.
const CASES: u64 = 200;
/// Cases on RabbitMQ at once unless `JOBS_DIFF_JOBS` says otherwise: most of a case is
/// waiting for ticks to pass, so several overlap well even on two cores.
const JOBS: usize = 8;
/// Candidates a failing case's shrinking tries unless `JOBS_DIFF_SHRINK` says otherwise.
const SHRINK_BUDGET: usize = 80;

/// Writes a line straight to the process's stderr: the test harness captures `eprintln!`
/// of a passing test, and the seed of every run must show in CI's log.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Whether a case found a real difference (not a run the clock made inconclusive).
fn diverges(verdict: &Verdict) -> bool {
    !verdict.agrees() && !verdict.inconclusive()
}

#[test]
fn random_transport_scenarios_agree_on_both_brokers() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let timing = Timing::default();
    let runtime = runtime();
    if let Some(seed) = env_number("JOBS_DIFF_REPLAY") {
        say(&format!(
            "transport differential: replaying case seed {seed:#x}"
        ));
        let scenario = generate(seed);
        let verdict = runtime.block_on(check(&url, &scenario, &timing)).unwrap();
        if diverges(&verdict) {
            fail_with(&runtime, &url, &timing, &[(0, seed, scenario, verdict)], 1);
        }
        say(&format!(
            "transport differential: case {seed:#x} agrees on both brokers{}",
            if verdict.inconclusive() {
                " (inconclusive: too slow for its ticks)"
            } else {
                ""
            }
        ));
        return;
    }
    let cases = env_number("JOBS_DIFF_CASES").unwrap_or(CASES);
    let jobs = env_number("JOBS_DIFF_JOBS").map_or(JOBS, |n| usize::try_from(n).unwrap());
    let run_seed = env_number("JOBS_DIFF_SEED").unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Rng::new(u64::try_from(nanos % u128::from(u64::MAX)).unwrap()).next_u64()
    });
    say(&format!(
        "transport differential: {cases} cases, run seed {run_seed:#x} (rerun with \
         JOBS_DIFF_SEED={run_seed:#x} JOBS_DIFF_CASES={cases})"
    ));
    let started = Instant::now();
    let results: Vec<(u64, u64, Scenario, Verdict)> = runtime.block_on(async {
        futures_util::stream::iter(0..cases)
            .map(|index| {
                let url = url.clone();
                async move {
                    let seed = Rng::case_seed(run_seed, index);
                    let scenario = generate(seed);
                    let started = Instant::now();
                    let verdict = check(&url, &scenario, &timing)
                        .await
                        .unwrap_or_else(|err| panic!("case {index} (seed {seed:#x}): {err}"));
                    if std::env::var_os("JOBS_DIFF_VERBOSE").is_some() {
                        say(&format!(
                            "case {index} seed {seed:#x}: {} steps, {} ticks, {} differences, \
                             {} attempts, {:.1} s{}",
                            scenario.steps.len(),
                            scenario.ticks(),
                            verdict.differences.len(),
                            verdict.attempts,
                            started.elapsed().as_secs_f64(),
                            verdict
                                .rabbitmq
                                .overrun
                                .as_deref()
                                .map_or(String::new(), |o| format!(" ({o})"))
                        ));
                    }
                    if (index + 1) % 50 == 0 {
                        say(&format!("transport differential: {} cases run", index + 1));
                    }
                    (index, seed, scenario, verdict)
                }
            })
            .buffer_unordered(jobs)
            .collect()
            .await
    });
    let retried = results.iter().filter(|(.., v)| v.attempts > 1).count();
    let overlapped = results.iter().filter(|(.., v)| v.inconclusive()).count();
    let mut slowed = 0;
    // Cases that stayed too late for their ticks while others ran beside them get a second
    // chance alone, when only this test's own load is left, and a third on a clock at half
    // the speed, for a machine too slow for the first.
    let results: Vec<(u64, u64, Scenario, Verdict, Timing)> = runtime.block_on(async {
        let mut settled = Vec::with_capacity(results.len());
        for (index, seed, scenario, mut verdict) in results {
            let mut at = timing;
            for chance in [timing, timing.slower()] {
                if !verdict.inconclusive() {
                    break;
                }
                at = chance;
                slowed += usize::from(at != timing);
                verdict = check(&url, &scenario, &at)
                    .await
                    .unwrap_or_else(|err| panic!("case {index} (seed {seed:#x}) alone: {err}"));
            }
            settled.push((index, seed, scenario, verdict, at));
        }
        settled
    });
    let elapsed = started.elapsed();
    let inconclusive = results
        .iter()
        .filter(|(_, _, _, v, _)| v.inconclusive())
        .count();
    let mut failures: Vec<(u64, u64, Scenario, Verdict, Timing)> = results
        .into_iter()
        .filter(|(_, _, _, verdict, _)| diverges(verdict))
        .collect();
    failures.sort_by_key(|(index, ..)| *index);
    say(&format!(
        "transport differential: run seed {run_seed:#x}: {cases} cases, {} divergent, \
         {inconclusive} inconclusive ({retried} rerun for the clock, {overlapped} of them \
         alone, {slowed} of those at half speed), in {:.1} s",
        failures.len(),
        elapsed.as_secs_f64()
    ));
    if let Some((.., at)) = failures.first() {
        let at = *at;
        let failures: Vec<_> = failures
            .into_iter()
            .map(|(index, seed, scenario, verdict, _)| (index, seed, scenario, verdict))
            .collect();
        fail_with(&runtime, &url, &at, &failures, cases);
    }
    // A slow machine may miss a tick now and then; a run that proves little fails.
    assert!(
        inconclusive * 20 <= usize::try_from(cases).unwrap(),
        "{inconclusive} of {cases} cases were inconclusive: the machine is too slow for the ticks"
    );
}

/// Prints the failing cases and the first one shrunk, then fails.
fn fail_with(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    timing: &Timing,
    failures: &[(u64, u64, Scenario, Verdict)],
    cases: u64,
) -> ! {
    for (index, seed, _, verdict) in failures.iter().take(3) {
        say(&format!(
            "case {index}, seed {seed:#x} (replay: JOBS_DIFF_REPLAY={seed:#x}):\n{}",
            verdict.report()
        ));
    }
    let seeds: Vec<String> = failures
        .iter()
        .map(|(_, seed, ..)| format!("{seed:#x}"))
        .collect();
    let (_, seed, scenario, _) = &failures[0];
    let budget =
        env_number("JOBS_DIFF_SHRINK").map_or(SHRINK_BUDGET, |n| usize::try_from(n).unwrap());
    say(&format!(
        "shrinking case seed {seed:#x}, at most {budget} runs…"
    ));
    let shrunk = runtime.block_on(shrink(
        scenario.clone(),
        budget,
        async |candidate: &Scenario| {
            check(url, candidate, timing)
                .await
                .is_ok_and(|verdict| diverges(&verdict))
        },
    ));
    let verdict = runtime.block_on(check(url, &shrunk, timing)).unwrap();
    say(&format!(
        "shrunk from {} to {} steps:\n{shrunk:#?}\n{}",
        scenario.steps.len(),
        shrunk.steps.len(),
        verdict.report()
    ));
    panic!(
        "{} of {cases} cases diverge (seeds {}); the first, shrunk, is printed above",
        failures.len(),
        seeds.join(", ")
    );
}

/// The divergences differential testing found, each as the scenario that showed it, shrunk
/// and written out: both brokers must agree on it. The in-memory broker's own tests of the
/// fixes are in `jobs-core/src/transport/memory/tests/differential.rs`.
mod regressions {
    use jobs_core::ExchangeKind;
    use jobs_differential::transport::scenario::{
        Binding, DeadLetter, ExchangeDecl, Key, MaxLength, QueueDecl,
    };
    use jobs_differential::transport::{Scenario, Step, Timing, check};

    fn queue(name: &str) -> QueueDecl {
        QueueDecl {
            name: name.into(),
            ..QueueDecl::default()
        }
    }

    fn quorum(name: &str) -> QueueDecl {
        QueueDecl {
            quorum: true,
            ..queue(name)
        }
    }

    fn publish(id: u32, queue: &str) -> Step {
        Step::Publish {
            id,
            exchange: None,
            key: Key::Queue(queue.into()),
            mandatory: true,
            headers: Vec::new(),
        }
    }

    fn consume(consumer: u32, queue: &str, prefetch: u16) -> Step {
        Step::Consume {
            consumer,
            queue: queue.into(),
            prefetch,
        }
    }

    fn requeue(consumer: u32, pick: u8) -> Step {
        Step::Reject {
            consumer,
            pick,
            requeue: true,
        }
    }

    fn scenario(queues: Vec<QueueDecl>, steps: Vec<Step>) -> Scenario {
        Scenario {
            seed: 0,
            exchanges: Vec::new(),
            queues,
            bindings: Vec::new(),
            exchange_bindings: Vec::new(),
            steps,
        }
    }

    /// Runs `scenario` on both brokers and fails with the differences when they disagree.
    fn agree(scenario: &Scenario) {
        let Some(url) = jobs_core::testing::broker_url() else {
            return;
        };
        let verdict = super::runtime()
            .block_on(check(&url, scenario, &Timing::default()))
            .unwrap();
        assert!(
            verdict.differences.is_empty(),
            "the brokers disagree:\n{}",
            verdict.report()
        );
    }

    #[test]
    fn a_quorum_queue_without_a_delivery_limit_requeues_to_the_back() {
        agree(&scenario(
            vec![quorum("q0")],
            vec![
                publish(0, "q0"),
                publish(1, "q0"),
                publish(2, "q0"),
                consume(0, "q0", 1),
                requeue(0, 0),
                Step::Nack {
                    consumer: 0,
                    pick: 0,
                    multiple: false,
                    requeue: true,
                },
            ],
        ));
    }

    #[test]
    fn a_quorum_queue_gives_back_returns_first_in_the_order_they_came_back() {
        let limited = QueueDecl {
            delivery_limit: Some(5),
            ..quorum("q0")
        };
        agree(&scenario(
            vec![limited],
            vec![
                publish(0, "q0"),
                publish(1, "q0"),
                publish(2, "q0"),
                publish(3, "q0"),
                consume(0, "q0", 0),
                Step::Cancel { consumer: 0 },
                requeue(0, 1),
                requeue(0, 0),
                consume(1, "q0", 0),
                Step::Close { consumer: 0 },
            ],
        ));
    }

    #[test]
    fn a_quorum_queue_counts_a_cancelled_consumer_holding_deliveries_and_not_waiting_ones() {
        let single = QueueDecl {
            single_active: true,
            ..quorum("q1")
        };
        agree(&scenario(
            vec![quorum("q0"), single],
            vec![
                publish(0, "q0"),
                consume(0, "q0", 1),
                Step::Cancel { consumer: 0 },
                Step::Ack {
                    consumer: 0,
                    pick: 0,
                    multiple: false,
                },
                consume(1, "q1", 1),
                consume(2, "q1", 1),
                publish(1, "q1"),
                Step::Close { consumer: 1 },
            ],
        ));
    }

    #[test]
    fn a_publish_reaches_every_queue_before_what_it_makes_a_queue_dead_letter() {
        let full = QueueDecl {
            max_length: Some(MaxLength {
                max: 1,
                reject_publish: false,
            }),
            dead_letter: Some(DeadLetter {
                exchange: None,
                routing_key: Some(Key::Queue("q1".into())),
            }),
            ..queue("q0")
        };
        let mut scenario = scenario(
            vec![full, queue("q1")],
            vec![
                publish(0, "q0"),
                Step::Publish {
                    id: 1,
                    exchange: Some("x0".into()),
                    key: Key::Text(String::new()),
                    mandatory: true,
                    headers: Vec::new(),
                },
            ],
        );
        scenario.exchanges.push(ExchangeDecl {
            name: "x0".into(),
            kind: ExchangeKind::Fanout,
        });
        for queue in ["q0", "q1"] {
            scenario.bindings.push(Binding {
                queue: queue.into(),
                exchange: "x0".into(),
                key: String::new(),
                matching: None,
            });
        }
        agree(&scenario);
    }

    #[test]
    fn a_rejected_message_dead_lettered_back_arrives_after_the_queue_delivered_again() {
        let refusing = QueueDecl {
            max_length: Some(MaxLength {
                max: 1,
                reject_publish: true,
            }),
            dead_letter: Some(DeadLetter {
                exchange: None,
                routing_key: None,
            }),
            ..quorum("q1")
        };
        agree(&scenario(
            vec![refusing],
            vec![
                publish(2, "q1"),
                publish(4, "q1"),
                consume(3, "q1", 1),
                Step::Nack {
                    consumer: 3,
                    pick: 1,
                    multiple: true,
                    requeue: false,
                },
                publish(5, "q1"),
            ],
        ));
    }

    #[test]
    fn a_quorum_queue_dead_letters_the_heads_one_command_drops_in_reverse() {
        let limited = QueueDecl {
            max_length: Some(MaxLength {
                max: 2,
                reject_publish: false,
            }),
            dead_letter: Some(DeadLetter {
                exchange: None,
                routing_key: Some(Key::Queue("q3".into())),
            }),
            ..quorum("q2")
        };
        agree(&scenario(
            vec![limited, queue("q3")],
            vec![
                publish(0, "q2"),
                publish(1, "q2"),
                consume(0, "q2", 3),
                publish(2, "q2"),
                publish(3, "q2"),
                Step::Close { consumer: 0 },
            ],
        ));
    }

    #[test]
    fn a_quorum_queue_dead_letters_past_its_delivery_limit_before_what_expired() {
        let limited = QueueDecl {
            ttl_ticks: Some(0),
            delivery_limit: Some(1),
            dead_letter: Some(DeadLetter {
                exchange: None,
                routing_key: Some(Key::Queue("q1".into())),
            }),
            ..quorum("q0")
        };
        agree(&scenario(
            vec![limited, queue("q1")],
            vec![
                publish(0, "q0"),
                consume(0, "q0", 0),
                Step::Advance { ticks: 1 },
                publish(1, "q0"),
                Step::Nack {
                    consumer: 0,
                    pick: 1,
                    multiple: false,
                    requeue: true,
                },
                Step::Close { consumer: 0 },
            ],
        ));
    }

    #[test]
    fn a_classic_queue_applies_its_length_limit_to_a_requeued_message_before_delivering() {
        let limited = QueueDecl {
            max_length: Some(MaxLength {
                max: 1,
                reject_publish: false,
            }),
            dead_letter: Some(DeadLetter {
                exchange: None,
                routing_key: Some(Key::Queue("q1".into())),
            }),
            ..queue("q0")
        };
        agree(&scenario(
            vec![limited, queue("q1")],
            vec![
                consume(0, "q0", 1),
                publish(0, "q0"),
                publish(1, "q0"),
                requeue(0, 0),
            ],
        ));
    }
}
