//! Shared helpers for the integration tests: the outcome scenarios every transport must pass,
//! and the broker of the `amqp_*` tests.

pub mod batches;
pub mod broker;
pub mod calls;
pub mod delays;
pub mod kill_switch;
pub mod limits;
pub mod pauses;
pub mod priorities;
pub mod rates;
pub mod routing;
pub mod scenarios;
pub mod schedules;
