//! A call whose worker loses its connection between the handler and the ack, on RabbitMQ: the
//! reply written on the request's dead channel never reaches the caller, the broker gives the
//! request back, and the caller gets the reply of the job's second run, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::delete_job_queues;
use jobs_core::transport::Transport as _;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, MessageId, Producer, State, job};
use jobs_tests::broker::close_connections_named;
use tokio::sync::{Notify, watch};

/// A question, and the run that answered it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Asked {
    /// Which handler run answered: 1 for the first.
    #[prost(uint32, tag = "1")]
    pub run: u32,
}

/// Holds the job's first run until the test has cut the worker's connections.
#[derive(Debug)]
struct Gate {
    runs: AtomicU32,
    /// Runs started, for the test to wait on.
    started: watch::Sender<u32>,
    release: Notify,
}

#[job(
    exchange = "tests.call_faults",
    routing_key = "held",
    queue = "tests.call_faults.held",
    retries = 0
)]
async fn held_answer(_: Asked, gate: State<Arc<Gate>>) -> Result<Asked, JobError> {
    let run = gate.runs.fetch_add(1, Ordering::SeqCst) + 1;
    gate.started.send_replace(run);
    if run == 1 {
        gate.release.notified().await;
    }
    Ok(Asked { run })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_worker_loses_its_channel_before_the_ack_is_answered_by_the_rerun() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    delete_job_queues(&url, &[&held_answer::JOB])
        .await
        .expect("the job's queues deleted");
    let name = format!("jobs-test-call-faults-{}", MessageId::generate());
    let worker_transport = AmqpTransport::builder(url.as_str())
        .connection_name(name)
        .connect()
        .await
        .expect("the worker connected");
    let worker_connections = worker_transport.connection_names().map(str::to_owned);
    let gate = Arc::new(Gate {
        runs: AtomicU32::new(0),
        started: watch::channel(0).0,
        release: Notify::new(),
    });
    let engine = Engine::builder(Arc::new(worker_transport))
        .job(&held_answer::JOB)
        .state(Arc::clone(&gate))
        .start()
        .await
        .expect("the worker started");
    let caller_transport = Arc::new(AmqpTransport::connect(&url).await.expect("connected"));
    let producer = Producer::new(caller_transport.clone());

    let call = tokio::spawn(async move {
        held_answer::call(&producer, Asked { run: 0 })
            .timeout(Duration::from_secs(60))
            .await
    });
    let mut started = gate.started.subscribe();
    tokio::time::timeout(Duration::from_secs(30), started.wait_for(|runs| *runs >= 1))
        .await
        .expect("the first run started in time")
        .expect("the gate lives");

    // The handler is running: cut the worker's connections under it, then let it finish. Its
    // reply goes to a dead channel and its ack never arrives.
    let closed: usize = worker_connections
        .iter()
        .map(|name| close_connections_named(name))
        .sum();
    assert!(closed >= 1, "the worker's connections were open");
    gate.release.notify_one();

    let reply = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call ended in time")
        .expect("the call task did not panic")
        .expect("the call got a reply");
    assert_eq!(reply.run, 2, "the reply comes from the run after the cut");
    assert_eq!(gate.runs.load(Ordering::SeqCst), 2, "the job ran twice");

    engine.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        caller_transport
            .message_count(held_answer::QUEUE)
            .await
            .expect("counted"),
        0,
        "nothing left to run"
    );
    caller_transport.close().await;
    delete_job_queues(&url, &[&held_answer::JOB])
        .await
        .expect("the job's queues deleted");
}
