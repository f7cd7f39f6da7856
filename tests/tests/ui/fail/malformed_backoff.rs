use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping", backoff = "exp(1s, 2, 5m)")]
async fn ping(_: Ping) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
