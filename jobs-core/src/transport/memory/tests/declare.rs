//! Declaration is idempotent, reports conflicts by name, and passive mode creates nothing.

use super::*;
use crate::error::Error;

fn passive(broker: &MemoryTransport, topology: &Topology) -> crate::Result<()> {
    broker
        .declare(topology, Declare::Passive)
        .now_or_never()
        .expect("declare is immediate")
}

fn retry_queue() -> QueueSpec {
    queue(
        "q.retry.1",
        &[
            ("x-message-ttl", 1000i64.into()),
            ("x-dead-letter-exchange", "".into()),
        ],
    )
}

fn full() -> Topology {
    Topology {
        exchanges: vec![exchange("ex", ExchangeKind::Direct)],
        queues: vec![queue("q", &[]), retry_queue()],
        bindings: vec![binding("q", "ex", "k")],
        ..Topology::default()
    }
}

#[tokio::test]
async fn declaring_twice_changes_nothing() {
    let broker = broker_with(&full());
    declare(&broker, &full()).unwrap();
    publish(&broker, publish_to("ex", "k", message("m"))).unwrap();
    assert_eq!(broker.queue_len("q"), Some(1), "the binding exists once");
    assert_eq!(broker.queue_len("q.retry.1"), Some(0));
}

#[tokio::test]
async fn an_exchange_of_another_type_is_a_conflict_naming_both() {
    let broker = broker_with(&full());
    let topic = Topology {
        exchanges: vec![exchange("ex", ExchangeKind::Topic)],
        ..Topology::default()
    };
    let err = declare(&broker, &topic).unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m == "exchange `ex` exists as `direct`, declared as `topic`"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_queue_with_other_arguments_is_a_mismatch_naming_both_values() {
    let broker = broker_with(&full());
    let other_ttl = Topology {
        queues: vec![queue(
            "q.retry.1",
            &[
                ("x-message-ttl", 5000i64.into()),
                ("x-dead-letter-exchange", "".into()),
            ],
        )],
        ..Topology::default()
    };
    let err = declare(&broker, &other_ttl).unwrap_err();
    assert_eq!(
        err.to_string(),
        "queue `q.retry.1` exists with x-message-ttl = 1000, but the job declares x-message-ttl = 5000"
    );

    let added = Topology {
        queues: vec![queue("q", &[("x-queue-type", "quorum".into())])],
        ..Topology::default()
    };
    let err = declare(&broker, &added).unwrap_err();
    assert!(
        matches!(&err, Error::QueueMismatch { queue, argument, existing, declared }
            if queue == "q" && argument == "x-queue-type" && existing == "none" && declared == "\"quorum\""),
        "{err:?}"
    );

    let missing = Topology {
        queues: vec![queue("q.retry.1", &[("x-message-ttl", 1000i64.into())])],
        ..Topology::default()
    };
    let err = declare(&broker, &missing).unwrap_err();
    assert!(
        matches!(&err, Error::QueueMismatch { argument, existing, declared, .. }
            if argument == "x-dead-letter-exchange" && existing == "\"\"" && declared == "none"),
        "{err:?}"
    );
}

#[tokio::test]
async fn passive_declaration_creates_nothing_and_reports_what_is_missing() {
    let broker = MemoryTransport::new();
    let err = passive(&broker, &full()).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name } if name == "ex"),
        "{err:?}"
    );
    let err = passive(
        &broker,
        &Topology {
            queues: vec![queue("q", &[])],
            ..Topology::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "queue", name } if name == "q"),
        "{err:?}"
    );
    assert_eq!(broker.queue_len("q"), None, "nothing was created");

    declare(&broker, &full()).unwrap();
    passive(&broker, &full()).unwrap();
    let mut other = full();
    other.queues[1] = queue("q.retry.1", &[]);
    let err = passive(&broker, &other).unwrap_err();
    assert!(matches!(err, Error::QueueMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn a_binding_needs_its_queue_and_exchange() {
    let broker = MemoryTransport::new();
    let mut topology = full();
    topology.bindings = vec![binding("q", "missing", "k")];
    let err = declare(&broker, &topology).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name } if name == "missing"),
        "{err:?}"
    );
    topology.bindings = vec![binding("missing", "ex", "k")];
    let err = declare(&broker, &topology).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "queue", name } if name == "missing"),
        "{err:?}"
    );
}

