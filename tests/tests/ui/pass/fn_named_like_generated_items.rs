//! Jobs named like the items generated beside them still call the right fn.
#![deny(warnings, unused_qualifications)]

use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "with")]
async fn with(_: Ping) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "ops", routing_key = "enqueue")]
async fn enqueue(_: Ping, _: jobs_core::JobContext) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "ops", routing_key = "type")]
async fn r#type(_: Ping) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    assert_eq!(with::QUEUE, "ops.with");
    assert_eq!(enqueue::QUEUE, "ops.enqueue");
    assert_eq!(r#type::JOB.name(), "type");
    let _ = with::with(Ping::default());
    let _ = enqueue::with(Ping::default());
}
