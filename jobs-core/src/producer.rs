//! Publishing jobs: typed, protobuf-encoded, confirmed by the broker.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
#[cfg(feature = "amqp")]
use futures_util::future::Either;

use crate::call::Calls;
use crate::declared::Declared;
use crate::envelope::{CONTENT_TYPE, Envelope, HeaderValue, Headers, Properties, header};
use crate::error::{Error, Result};
use crate::job::{Job, JobMessage};
use crate::message_id::{self, MessageId};
use crate::otel::{self, PublishSpan};
use crate::settings::JobDefaults;
use crate::trace::TraceContext;
use crate::transport::{Publish, Transport};

/// Publishes jobs over a transport. Cheap to clone; clones share the transport.
///
/// Each `#[job]` module has typed functions that use it: `my_job::enqueue(&producer, msg)`
/// and `my_job::with(msg)…enqueue(&producer)`. Before a job's first enqueue, a producer
/// declares the job's exchange, work queue, error queue and binding (once; see
/// [`ProducerOptions::declare`]), so jobs enqueued before any worker started wait in their queue.
///
/// An application that only enqueues (a web server, say) connects one producer at start and
/// shares clones of it with every request handler; it reconnects by itself after the broker
/// connection drops:
///
/// ```
/// # use std::sync::Arc;
/// # use jobs_core::transport::memory::MemoryTransport;
/// # use jobs_core::{job, JobError, Producer};
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct TransferFile { #[prost(string, tag = "1")] pub path: String }
/// # #[job(exchange = "uploads", routing_key = "oss")]
/// # async fn transfer_to_oss(_: TransferFile) -> Result<(), JobError> { Ok(()) }
/// // A request handler, given a clone of the producer (in axum, `State(producer): State<Producer>`).
/// async fn upload(producer: Producer, path: String) -> jobs_core::Result<String> {
///     let id = transfer_to_oss::enqueue(&producer, TransferFile { path }).await?;
///     Ok(id.to_string())
/// }
///
/// #[tokio::main]
/// async fn main() -> jobs_core::Result<()> {
///     // Once, at start: `Producer::connect(url)` on RabbitMQ (feature `amqp`).
///     let producer = Producer::new(Arc::new(MemoryTransport::new()));
///     upload(producer.clone(), "report.pdf".to_owned()).await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<dyn Transport>,
    options: ProducerOptions,
    /// `None` when [`ProducerOptions::declare`] is off.
    declared: Option<Declared>,
    /// The calls in flight, and their reply channel.
    calls: Calls,
}

/// Limits a [`Producer`] holds its publishes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerOptions {
    /// The largest encoded job accepted; larger ones are refused before publishing.
    /// Default 4 MiB.
    pub max_message_size: usize,
    /// How long to wait for the broker's confirm. Default 30 s.
    pub confirm_timeout: Duration,
    /// Whether a job's exchange, work queue, error queue and binding are declared before its
    /// first enqueue. Default `true`; turn it off where the topology is managed elsewhere (a
    /// deployment step running the worker's `topology declare`) or the producer's broker user
    /// may not configure. The producer declares queues with the default job options:
    /// options that shape queues (`queue_type`) belong on `#[job]`, where producer and worker
    /// both see them.
    pub declare: bool,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            confirm_timeout: Duration::from_secs(30),
            declare: true,
        }
    }
}

