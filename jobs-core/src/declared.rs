//! What a producer declares before a job's first enqueue: the job's exchange, work queue,
//! error queue and bindings, once per job, and the delay cascade once, so that a web application started before any worker
//! enqueues into a queue that keeps its jobs, as Celery's producers do, instead of failing with
//! a missing exchange.
//!
//! Retry queues are left to the worker: their delays come from the worker's defaults, which a
//! producer does not know. The work and error queues are declared with the defaults the
//! producer has (the engine's, or [`JobDefaults::default`]); a queue that already exists with
//! other arguments, declared by a worker with other defaults, is taken as it is.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::error::{Error, Result};
use crate::job::Job;
use crate::settings::{JobDefaults, JobSettings};
use crate::topology::Topology;
use crate::transport::{Declare, Transport};

/// The jobs a producer has declared, and the defaults it declares the rest with.
#[derive(Debug)]
pub(crate) struct Declared {
    defaults: JobDefaults,
    /// By address: a `Job` is a `static`, one per `#[job]`.
    done: RwLock<HashSet<usize>>,
    /// The address of the job found declared last, 0 for none. Most producers enqueue one job
    /// over and over: a plain load then answers, where the lock's read would write its
    /// counter's cache line on every enqueue, from every thread enqueueing.
    last: AtomicUsize,
    /// Held while a job is declared, so that concurrent first enqueues declare it once; it
    /// holds whether the delay cascade was declared.
    declaring: tokio::sync::Mutex<bool>,
}

impl Declared {
    /// Nothing declared yet; jobs are declared with `defaults`.
    pub(crate) fn new(defaults: JobDefaults) -> Self {
        Self {
            defaults,
            done: RwLock::new(HashSet::new()),
            last: AtomicUsize::new(0),
            declaring: tokio::sync::Mutex::new(false),
        }
    }

    /// Marks `jobs`, and the delay cascade, as declared: an engine declared them at start.
    pub(crate) fn already(self, jobs: impl IntoIterator<Item = &'static Job>) -> Self {
        self.done
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(jobs.into_iter().map(key));
        Self {
            declaring: tokio::sync::Mutex::new(true),
            ..self
        }
    }

    /// Declares `job`'s exchange, work queue, error queue and binding on `transport`, unless
    /// this producer already did.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached. A declare the broker refuses otherwise (a queue
    /// with other arguments, no permission to configure) is not retried: the publish goes
    /// ahead, and its `mandatory` flag reports a job no queue takes.
    pub(crate) async fn ensure(&self, job: &'static Job, transport: &dyn Transport) -> Result<()> {
        if self.is_done(job) {
            return Ok(());
        }
        let mut cascade_declared = self.declaring.lock().await;
        if self.is_done(job) {
            return Ok(());
        }
        let settings = JobSettings::resolve(job, &self.defaults);
        // The cascade first: a job queue that exists with other arguments ends the declare,
        // and must not leave the cascade undeclared.
        let topology = if *cascade_declared {
            Topology::for_producer(&settings)
        } else {
            let mut topology = crate::delay::cascade();
            topology.merge(Topology::for_producer(&settings));
            topology
        };
        match transport.declare(&topology, Declare::Create).await {
            Ok(()) => *cascade_declared = true,
            Err(err @ (Error::Connection(_) | Error::Timeout { .. })) => return Err(err),
            Err(err) => {
                tracing::debug!(job = job.name(), error = %err, "not declared by the producer; publishing anyway");
            }
        }
        self.done
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(job));
        Ok(())
    }

    /// Whether `job`'s topology is declared.
    pub(crate) fn is_done(&self, job: &'static Job) -> bool {
        let key = key(job);
        // Acquire: whoever stored it had finished the declare, and this enqueue comes after.
        if self.last.load(Ordering::Acquire) == key {
            return true;
        }
        let done = self
            .done
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if done {
            self.last.store(key, Ordering::Release);
        }
        done
    }
}

fn key(job: &'static Job) -> usize {
    std::ptr::from_ref(job) as usize
}
