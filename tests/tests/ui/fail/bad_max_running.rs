use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping", max_running = 0)]
async fn ping(_: Ping) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "ops", routing_key = "pong", max_running = 1000)]
async fn pong(_: Ping) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