impl Producer {
    /// A producer over `transport` with the default options.
    #[must_use]
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self::with_options(transport, ProducerOptions::default())
    }

    /// A producer over `transport` with `options`.
    #[must_use]
    pub fn with_options(transport: Arc<dyn Transport>, options: ProducerOptions) -> Self {
        let declared = options
            .declare
            .then(|| Declared::new(JobDefaults::default()));
        Self {
            inner: Arc::new(Inner {
                transport,
                options,
                declared,
                calls: Calls::default(),
            }),
        }
    }

    /// A producer over RabbitMQ at `url` (`amqp://user:password@host:port/vhost`), with the
    /// default options: connect one when the application starts and share clones of it.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> jobs_core::Result<()> {
    /// let producer = jobs_core::Producer::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
    /// let for_a_request_handler = producer.clone(); // shares the connection
    /// # drop(for_a_request_handler);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached or refuses the login.
    #[cfg(feature = "amqp")]
    pub async fn connect(url: &str) -> Result<Self> {
        let transport = crate::transport::amqp::AmqpTransport::connect(url).await?;
        Ok(Self::new(Arc::new(transport)))
    }

    /// The engine's producer: it declares with the engine's `defaults`, and not the engine's
    /// own `jobs`, declared at start; with `declare` off, nothing.
    pub(crate) fn for_engine(
        transport: Arc<dyn Transport>,
        options: ProducerOptions,
        defaults: &JobDefaults,
        jobs: impl IntoIterator<Item = &'static Job>,
    ) -> Self {
        let declared = options
            .declare
            .then(|| Declared::new(defaults.clone()).already(jobs));
        Self {
            inner: Arc::new(Inner {
                transport,
                options,
                declared,
                calls: Calls::default(),
            }),
        }
    }

    /// Whether [`declare`](Self::declare) has nothing left to do for `job`.
    pub(crate) fn is_declared(&self, job: &'static Job) -> bool {
        self.inner
            .declared
            .as_ref()
            .is_none_or(|declared| declared.is_done(job))
    }

    /// Declares `job`'s exchange, work queue, error queue and binding, once per producer (and
    /// not at all with [`ProducerOptions::declare`] off). [`Enqueue::enqueue`] does this
    /// itself; a relay that publishes messages prepared earlier ([`Enqueue::prepare`]) calls it.
    ///
    /// # Errors
    ///
    /// When the broker refuses the topology, or the transport fails.
    pub async fn declare(&self, job: &'static Job) -> Result<()> {
        match &self.inner.declared {
            Some(declared) => declared.ensure(job, self.inner.transport.as_ref()).await,
            None => Ok(()),
        }
    }

    /// The calls in flight.
    pub(crate) fn calls(&self) -> &Calls {
        &self.inner.calls
    }

    /// The transport it publishes over.
    #[must_use]
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// Its options.
    #[must_use]
    pub fn options(&self) -> &ProducerOptions {
        &self.inner.options
    }

    /// Publishes a prepared message and waits for the broker's confirm. The future owns what
    /// it needs (it borrows neither the producer nor the message); await it for the outcome.
    /// On RabbitMQ nothing is sent before it is first polled; another transport may start the
    /// publish at this call, as the in-memory one does.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no confirm comes within the confirm timeout, and whatever the
    /// transport reports: unroutable, nacked, connection errors.
    pub fn publish(&self, publish: Publish) -> impl Future<Output = Result<()>> + Send + 'static {
        // A future returned, not an `async fn`'s: the enqueue that awaits it holds it in its
        // own state, with no wrapper around it to move it into first.
        #[cfg(feature = "amqp")]
        match self.amqp() {
            Some(amqp) => Either::Left(self.publish_in_place(amqp, publish)),
            None => Either::Right(self.publish_boxed(publish)),
        }
        #[cfg(not(feature = "amqp"))]
        self.publish_boxed(publish)
    }

    /// The producer's transport when it is RabbitMQ's, for
    /// [`publish_in_place`](Self::publish_in_place).
    #[cfg(feature = "amqp")]
    pub(crate) fn amqp(&self) -> Option<&crate::transport::amqp::AmqpTransport> {
        self.inner.transport.as_amqp()
    }

    /// [`publish`](Self::publish) on RabbitMQ: the publish's future (over 2 KiB, most of it
    /// lapin's) lives in the caller's rather than in a box of its own, one allocation less per
    /// publish, which one worker thread made and another freed once the confirm came back.
    #[cfg(feature = "amqp")]
    pub(crate) fn publish_in_place(
        &self,
        amqp: &crate::transport::amqp::AmqpTransport,
        publish: Publish,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        confirmed_within(
            self.inner.options.confirm_timeout,
            amqp.publish_in_place(publish),
        )
    }

    /// [`publish`](Self::publish) through the transport's boxed future: a small one to hold,
    /// which a caller keeping many publishes in flight on another transport wants
    /// ([`enqueue_all`](crate::enqueue_all) allocates each one it holds).
    pub(crate) fn publish_boxed(
        &self,
        publish: Publish,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        confirmed_within(
            self.inner.options.confirm_timeout,
            self.inner.transport.publish(publish),
        )
    }
}

