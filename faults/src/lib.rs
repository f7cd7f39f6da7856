//! The fault battery of the delivery promise (at least once: nothing confirmed is lost): jobs run against real RabbitMQ nodes while
//! faults are injected, and a [`Ledger`] counts every job so that a lost one cannot hide.

pub mod cluster;
pub mod ledger;
pub mod node;
pub mod proxy;
pub mod scenario;
pub mod worker;

pub use cluster::Cluster;
pub use ledger::{Ledger, Report};
pub use node::{NodeOptions, PrivateNode, skip_without_rabbitmq};
pub use worker::WorkerProcess;
