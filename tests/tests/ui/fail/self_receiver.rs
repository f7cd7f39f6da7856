use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

pub struct Pinger;

impl Pinger {
    #[job(exchange = "ops", routing_key = "ping")]
    async fn ping(&self, _: Ping) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
