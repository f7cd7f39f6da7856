use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping")]
/// Not a protobuf message, so no reply.
async fn ping(_: Ping) -> Result<std::time::Instant, JobError> {
    Ok(std::time::Instant::now())
}

fn main() {}
