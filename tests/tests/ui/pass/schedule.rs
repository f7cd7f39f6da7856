//! Periodic jobs: a cron expression in a time zone, or a fixed period.

use std::time::Duration;

use jobs_core::schedule::{Missed, Schedule, ScheduleSpec};
use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Tick {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "cleanup", schedule = "0 */5 * * * *")]
async fn cleanup(_: Tick) -> Result<(), JobError> {
    Ok(())
}

#[job(
    exchange = "ops",
    routing_key = "report",
    schedule = "0 0 9 * * Mon-Fri",
    timezone = "Europe/Paris",
    missed = "skip"
)]
async fn report(_: Tick) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "ops", routing_key = "heartbeat", every = "1m30s")]
async fn heartbeat(_: Tick) -> Result<(), JobError> {
    Ok(())
}

#[job(
    exchange = "ops",
    routing_key = "sweep",
    every = "2000ms",
    missed = "fire-once",
    crate = "::jobs_core"
)]
async fn sweep(_: Tick) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "ops", routing_key = "once-a-day", schedule = "@daily")]
async fn daily(_: Tick) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "ops", routing_key = "on-demand")]
async fn on_demand(_: Tick) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    let spec = |schedule: Option<ScheduleSpec>| {
        let spec = schedule.expect("a periodic job");
        // What compiles is what runs.
        Schedule::parse(spec).expect("a schedule the runtime reads");
        spec
    };
    assert_eq!(
        spec(cleanup::JOB.options().schedule),
        ScheduleSpec {
            cron: Some("0 */5 * * * *"),
            every: None,
            timezone: "UTC",
            missed: Missed::FireOnce,
        }
    );
    assert_eq!(
        spec(report::JOB.options().schedule),
        ScheduleSpec {
            cron: Some("0 0 9 * * Mon-Fri"),
            every: None,
            timezone: "Europe/Paris",
            missed: Missed::Skip,
        }
    );
    assert_eq!(
        spec(heartbeat::JOB.options().schedule),
        ScheduleSpec {
            cron: None,
            every: Some(Duration::from_secs(90)),
            timezone: "UTC",
            missed: Missed::FireOnce,
        }
    );
    assert_eq!(
        spec(sweep::JOB.options().schedule).every,
        Some(Duration::from_secs(2))
    );
    assert_eq!(spec(daily::JOB.options().schedule).cron, Some("@daily"));
    assert_eq!(on_demand::JOB.options().schedule, None);
}
