"""Serves a job's calls from Python by the wire contract of docs/calls.md alone: a worker in
another language whose callers use this framework's typed `call`.

Usage: JOBS_AMQP_URL=amqp://... serve.py QUEUE JOB COUNT TIMEOUT_SECONDS

The broker URL comes from the environment, not the command line, where its password would show
in the process list; without JOBS_AMQP_URL it is the local broker as guest.

`calls_pb2` is the code `grpc_tools.protoc` generates from tests/proto/calls.proto; put the
directory it was generated into on PYTHONPATH. Nothing here comes from the Rust framework.

Consumes QUEUE (declared by whoever owns the job; this program declares nothing) and answers
each `calls.Question`: `Answer(text="python", n=question.n)`, except for the question `bare`,
answered `Answer(text="bare", n=question.n)` with no headers at all (which the contract reads as
`ok`), the question `refuse`, which it refuses for good (`x-jobs-reply = failed`,
`x-jobs-error-kind = fatal`), and a message of another job than JOB, or one that does not
decode, which it fails as `unknown-job` or `decode`. It replies before it acks, so a request
whose worker dies in between is delivered again rather than left unanswered. Prints a line per
request served:

    served <correlation id> <ask> <n> <ok|failed|bare>

and exits after COUNT requests, or non-zero when TIMEOUT_SECONDS pass first.
"""

import os
import sys
import time

import pika
from google.protobuf import message as protobuf_message

import calls_pb2

# What `refuse` questions get as `x-jobs-error`; the Rust test expects this text.
REFUSAL = "the Python worker refuses this question"


def failed(kind, error):
    """The headers and the (empty) body of a failure reply."""
    return {"x-jobs-reply": "failed", "x-jobs-error-kind": kind, "x-jobs-error": error}, b""


def handle(job, props, body):
    """The request's ask and n (as far as known), and its reply's headers and body."""
    if props.type != job:
        return "?", 0, *failed("unknown-job", f"this worker serves {job}, not {props.type}")
    try:
        question = calls_pb2.Question.FromString(body)
    except protobuf_message.DecodeError as error:
        return "?", 0, *failed("decode", f"body is not a valid `Question`: {error}")
    if question.ask == "refuse":
        return question.ask, question.n, *failed("fatal", REFUSAL)
    if question.ask == "bare":
        # Only the body: what a worker that knows nothing of the headers sends.
        answer = calls_pb2.Answer(text="bare", n=question.n)
        return question.ask, question.n, {}, answer.SerializeToString()
    answer = calls_pb2.Answer(text="python", n=question.n)
    return question.ask, question.n, {"x-jobs-reply": "ok"}, answer.SerializeToString()


def main(queue, job, count, timeout):
    count = int(count)
    url = os.environ.get("JOBS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    # Many requests in flight at once, as a Rust worker's `concurrency` allows; handled one after
    # the other here, which is enough for a handler that only computes.
    channel.basic_qos(prefetch_count=100)
    served = 0

    def on_request(_channel, method, props, body):
        nonlocal served
        ask, n, headers, reply = handle(job, props, body)
        # A job enqueued rather than called has no one to answer.
        if props.reply_to and props.correlation_id:
            # To the default exchange with the caller's address as routing key, and the
            # request's correlation id, by which the caller matches it. Not mandatory: RabbitMQ
            # returns every reply to a direct reply-to address as unroutable (up to 4.1), and a
            # caller that gave up simply gets nothing.
            properties = pika.BasicProperties(
                content_type="application/x-protobuf",
                correlation_id=props.correlation_id,
                headers=headers,
            )
            channel.basic_publish("", props.reply_to, reply, properties)
        channel.basic_ack(method.delivery_tag)
        served += 1
        status = headers.get("x-jobs-reply", "bare")
        print("served", props.correlation_id, ask, n, status, flush=True)

    channel.basic_consume(queue, on_request, auto_ack=False)
    deadline = time.time() + float(timeout)
    while served < count and time.time() < deadline:
        connection.process_data_events(time_limit=max(0.0, min(1.0, deadline - time.time())))
    # Unacked deliveries beyond COUNT go back to the queue when the connection closes.
    connection.close()
    if served < count:
        sys.exit(f"served {served} of {count} requests within {timeout} s")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: serve.py QUEUE JOB COUNT TIMEOUT_SECONDS")
    main(*sys.argv[1:])
