use jobs_core::job;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping")]
async fn ping(_: Ping) -> u32 {
    1
}

fn main() {}
