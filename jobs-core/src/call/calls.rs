//! The calls in flight of one producer: one requester (a direct reply-to channel) serves them
//! all, its replies matched to their callers by correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::oneshot;

use super::{CallError, REPLY_FAILED};
use crate::envelope::{Envelope, HeaderValue, header};
use crate::error::Error;
use crate::job_error::FailureKind;
use crate::producer::Producer;
use crate::transport::{Publish, PublishRequest, ReplyStream, Transport};

/// The callers waiting, by correlation id.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Envelope>>>>;

/// A producer's calls: the requester is opened at the first call, and again after its
/// channel closed.
#[derive(Default)]
pub(crate) struct Calls {
    /// The session calls go through: read under a lock held for a pointer copy, so that
    /// concurrent callers do not queue behind each other as on an async lock.
    session: Mutex<Option<Arc<Session>>>,
    /// Held while a session opens, so that callers arriving meanwhile wait for it rather than
    /// open one each.
    opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

/// One requester and the calls waiting on it.
struct Session {
    publisher: Box<dyn PublishRequest>,
    pending: Pending,
    /// The next call's correlation id. A counter is enough: replies reach only this session's
    /// own reply address, so its ids need to be unique within the session alone.
    next_id: AtomicU64,
    /// Set when the reply stream ended: the session is not used again.
    closed: Arc<AtomicBool>,
    /// Dropped with the session, which stops its reader (and closes the channel).
    _stop: oneshot::Sender<()>,
}

impl Calls {
    /// Publishes `request` with a fresh correlation id and the deadline `timeout` from now,
    /// and waits for its reply's body.
    pub(crate) async fn call(
        &self,
        producer: &Producer,
        mut request: Publish,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let started = tokio::time::Instant::now();
        let session = self.session(producer.transport().as_ref()).await?;
        let id = session.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline = producer.transport().now() + timeout;
        let deadline_ms = deadline.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
        let properties = &mut request.envelope.properties;
        properties.correlation_id = Some(id.to_string());
        properties
            .headers
            .insert(header::DEADLINE, HeaderValue::from(deadline_ms));

        let (sender, mut reply) = oneshot::channel();
        lock(&session.pending).insert(id, sender);
        let confirm_timeout = producer.options().confirm_timeout;
        let mut publish = session.publisher.publish(request);
        // One timer for the whole call: the confirm's deadline until the publish is done,
        // then the reply's.
        let timer = tokio::time::sleep_until(started + confirm_timeout);
        let mut timer = std::pin::pin!(timer);
        let mut published = false;
        // The reply proves the request arrived, so it ends the wait for the broker's confirm
        // too. On a classic queue that confirm usually comes after the reply: the broker
        // confirms a persistent message once the worker acked it (or it reached the disk),
        // which a worker does only after its reply.
        let mut reply_closed = false;
        loop {
            tokio::select! {
                biased;
                received = &mut reply, if !reply_closed => match received {
                    Ok(envelope) => return reply_body(envelope),
                    // The session ended: the publish says whether the request went out.
                    Err(_) if published => return Err(CallError::Disconnected),
                    Err(_) => reply_closed = true,
                },
                sent = &mut publish, if !published => {
                    if let Err(error) = sent {
                        lock(&session.pending).remove(&id);
                        if matches!(error, Error::Connection(_)) {
                            session.closed.store(true, Ordering::Release);
                        }
                        return Err(CallError::Request(error));
                    }
                    if reply_closed {
                        return Err(CallError::Disconnected);
                    }
                    published = true;
                    timer.as_mut().reset(started + timeout);
                }
                () = timer.as_mut() => {
                    lock(&session.pending).remove(&id);
                    if published {
                        // A reply that comes later finds no caller, and is dropped.
                        return Err(CallError::Timeout { after: timeout });
                    }
                    return Err(CallError::Request(Error::Timeout {
                        after: confirm_timeout,
                    }));
                }
            }
        }
    }

    /// The session to call through: the open one, or a new one after the last closed.
    async fn session(&self, transport: &dyn Transport) -> Result<Arc<Session>, CallError> {
        if let Some(session) = self.open_session() {
            return Ok(session);
        }
        let _opening = self.opening.lock().await;
        if let Some(session) = self.open_session() {
            return Ok(session);
        }
        let requester = transport.requester().await.map_err(CallError::Request)?;
        let pending = Pending::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(read_replies(
            requester.replies,
            Arc::clone(&pending),
            Arc::clone(&closed),
            stopped,
        ));
        let session = Arc::new(Session {
            publisher: requester.publisher,
            pending,
            next_id: AtomicU64::new(0),
            closed,
            _stop: stop,
        });
        *lock(&self.session) = Some(Arc::clone(&session));
        Ok(session)
    }

    /// The current session, unless there is none or it closed.
    fn open_session(&self) -> Option<Arc<Session>> {
        lock(&self.session)
            .as_ref()
            .filter(|session| !session.closed.load(Ordering::Acquire))
            .map(Arc::clone)
    }
}

/// Hands each reply to its caller until the stream ends or the session goes; then every call
/// still waiting learns that its connection closed.
async fn read_replies(
    mut replies: ReplyStream,
    pending: Pending,
    closed: Arc<AtomicBool>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let reply = tokio::select! {
            _ = &mut stopped => break,
            reply = replies.next() => reply,
        };
        let Some(reply) = reply else { break };
        // None: the caller gave up, or the reply is not for us; dropped quietly.
        let caller = reply
            .properties
            .correlation_id
            .as_deref()
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| lock(&pending).remove(&id));
        if let Some(caller) = caller {
            let _ = caller.send(reply);
        }
    }
    closed.store(true, Ordering::Release);
    // Dropping the senders wakes every waiting call with `Disconnected`.
    lock(&pending).clear();
}

/// The reply's body, or the failure it reports.
fn reply_body(envelope: Envelope) -> Result<Bytes, CallError> {
    let headers = &envelope.properties.headers;
    if headers.get_str(header::REPLY) == Some(REPLY_FAILED) {
        return Err(CallError::Failed {
            kind: headers
                .get_str(header::ERROR_KIND)
                .and_then(|kind| kind.parse().ok())
                .unwrap_or(FailureKind::Handler),
            error: headers
                .get_str(header::ERROR)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok(envelope.body)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
