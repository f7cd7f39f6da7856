//! The relays of the scenarios: processes of the fault worker (`outbox-relay`), killed at a
//! chosen moment of a pass, and relays in the test's own process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::Producer;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_faults::WorkerProcess;
use jobs_faults::scenario::{until, until_async};
use jobs_outbox::Relay;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Database, SETTLE};

/// The fault worker binary, built by cargo for the tests of this package: its `outbox-relay`
/// command is the relay process.
const WORKER: &str = env!("CARGO_BIN_EXE_jobs-fault-worker");

/// Starts `jobs-fault-worker outbox-relay`: the relay alone, in a process of its own,
/// publishing the jobs of `db`'s outbox to the node at `amqp_url`, its database sessions named
/// `application`. Not waited for: it connects to the broker, then to the database, then
/// listens ([`Database::listening`]).
pub(crate) fn start_relay(amqp_url: &str, db: &Database, application: &str) -> WorkerProcess {
    start_relay_at(amqp_url, &db.url_for(application))
}

/// Starts the relay process as [`start_relay`] does, on the database at `outbox_url`: a URL
/// of [`Database::url_for`], or one through a proxy.
pub(crate) fn start_relay_at(amqp_url: &str, outbox_url: &str) -> WorkerProcess {
    WorkerProcess::start(
        Path::new(WORKER),
        amqp_url,
        &["outbox-relay"],
        &[("JOBS_AMQP_URL", amqp_url), ("JOBS_OUTBOX_URL", outbox_url)],
    )
    .expect("the relay process starts")
}

/// Where in its pass a relay process is killed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Moment {
    /// Anywhere in a pass that locked rows: publishing them, or waiting for their confirms.
    InPass,
    /// With every confirm of its pass in, before it deletes the rows and commits: each of
    /// them is published again. Needs [`Database::install_hold`], and rows still to come.
    AfterConfirms,
}

/// Waits until a relay whose sessions are named `name` is in a pass that locked rows, or
/// until no such pass can come: the application `done` and the outbox empty.
pub(crate) async fn wait_in_pass(db: &Database, name: &str, done: &dyn Fn() -> bool) {
    until_async(&format!("{name} in a pass"), SETTLE, || async move {
        db.in_pass(name).await || (done() && db.outbox_rows().await == 0)
    })
    .await;
}

/// Kills `relay`, whose sessions are named `name`, with SIGKILL at `moment` of a pass, and
/// waits for it to exit. `done` tells whether the application has finished: a relay that
/// will see no more rows is killed [`InPass`](Moment::InPass) as it idles.
pub(crate) async fn kill_in_pass(
    relay: &mut WorkerProcess,
    name: &str,
    moment: Moment,
    db: &Database,
    done: &dyn Fn() -> bool,
) {
    let hold = match moment {
        Moment::InPass => {
            wait_in_pass(db, name, done).await;
            None
        }
        Moment::AfterConfirms => {
            let hold = db.hold_deletes().await;
            until_async(
                &format!("{name} held after its confirms"),
                SETTLE,
                || async move { db.held(name).await },
            )
            .await;
            Some(hold)
        }
    };
    relay.signal("KILL").expect("kill -KILL");
    let status = relay
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!status.success(), "a killed relay: {status}");
    // The killed relay's session, still waiting on the hold, then finds its client gone and
    // rolls back: the rows stay.
    if let Some(hold) = hold {
        hold.release().await;
    }
    assert_used_the_database(relay);
}

/// Stops a relay process with SIGTERM: it exits 0 at once, having panicked nowhere, and
/// never failed to use the database.
pub(crate) fn terminate(relay: &mut WorkerProcess) {
    stop(relay);
    assert_used_the_database(relay);
}

/// Stops a relay process with SIGTERM: it exits 0 at once, having panicked nowhere. For a
/// relay whose database a fault did touch; [`terminate`] otherwise.
pub(crate) fn stop(relay: &mut WorkerProcess) {
    relay.signal("TERM").expect("kill -TERM");
    let status = relay
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit {status}:\n{}", relay.output());
    assert!(!relay.output().contains("panicked"), "{}", relay.output());
}

/// Waits, bounded, until the relay process's own `/metrics` say its database answers and
/// nothing waits in the outbox.
pub(crate) async fn reports_an_empty_outbox(relay: &WorkerProcess, scenario: &str) {
    until(
        &format!("{scenario}: the relay's /metrics say its database answers, nothing waits"),
        Duration::from_secs(60),
        || {
            relay.get("/metrics").is_some_and(|(_, body)| {
                body.contains("\njobs_outbox_up 1\n")
                    && body.contains("\njobs_outbox_oldest_seconds 0\n")
            })
        },
    )
    .await;
}

/// Asserts that `relay` never failed to use the database, which no fault here touches: a
/// relay starting beside a busy application must neither wait on it nor deadlock with it
/// (as `migrate` once did, the relay then waiting seconds before it tried again).
fn assert_used_the_database(relay: &WorkerProcess) {
    let output = relay.output();
    assert!(
        !output.contains("cannot use the database"),
        "the relay could not use the database:\n{output}"
    );
}

/// A relay running in the test's process, with connections of its own to the node and to the
/// database, as a relay process has.
#[derive(Debug)]
pub(crate) struct InProcessRelay {
    /// The relay, for its count of rows published.
    relay: Relay,
    /// Stops it.
    stop: oneshot::Sender<()>,
    /// Its `run`.
    task: JoinHandle<jobs_outbox::Result<()>>,
}

impl InProcessRelay {
    /// Starts a relay of `db`'s outbox publishing to the node at `amqp_url`, its database
    /// sessions named `application`.
    pub(crate) async fn start(amqp_url: &str, db: &Database, application: &str) -> Self {
        let transport = AmqpTransport::builder(amqp_url)
            .connection_name(format!(
                "jobs-faults-outbox-{application}-{}",
                std::process::id()
            ))
            .connect()
            .await
            .expect("the relay's transport connects to the private node");
        // Two connections, as the worker gives its relay: a pass's and the listener's.
        let relay = Relay::new(
            db.relay_pool(application, 2).await,
            Producer::new(Arc::new(transport)),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let relay = relay.clone();
            async move {
                relay
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        Self { relay, stop, task }
    }

    /// Stops the relay, and returns how many rows it published (and deleted).
    pub(crate) async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("the relay does not panic")
            .expect("the relay stops cleanly");
        self.relay.published()
    }
}
