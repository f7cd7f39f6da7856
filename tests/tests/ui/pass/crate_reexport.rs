//! `jobs_core` reached through a re-export, as a crate that wraps it would offer it.

mod reexport {
    pub use jobs_core as jc;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[reexport::jc::job(exchange = "ops", routing_key = "ping", crate = "reexport::jc")]
async fn ping(_: Ping) -> Result<(), reexport::jc::JobError> {
    Ok(())
}

#[reexport::jc::job(exchange = "ops", routing_key = "pong", crate = "crate::reexport::jc")]
async fn pong(_: Ping, _: reexport::jc::JobContext) -> Result<(), reexport::jc::JobError> {
    Ok(())
}

fn main() {
    assert_eq!(ping::QUEUE, "ops.ping");
    assert_eq!(pong::QUEUE, "ops.pong");
}
