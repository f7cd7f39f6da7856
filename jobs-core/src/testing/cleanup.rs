//! Leaving a shared broker as a test found it.

use crate::error::Result;
use crate::job::Job;
use crate::settings::{JobDefaults, JobSettings};
use crate::topology::Topology;
use crate::transport::Transport;
use crate::transport::amqp::AmqpTransport;

/// Deletes the work, retry and error queues of `jobs` on the broker at `url` (not the delay
/// cascade, which every job shares), with their messages: for a test that should not leave
/// its queues behind on a shared broker.
///
/// A broker's file-descriptor budget bounds how many queues it can hold (each quorum queue
/// reserves a few descriptors: about 330 queues under the common limit of 1,024), so a test
/// suite that left every job's queues on one broker would in the end stop it from accepting
/// connections.
///
/// # Errors
///
/// When the broker cannot be reached, a job's topology is invalid, or a deletion fails.
pub async fn delete_job_queues(url: &str, jobs: &[&'static Job]) -> Result<()> {
    let transport = AmqpTransport::builder(url)
        .connection_name("jobs tests cleanup")
        .connect()
        .await?;
    let outcome = async {
        for job in jobs {
            let settings = JobSettings::resolve(job, &JobDefaults::default());
            let topology = Topology::for_jobs([&settings])?;
            for queue in topology.job_queues() {
                transport.delete_queue(&queue.name).await?;
            }
        }
        Ok(())
    }
    .await;
    transport.close().await;
    outcome
}
