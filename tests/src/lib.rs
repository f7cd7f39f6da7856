//! Shared helpers for the integration tests: the outcome scenarios every transport must pass.

pub mod scenarios;
