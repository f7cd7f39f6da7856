//! The reply to a call: sent when the job succeeded, or failed for good, to the caller's
//! direct reply-to address (see [`crate::call`]).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::dispatch::JobRuntime;
use crate::call::{REPLY_FAILED, REPLY_OK};
use crate::envelope::{CONTENT_TYPE, Envelope, HeaderValue, Headers, Properties, header};
use crate::job_error::FailureKind;
use crate::transport::{Publish, ReplyChannel};

/// Where the reply to `envelope` goes, when it is a call: its `reply_to` and correlation id.
pub(super) fn address(envelope: &Envelope) -> Option<(&str, &str)> {
    let properties = &envelope.properties;
    Some((
        properties.reply_to.as_deref()?,
        properties.correlation_id.as_deref()?,
    ))
}

/// When the caller of `envelope` stops waiting, if it is a call that says.
pub(super) fn deadline(envelope: &Envelope) -> Option<SystemTime> {
    address(envelope)?;
    let ms = envelope
        .properties
        .headers
        .get(header::DEADLINE)?
        .as_i64()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(ms).ok()?))
}

/// Sends the reply message `body` to the caller of `envelope`, if it is a call, on `channel`
/// (the one the request came on) when the transport offers it.
pub(super) async fn ok(
    runtime: &JobRuntime,
    envelope: &Envelope,
    channel: Option<&ReplyChannel>,
    body: Bytes,
) {
    let headers = Headers::from_iter([(header::REPLY, HeaderValue::from(REPLY_OK))]);
    send(runtime, envelope, channel, headers, body).await;
}

/// Tells the caller of `envelope`, if it is a call, that the job failed for good.
pub(super) async fn failed(
    runtime: &JobRuntime,
    envelope: &Envelope,
    channel: Option<&ReplyChannel>,
    kind: FailureKind,
    error: &str,
) {
    let mut headers = Headers::from_iter([(header::REPLY, HeaderValue::from(REPLY_FAILED))]);
    headers.insert(header::ERROR_KIND, kind.as_str());
    headers.insert(header::ERROR, error);
    send(runtime, envelope, channel, headers, Bytes::new()).await;
}

async fn send(
    runtime: &JobRuntime,
    envelope: &Envelope,
    channel: Option<&ReplyChannel>,
    headers: Headers,
    body: Bytes,
) {
    let Some((reply_to, correlation_id)) = address(envelope) else {
        return;
    };
    // Not mandatory: RabbitMQ returns every reply to a direct reply-to address as unroutable
    // (up to 4.1), and a caller that gave up simply gets nothing. Not confirmed either: a reply
    // lost is a caller that times out, whether it is lost before the broker or after (the
    // caller's channel gone), and the job's ack waits for nothing.
    let publish = Publish {
        exchange: Cow::Borrowed(""),
        routing_key: Cow::Owned(reply_to.to_owned()),
        mandatory: false,
        envelope: Envelope {
            properties: Properties {
                content_type: Some(Cow::Borrowed(CONTENT_TYPE)),
                correlation_id: Some(correlation_id.to_owned()),
                headers,
                ..Properties::default()
            },
            body,
        },
    };
    // On the request's own channel where there is one: the ack that follows goes out behind
    // the reply on that channel, and the worker's side of the call stays on one connection.
    let sent = match channel {
        Some(channel) => channel.0.reply(publish).await,
        None => {
            runtime
                .producer
                .transport()
                .publish_unconfirmed(publish)
                .await
        }
    };
    if let Err(error) = sent {
        // The job's outcome stands; the caller times out.
        tracing::warn!(
            job = runtime.settings.job().name(),
            correlation_id,
            %error,
            "could not send the reply to a call"
        );
    }
}
