//! The fault battery of DESIGN §5's delivery promise: jobs run against real RabbitMQ nodes while
//! faults are injected, and a [`Ledger`] counts every job so that a lost one cannot hide.

pub mod ledger;
pub mod proxy;
pub mod worker;

pub use ledger::{Ledger, Report};
pub use worker::WorkerProcess;
pub mod cluster;
pub mod node;

pub use cluster::Cluster;
pub use node::{NodeOptions, PrivateNode, skip_without_rabbitmq};
pub mod failover;