/// `published`'s outcome, or [`Error::Timeout`] when it takes longer than `after`.
///
/// The timer starts when the publish first has to wait: one that is done when first polled (an
/// in-memory publish always is, and a refused one) never reads the clock nor touches tokio's
/// timer wheel, about 1,000 of the 11,000 instructions an in-memory job cost. On RabbitMQ
/// every publish waits for its confirm, so its timer starts at once, as
/// `tokio::time::timeout`'s would.
///
/// A future of its own rather than an `async fn`: the publish it wraps (over 2 KiB on
/// RabbitMQ) is then moved once, into this, where an `async fn` moved it into its state and
/// again into the pinned slot it polls it from.
fn confirmed_within<F: Future<Output = Result<()>>>(
    after: Duration,
    published: F,
) -> ConfirmedWithin<F> {
    ConfirmedWithin {
        published,
        timer: None,
        after,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`confirmed_within`].
    struct ConfirmedWithin<F> {
        #[pin]
        published: F,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        after: Duration,
    }
}

impl<F: Future<Output = Result<()>>> Future for ConfirmedWithin<F> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.published.poll(cx) {
            return Poll::Ready(result);
        }
        let after = *this.after;
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(after)));
        }
        match this.timer.as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| Err(Error::Timeout { after })),
            None => Poll::Pending,
        }
    }
}

