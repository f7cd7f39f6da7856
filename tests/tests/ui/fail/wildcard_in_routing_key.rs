use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", kind = "topic", routing_key = "ops.#")]
async fn ping(_: Ping) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
