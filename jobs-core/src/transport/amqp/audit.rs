//! The declarations RabbitMQ 4 refuses are never made: every queue the framework can declare
//! is durable or exclusive (never a transient queue others share, `transient_nonexcl_queues`),
//! and `basic.qos` is never global (`global_qos`).
//!
//! Two walks: every topology the framework can declare, through the options the transport
//! declares its queues with; and every `queue_declare` and `basic_qos` call in this crate's
//! source, which must go through those audited options.

use std::path::Path;

use super::consume::qos_options;
use super::declare::queue_options;
use super::subscribe;
use crate::JobError;
use crate::broker::{BrokerBehaviour, BrokerVersion};
use crate::settings::{JobDefaults, JobSettings};
use crate::topology::Topology;

/// A message for the audit's jobs.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Audit {}

/// Every queue-shaping option of a classic job: priorities, slots, a rate.
#[crate::job(
    crate = "crate",
    exchange = "audit.classic",
    routing_key = "all",
    kind = "topic",
    binding = "all.#",
    queue_type = "classic",
    priorities = 5,
    max_running = 2,
    rate = "10/s",
    retries = 3,
    backoff = "1s, 5s, 30s",
    timeout = "10s",
    concurrency = 4
)]
async fn audit_classic(_: Audit) -> Result<(), JobError> {
    Ok(())
}

/// A quorum job with a schedule, on a headers exchange.
#[crate::job(
    crate = "crate",
    exchange = "audit.quorum",
    routing_key = "",
    kind = "headers",
    headers(format = "pdf", match = "any"),
    schedule = "0 * * * * *",
    max_running = 1,
    rate = "5/m"
)]
async fn audit_quorum(_: Audit) -> Result<(), JobError> {
    Ok(())
}

/// A fanout job with the defaults.
#[crate::job(
    crate = "crate",
    exchange = "audit.fanout",
    routing_key = "",
    kind = "fanout"
)]
async fn audit_fanout(_: Audit) -> Result<(), JobError> {
    Ok(())
}

/// Every topology the framework declares, for each version of the matrix.
fn every_topology() -> Vec<(String, Topology)> {
    let jobs: Vec<JobSettings> = [&audit_classic::JOB, &audit_quorum::JOB, &audit_fanout::JOB]
        .into_iter()
        .map(|job| JobSettings::resolve(job, &JobDefaults::default()))
        .collect();
    let mut topologies = vec![
        ("all jobs".to_owned(), Topology::for_jobs(&jobs).unwrap()),
        ("delay cascade".to_owned(), crate::delay::cascade()),
    ];
    for settings in &jobs {
        let name = settings.job().name();
        let alone = Topology::for_jobs(std::slice::from_ref(settings)).unwrap();
        topologies.push((format!("{name} alone"), alone));
        topologies.push((
            format!("{name}'s producer"),
            Topology::for_producer(settings),
        ));
        topologies.push((
            format!("{name} paused"),
            crate::control::paused_topology(name),
        ));
    }
    let versions = [
        "3.10.0",
        "3.13.7",
        "4.0.0",
        "4.1.3",
        "4.2.0",
        "4.3.0",
        "unparsable",
    ];
    let mut adapted = Vec::new();
    for version in versions {
        let behaviour = BrokerBehaviour::for_version(BrokerVersion::parse(version));
        for (what, topology) in &topologies {
            adapted.push((
                format!("{what} on {version}"),
                behaviour.adapt(topology).into_owned(),
            ));
        }
    }
    adapted
}

#[test]
fn no_topology_declares_a_transient_queue_that_is_not_exclusive() {
    let topologies = every_topology();
    let queues: usize = topologies.iter().map(|(_, t)| t.queues.len()).sum();
    // Work, retry, error, slot, ticket, keeper, schedule, pause and cascade queues.
    assert!(queues > 200, "the walk covers {queues} queues");
    let kinds = [
        "slots.", "rate.", "paused.", "schedule", ".err", ".retry.", "delay.",
    ];
    for kind in kinds {
        assert!(
            topologies
                .iter()
                .flat_map(|(_, t)| &t.queues)
                .any(|queue| queue.name.contains(kind)),
            "no `{kind}` queue walked"
        );
    }
    for (what, topology) in &topologies {
        for queue in &topology.queues {
            for passive in [false, true] {
                let options = queue_options(passive);
                assert!(
                    options.durable && !options.auto_delete || options.exclusive,
                    "{what}: `{}` would be transient and shared",
                    queue.name
                );
            }
        }
    }
    let subscription = subscribe::queue_options();
    assert!(subscription.exclusive, "a subscription's queue is its own");
}

#[test]
fn qos_is_never_global() {
    assert!(!qos_options().global);
}

/// The source of every module of this crate.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn every_queue_declare_and_qos_in_the_crate_goes_through_the_audited_options() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut declares = 0;
    let mut qos = 0;
    for (path, text) in &files {
        if path.ends_with("audit.rs") {
            continue;
        }
        for (at, _) in text.match_indices(".queue_declare(") {
            declares += 1;
            let call = &text[at..text.len().min(at + 200)];
            assert!(
                call.contains("queue_options("),
                "{path}: a queue_declare without the audited options: {call}"
            );
        }
        for (at, _) in text.match_indices(".basic_qos(") {
            qos += 1;
            let call = &text[at..text.len().min(at + 120)];
            assert!(
                call.contains("qos_options()"),
                "{path}: a basic_qos without the audited options: {call}"
            );
        }
        assert!(
            !text.contains("QueueDeclareOptions {")
                || path.ends_with("declare.rs")
                || path.ends_with("subscribe.rs"),
            "{path} builds queue options of its own"
        );
    }
    assert!(
        declares >= 3 && qos >= 1,
        "found {declares} declares and {qos} qos calls"
    );
}
