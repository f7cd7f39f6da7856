use jobs_core::job;

#[job(exchange = "ops", routing_key = "ping")]
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

fn main() {}
