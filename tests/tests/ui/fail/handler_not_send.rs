use std::rc::Rc;

use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

async fn tick() {}

#[job(exchange = "ops", routing_key = "ping")]
async fn ping(ping: Ping) -> Result<(), JobError> {
    let text = Rc::new(ping.text);
    tick().await;
    drop(text);
    Ok(())
}

fn main() {}
