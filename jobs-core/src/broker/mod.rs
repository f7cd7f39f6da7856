//! What the framework does per RabbitMQ version, read from the connection's server properties.
//!
//! The AMQP transport reads the `version` the broker sends in `connection.start` into a
//! [`BrokerVersion`]; [`BrokerBehaviour::for_version`] turns it into decisions, a pure
//! function tested over a matrix of versions. A version that is missing or does not parse is
//! logged and taken as RabbitMQ 3, whose behaviour is the one the framework always had.
//!
//! | version | error queues (and other quorum queues that dead-letter nowhere) | a delivery given back as failed |
//! | --- | --- | --- |
//! | 3.x, unknown | declared as before: no `x-delivery-limit` | `basic.nack` with requeue (counted) |
//! | 4.0 – 4.2 | `x-delivery-limit = -1`: RabbitMQ 4's default limit of 20 would drop their messages | `basic.nack` with requeue (counted) |
//! | 4.3 and later | `x-delivery-limit = -1` | `basic.reject` with requeue: 4.3 no longer counts a nack |
//!
//! On every version, a job whose timeout is at or above the broker's consumer timeout
//! ([`DEFAULT_CONSUMER_TIMEOUT`] unless configured) is refused at startup, and the framework
//! declares no transient queue that is not exclusive and never asks for a global `basic.qos`, which
//! RabbitMQ 4 refuses.

mod behaviour;
mod consumer_timeout;
mod version;

pub use behaviour::{BrokerBehaviour, FailedReturn};
pub(crate) use behaviour::{DEFAULT_LIMIT_FROM, NACK_UNCOUNTED_FROM};
pub use consumer_timeout::DEFAULT_CONSUMER_TIMEOUT;
pub(crate) use consumer_timeout::check as check_consumer_timeout;
pub use version::BrokerVersion;
