use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Tick {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(
    exchange = "ops",
    routing_key = "tick",
    schedule = "0 */5 * * * *",
    every = "5m"
)]
async fn tick(_: Tick) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
