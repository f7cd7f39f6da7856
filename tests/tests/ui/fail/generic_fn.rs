use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping")]
async fn ping<M: prost::Message>(_: M) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
