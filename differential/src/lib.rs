//! Differential testing of the in-memory broker against RabbitMQ: random scenarios, each run on
//! both, their observable outcomes compared after the documented normalisations.
//!
//! * [`transport`]: scenarios of broker operations at the `Transport` level.
//! * [`jobs`]: scenarios of jobs through the engine (enqueues, handler outcomes, delays,
//!   worker restarts).

pub mod jobs;
pub mod transport;
