//! Faults the `amqp_*` tests inflict on their own connections, and the deletion of their queues.

/// Closes, with `rabbitmqctl`, the broker-side connections whose client-provided name is
/// `name`; only ours, since the names are unique per test. Returns how many it closed.
///
/// # Panics
///
/// When `rabbitmqctl` cannot list or close connections: a test that needs it cannot go on.
#[must_use]
pub fn close_connections_named(name: &str) -> usize {
    let listed = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        listed.status.success(),
        "rabbitmqctl list_connections failed"
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    let exact = format!("{{\"connection_name\",\"{name}\"}}");
    let pids: Vec<&str> = listed
        .lines()
        .filter(|line| line.contains(&exact))
        .filter_map(|line| line.split_once('\t'))
        .map(|(pid, _)| pid.trim())
        .collect();
    for pid in &pids {
        let closed = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "closed by a jobs test"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(
            closed.success(),
            "rabbitmqctl close_connection {pid} failed"
        );
    }
    pids.len()
}

/// Deletes, with `rabbitmqctl`, the queues named `names` that exist: a test's own queues, to
/// start from a broker that never had them.
///
/// # Panics
///
/// When `rabbitmqctl` cannot run.
pub fn delete_queues(names: &[&str]) {
    for name in names {
        // A queue that does not exist fails the command: nothing to delete.
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_queue", name])
            .output()
            .expect("rabbitmqctl runs");
    }
}

/// Deletes the work, retry, error and slot queues of `jobs` on the broker at `url`, when a
/// test is done with them: a run should leave the shared broker as it found it, since idle
/// quorum queues cost the broker CPU and file descriptors. Best effort: a failed deletion is
/// reported on stderr and fails no test. Call it once whatever used the queues has stopped,
/// and only for jobs no other test of the binary still serves.
pub async fn delete_job_queues(url: &str, jobs: &[&'static jobs_core::Job]) {
    if let Err(err) = jobs_core::testing::delete_job_queues(url, jobs).await {
        eprintln!("the test's queues stay on the broker: {err}");
    }
}
