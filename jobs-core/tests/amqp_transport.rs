//! The AMQP transport against a RabbitMQ broker.