#[tokio::test]
async fn arguments_the_broker_does_not_emulate_are_refused() {
    let broker = MemoryTransport::new();
    let capped = Topology {
        queues: vec![queue("q", &[("x-max-length-bytes", 10i64.into())])],
        ..Topology::default()
    };
    let err = declare(&broker, &capped).unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m.contains("x-max-length-bytes")),
        "{err:?}"
    );
    let dlx_overflow = Topology {
        queues: vec![queue(
            "q",
            &[
                ("x-max-length", 10i64.into()),
                ("x-overflow", "reject-publish-dlx".into()),
            ],
        )],
        ..Topology::default()
    };
    let err = declare(&broker, &dlx_overflow).unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m.contains("reject-publish-dlx")),
        "{err:?}"
    );
    for invalid in [
        ("x-max-length", HeaderValue::Int(-1)),
        ("x-max-length", "10".into()),
        ("x-overflow", "drop-tail".into()),
        ("x-single-active-consumer", "true".into()),
    ] {
        let topology = Topology {
            queues: vec![queue("q", std::slice::from_ref(&invalid))],
            ..Topology::default()
        };
        let err = declare(&broker, &topology).unwrap_err();
        assert!(
            matches!(&err, Error::Topology(m) if m.contains("invalid") && m.contains(invalid.0)),
            "{invalid:?}: {err:?}"
        );
    }
    let bad_ttl = Topology {
        queues: vec![queue("q", &[("x-message-ttl", (-1i64).into())])],
        ..Topology::default()
    };
    assert!(matches!(
        declare(&broker, &bad_ttl),
        Err(Error::Topology(_))
    ));
}

#[tokio::test]
async fn consuming_from_a_missing_queue_is_not_found() {
    let broker = MemoryTransport::new();
    let err = broker
        .consume("nope", 1)
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "queue", name } if name == "nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn verify_creates_nothing_and_reports_what_is_missing_or_differs() {
    let verify = |broker: &MemoryTransport, topology: &Topology| {
        broker
            .declare(topology, Declare::Verify)
            .now_or_never()
            .expect("declare is immediate")
    };
    let broker = MemoryTransport::new();
    let err = verify(&broker, &full()).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name } if name == "ex"),
        "{err:?}"
    );
    assert_eq!(broker.queue_len("q"), None, "nothing was created");

    declare(&broker, &full()).unwrap();
    verify(&broker, &full()).unwrap();
    let mut other = full();
    other.queues[1] = queue(
        "q.retry.1",
        &[
            ("x-message-ttl", 2000i64.into()),
            ("x-dead-letter-exchange", "".into()),
        ],
    );
    let err = verify(&broker, &other).unwrap_err();
    assert_eq!(
        err.to_string(),
        "queue `q.retry.1` exists with x-message-ttl = 1000, but the job declares x-message-ttl = 2000"
    );
}

#[tokio::test]
async fn message_count_counts_ready_messages_and_purge_drops_them() {
    let broker = queues(&["q"]);
    for id in ["a", "b", "c"] {
        send(&broker, "q", id);
    }
    let count = |broker: &MemoryTransport| broker.message_count("q").now_or_never().unwrap();
    assert_eq!(count(&broker).unwrap(), 3);
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ids(&ready(&mut consumer)), ["a"]);
    assert_eq!(count(&broker).unwrap(), 2, "unacked is not ready");

    assert_eq!(broker.purge("q").now_or_never().unwrap().unwrap(), 2);
    assert_eq!(count(&broker).unwrap(), 0);
    drop(consumer);
    assert_eq!(
        queued(&broker, "q"),
        ["a"],
        "the unacked message survives a purge"
    );

    let err = broker.message_count("missing").now_or_never().unwrap();
    assert!(
        matches!(err, Err(Error::NotFound { what: "queue", .. })),
        "{err:?}"
    );
    let err = broker.purge("missing").now_or_never().unwrap();
    assert!(
        matches!(err, Err(Error::NotFound { what: "queue", .. })),
        "{err:?}"
    );
}