impl AsRef<Producer> for Producer {
    fn as_ref(&self) -> &Producer {
        self
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("transport", &self.inner.transport)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// One job on its way to the broker, with per-call options. Made by `my_job::with(msg)`.
///
/// ```
/// # use jobs_core::{job, JobError, testing::TestApp};
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Ping { #[prost(string, tag = "1")] pub text: String }
/// # #[job(exchange = "docs.enqueue", routing_key = "ping")]
/// # async fn ping(_: Ping) -> Result<(), JobError> { Ok(()) }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// # let app = TestApp::builder().job(&ping::JOB).build()?;
/// let id = ping::with(Ping { text: "hi".into() })
///     .header("tenant", "acme")
///     .message_id("ping-1")
///     .enqueue(&app)
///     .await?;
/// assert_eq!(id.as_str(), "ping-1");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "an `Enqueue` does nothing until `.enqueue(&producer)` is awaited"]
pub struct Enqueue<M> {
    job: &'static Job,
    message: M,
    message_id: Option<String>,
    routing_key: Option<Cow<'static, str>>,
    headers: Headers,
    delay: Option<Delay>,
    priority: Option<u8>,
}

/// When a delayed job becomes due.
#[derive(Clone, Copy, Debug)]
enum Delay {
    /// This long after the enqueue.
    For(Duration),
    /// At this time, given the transport's time of the enqueue.
    At((SystemTime, SystemTime)),
}

impl<M: JobMessage> Enqueue<M> {
    /// `message` for `job`, with no per-call options yet.
    pub fn new(job: &'static Job, message: M) -> Self {
        Self {
            job,
            message,
            message_id: None,
            routing_key: None,
            headers: Headers::new(),
            delay: None,
            priority: None,
        }
    }

    /// Adds a header.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<HeaderValue>,
    ) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the message id (default: a new UUID v7), for example to make enqueues idempotent.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Publishes with this routing key instead of the job's.
    pub fn routing_key(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    /// Runs the job `delay` from now, rounded up to the second, up to
    /// [`MAX_DELAY`](crate::delay::MAX_DELAY) (about 8.5 years): it waits in the broker's
    /// delay cascade (see [`crate::delay`]), not in a worker. A delayed job goes to this job's
    /// own queue, not through its exchange (so on a fanout or topic exchange, only this job
    /// gets it). A delay of zero is no delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(Delay::For(delay));
        self
    }

    /// Runs the job at `time`, to the second; a time in the past runs it now. See
    /// [`delay`](Self::delay).
    pub fn at(mut self, time: SystemTime) -> Self {
        self.delay = Some(Delay::At((time, SystemTime::UNIX_EPOCH)));
        self
    }

    /// Sends the job with priority `priority`: its queue delivers the jobs of a higher priority
    /// first. For jobs declared with `#[job(priorities = N)]`, from 0 (the default, lowest) to
    /// `N`; any other is an [`Error::Priority`] at enqueue.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Encodes and publishes the job, and waits for the broker's confirm.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] before publishing anything when the encoded job is over the
    /// producer's limit, and [`Error::Priority`] when its priority is not one of the job's;
    /// [`Error::Unroutable`] when no queue is bound for it; and the errors of
    /// [`Producer::publish`].
    pub async fn enqueue(self, producer: &impl AsRef<Producer>) -> Result<MessageId> {
        let producer = producer.as_ref();
        let job = self.job;
        let (id, publish, span) = self.into_message(producer)?;
        // Awaited here, not in a block of their own: such a block's future, as large as the
        // publish's (2 KiB on RabbitMQ), would be moved once more as it is made. The declared
        // check comes before the declare's future is made: a job is declared at its first
        // enqueue only, and that future, made, moved and dropped each time, costs more than
        // the check.
        let mut published = Ok(());
        if !producer.is_declared(job) {
            published = producer.declare(job).await;
        }
        if published.is_ok() {
            published = producer.publish(publish).await;
        }
        match published {
            Ok(()) => {
                span.end(None);
                Ok(id)
            }
            Err(error) => {
                span.end(Some((otel::error_type(&error), &error)));
                Err(error)
            }
        }
    }

    /// The message exactly as [`enqueue`](Self::enqueue) would publish it, without publishing
    /// it: for a store that publishes it later, such as a transactional outbox. A delay or
    /// [`at`](Self::at) time is read now, so the job's delay counts from this call.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when the encoded job is over `max_message_size`, and
    /// [`Error::Priority`] when its priority is not one of the job's.
    pub fn prepare(self, max_message_size: usize) -> Result<Prepared> {
        let job = self.job;
        let mut this = self;
        if let Some(Delay::At((_, now))) = &mut this.delay {
            *now = SystemTime::now();
        }
        let (id, publish, span) = this.into_publish(max_message_size)?;
        span.end(None);
        Ok(Prepared { job, id, publish })
    }

    /// The job it enqueues.
    pub(crate) fn definition(&self) -> &'static Job {
        self.job
    }

    /// The message to publish with `producer`, and the span of its enqueue.
    pub(crate) fn into_message(
        mut self,
        producer: &Producer,
    ) -> Result<(MessageId, Publish, PublishSpan)> {
        // Read here: the transport keeps the time (a virtual one on the in-memory broker).
        if let Some(Delay::At((_, now))) = &mut self.delay {
            *now = producer.transport().now();
        }
        self.into_publish(producer.options().max_message_size)
    }

    /// The request of a call: the job's message as [`enqueue`](Self::enqueue) would publish
    /// it, its topology declared first, and its producer span, for the call to end. A delay is
    /// ignored: a call runs now.
    pub(crate) async fn into_request(self, producer: &Producer) -> Result<(Publish, PublishSpan)> {
        let job = self.job;
        let mut this = self;
        this.delay = None;
        let (_, publish, span) = this.into_publish(producer.options().max_message_size)?;
        if let Err(error) = producer.declare(job).await {
            span.end(Some((otel::error_type(&error), &error)));
            return Err(error);
        }
        Ok((publish, span))
    }

    /// The message to publish, and the span of its enqueue.
    fn into_publish(self, max_message_size: usize) -> Result<(MessageId, Publish, PublishSpan)> {
        let levels = self.job.options().priorities;
        if let Some(priority) = self.priority
            && levels.is_none_or(|levels| priority > levels)
        {
            return Err(Error::Priority {
                job: self.job.name(),
                priority,
                levels,
            });
        }
        let size = self.message.encoded_len();
        if size > max_message_size {
            return Err(Error::TooLarge {
                size,
                limit: max_message_size,
            });
        }
        let mut body = Vec::with_capacity(size);
        self.message
            .encode(&mut body)
            .map_err(|_| Error::TooLarge {
                size,
                limit: max_message_size,
            })?;

        let job = self.job;
        let delay = match self.delay {
            None => 0,
            Some(Delay::For(delay)) => crate::delay::seconds(delay)?,
            Some(Delay::At((time, now))) => {
                crate::delay::seconds(time.duration_since(now).unwrap_or_default())?
            }
        };
        // One read of the clock, converted once, for the id and the timestamp.
        let since_epoch = message_id::since_epoch(SystemTime::now());
        let id = self
            .message_id
            .map_or_else(|| MessageId::generate_at(since_epoch), MessageId::given);
        let routing_key = self.routing_key.unwrap_or(Cow::Borrowed(job.routing_key()));
        let span = PublishSpan::start(job, &routing_key, id.as_str(), size, &self.headers);
        // With a producer span, the message names it; a `traceparent` the caller set is the
        // span's parent, not the message's. Without the `otel` feature this is always `None`.
        let spanned = span.trace();
        // No `x-jobs-attempt` on the first publish: missing means 1, and a message without any
        // header skips a whole field table, written here and parsed by broker and consumer.
        let mut headers = Headers::new();
        if let Some(traceparent) = spanned
            .map(|trace| trace.header())
            .or_else(TraceContext::for_publish)
        {
            headers.insert(header::TRACEPARENT, traceparent);
        }
        if let Some(binding) = job.header_binding() {
            for (name, value) in binding.values {
                headers.insert(*name, *value);
            }
        }
        for (name, value) in self.headers {
            if spanned.is_some() && name == header::TRACEPARENT {
                continue;
            }
            headers.insert(name, value);
        }
        // A delayed job travels through the cascade to the job's own queue; its origin is
        // recorded as a retry records it, for the error queue's headers.
        let (exchange, routing_key) = if delay > 0 {
            headers.insert(header::EXCHANGE, job.exchange());
            headers.insert(header::ROUTING_KEY, routing_key.into_owned());
            let (exchange, key) = crate::delay::route(delay, job.queue())?;
            (Cow::Owned(exchange), Cow::Owned(key))
        } else {
            (Cow::Borrowed(job.exchange()), routing_key)
        };
        let properties = Properties {
            content_type: Some(Cow::Borrowed(CONTENT_TYPE)),
            kind: Some(Cow::Borrowed(job.name())),
            message_id: Some(String::from(id.as_str())),
            timestamp: Some(since_epoch.as_secs()),
            persistent: true,
            priority: self.priority,
            headers,
            ..Properties::default()
        };
        let publish = Publish {
            exchange,
            routing_key,
            mandatory: true,
            envelope: Envelope {
                properties,
                body: Bytes::from(body),
            },
        };
        Ok((id, publish, span))
    }
}

/// A job's message ready to publish: [`Enqueue::prepare`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Prepared {
    /// The job.
    pub job: &'static Job,
    /// Its message id, also in the publish's properties.
    pub id: MessageId,
    /// The publish, as [`Enqueue::enqueue`] would make it.
    pub publish: Publish,
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    message_id::since_epoch(SystemTime::now()).as_secs()
}
