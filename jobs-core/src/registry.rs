//! The jobs linked into a binary, collected at link time.

use crate::job::Job;

/// One job's entry in the link-time registry; `#[job]` submits one per job.
#[derive(Debug)]
pub struct Registration(&'static Job);

impl Registration {
    /// The entry for `job`.
    #[must_use]
    pub const fn new(job: &'static Job) -> Self {
        Self(job)
    }
}

inventory::collect!(Registration);

/// Every job linked into this binary, by name.
#[must_use]
pub fn registered() -> Vec<&'static Job> {
    let mut jobs: Vec<&'static Job> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    jobs.sort_by_key(|job| job.name());
    jobs
}

/// The registered job named `name`.
#[must_use]
pub fn find(name: &str) -> Option<&'static Job> {
    inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .find(|job| job.name() == name)
}
