use jobs_core::{JobError, job};

pub struct NotProst {
    pub text: String,
}

#[job(exchange = "ops", routing_key = "ping")]
async fn ping(_: NotProst) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
