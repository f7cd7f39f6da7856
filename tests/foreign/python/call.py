"""Calls a job from Python by the wire contract of docs/calls.md alone, and prints the replies.

Usage: JOBS_AMQP_URL=amqp://... call.py EXCHANGE ROUTING_KEY JOB TIMEOUT_SECONDS [ASK:N]...

The broker URL comes from the environment, not the command line, where its password would show
in the process list; without JOBS_AMQP_URL it is the local broker as guest.

`calls_pb2` is the code `grpc_tools.protoc` generates from tests/proto/calls.proto; put the
directory it was generated into on PYTHONPATH. Nothing here comes from the Rust framework: pika
speaks AMQP, protobuf encodes.

Sends one `calls.Question(ask=ASK, n=N)` per argument, all of them before waiting for any reply,
so they are in flight together, then waits up to TIMEOUT_SECONDS for every reply. Prints a line
per request as it is sent and one per reply as it comes, matched by correlation id:

    call <correlation id> <ask> <n>
    reply <correlation id> ok <text> <n>
    reply <correlation id> failed <x-jobs-error-kind> <x-jobs-error>

Exits non-zero when a request is refused or returned (pika raises), when a reply answers no
request of this run or answers one twice, or when a reply is missing at the deadline.
"""

import os
import sys
import time
import uuid

import pika

import calls_pb2

# RabbitMQ's direct reply-to: consuming this pseudo-queue (without acks) gives the channel a
# reply address, and a request published on the same channel with `reply_to` set to it gets its
# reply delivered straight to this consumer; no reply queue is declared.
REPLY_TO = "amq.rabbitmq.reply-to"


def text(value):
    """A header value as text: pika gives long strings as str, or as bytes when not UTF-8."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def main(exchange, routing_key, job, timeout, *questions):
    url = os.environ.get("JOBS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    pending = {}  # correlation id -> (ask, n) of the calls not answered yet

    def on_reply(_channel, _method, props, body):
        cid = props.correlation_id
        if cid not in pending:
            sys.exit(f"a reply to no call in flight: correlation id {cid!r}")
        del pending[cid]
        headers = props.headers or {}
        # A reply without `x-jobs-reply` counts as `ok` (the contract).
        if text(headers.get("x-jobs-reply", "ok")) == "ok":
            answer = calls_pb2.Answer.FromString(body)
            print("reply", cid, "ok", answer.text, answer.n, flush=True)
        else:
            kind = text(headers.get("x-jobs-error-kind", ""))
            error = text(headers.get("x-jobs-error", ""))
            print("reply", cid, "failed", kind, error, flush=True)

    # Consume the replies before the first request: the broker refuses a request whose
    # `reply_to` is the direct reply-to address on a channel that does not consume it.
    channel.basic_consume(REPLY_TO, on_reply, auto_ack=True)
    # With confirms on, basic_publish waits for the broker's ack and raises on a nack, and on a
    # return of a mandatory message that no queue took (UnroutableError).
    channel.confirm_delivery()

    deadline = time.time() + float(timeout)
    for question in questions:
        ask, n = question.split(":")
        cid = str(uuid.uuid4())
        props = pika.BasicProperties(
            content_type="application/x-protobuf",
            type=job,  # the job name: the worker checks it against the queue's job
            message_id=str(uuid.uuid4()),
            delivery_mode=2,  # persistent
            reply_to=REPLY_TO,
            correlation_id=cid,
            # When this caller stops waiting, in Unix milliseconds: the worker retries a
            # failing job only while a retry would start before it.
            headers={"x-jobs-deadline": int(deadline * 1000)},
        )
        pending[cid] = (ask, n)
        body = calls_pb2.Question(ask=ask, n=int(n)).SerializeToString()
        channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
        print("call", cid, ask, n, flush=True)

    # Replies that came while a publish waited for its confirm were queued by pika; this runs
    # their callbacks, then waits for the rest until the deadline.
    while pending and time.time() < deadline:
        connection.process_data_events(time_limit=max(0.0, min(1.0, deadline - time.time())))
    connection.close()
    if pending:
        sys.exit(f"no reply within {timeout} s to: {sorted(pending.items())}")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit("usage: call.py EXCHANGE ROUTING_KEY JOB TIMEOUT_SECONDS [ASK:N]...")
    main(*sys.argv[1:])
