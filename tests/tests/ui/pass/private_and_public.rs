//! A private job, a public one, a `pub(crate)` one in a module, and one without a context.

use jobs_core::{JobContext, JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping")]
async fn private_ping(ping: Ping, ctx: JobContext) -> Result<(), JobError> {
    let _ = (ping, ctx);
    Ok(())
}

#[job(exchange = "ops", routing_key = "pong")]
pub async fn public_ping(ping: Ping) -> Result<(), JobError> {
    let _ = ping;
    Ok(())
}

mod messages {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Deep {
        #[prost(int32, tag = "1")]
        pub depth: i32,
    }
}

#[job(exchange = "ops", routing_key = "deep")]
async fn deep(deep: messages::Deep, _: jobs_core::JobContext) -> Result<(), JobError> {
    let _ = deep.depth;
    Ok(())
}

#[job(exchange = "ops", routing_key = "absolute")]
async fn absolute(_: crate::messages::Deep) -> Result<(), JobError> {
    Ok(())
}

mod nested {
    use super::Ping;

    #[jobs_core::job(exchange = "ops", routing_key = "nested")]
    pub(crate) async fn nested_ping(
        _: Ping,
        _: jobs_core::JobContext,
    ) -> Result<(), std::io::Error> {
        Ok(())
    }

    #[jobs_core::job(exchange = "ops", routing_key = "super")]
    pub(super) async fn super_ping(_: Ping) -> Result<(), jobs_core::JobError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(private_ping::QUEUE, "ops.private_ping");
    assert_eq!(deep::JOB.message_type(), "messages::Deep");
    assert_eq!(absolute::JOB.message_type(), "crate::messages::Deep");
    assert_eq!(public_ping::JOB.routing_key(), "pong");
    assert_eq!(nested::nested_ping::ERROR_QUEUE, "ops.nested_ping.err");
    assert_eq!(nested::super_ping::JOB.name(), "super_ping");
    let _ = public_ping::with(Ping { text: "hi".into() });
    // The fns stay ordinary async fns.
    let _future = public_ping(Ping::default());
}
