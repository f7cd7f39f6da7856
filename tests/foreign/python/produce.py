"""Enqueues `uploads.TransferFile` jobs from Python by the wire contract alone.

Usage: JOBS_AMQP_URL=amqp://... produce.py EXCHANGE ROUTING_KEY JOB [PATH SIZE NAME CONTENT_TYPE]...

The broker URL comes from the environment, not the command line, where its password would show
in the process list; without JOBS_AMQP_URL it is the local broker as guest.

`uploads_pb2` is the code `grpc_tools.protoc` generates from
examples/upload-server/proto/uploads.proto; put the directory it was generated into on
PYTHONPATH. Nothing here comes from the Rust framework: pika speaks AMQP, protobuf encodes.

Publishes one job per group of four arguments, then the bodies of `BAD_BODIES`, each persistent,
mandatory and confirmed, and prints one line per message: `ok <message id>` for the jobs in
argument order, then `bad <message id> <what is wrong>`. Exits non-zero when the broker refuses
or returns a message (pika raises).
"""

import os
import sys
import time
import uuid

import pika
from google.protobuf import message as protobuf_message

import uploads_pb2

# Bodies that are not a `TransferFile`, for the worker to send to the error queue as `decode`.
# Only bodies that every protobuf library rejects: a length-delimited value where a varint
# field is expected is an unknown field to Python's protobuf but an error to prost.
BAD_BODIES = [
    # Field 1 (path) announced as 100 bytes with 3 behind it.
    ("truncated", b"\x0a\x64abc"),
    # Field 3 (name) holding bytes that are not UTF-8, which proto3 strings must be.
    ("not-utf-8", b"\x1a\x02\xff\xfe"),
]


def properties(job):
    """The AMQP properties of a job message (the wire contract in uploads.proto)."""
    return pika.BasicProperties(
        content_type="application/x-protobuf",
        type=job,  # the job name: the worker checks it against the queue's job
        message_id=str(uuid.uuid4()),  # unique; kept across retries, the idempotency key
        timestamp=int(time.time()),
        delivery_mode=2,  # persistent
        # No `x-jobs-attempt` header: missing means attempt 1.
    )


def main(exchange, routing_key, job, *fields):
    if len(fields) % 4:
        sys.exit("usage: produce.py EXCHANGE ROUTING_KEY JOB [PATH SIZE NAME CONTENT_TYPE]...")
    url = os.environ.get("JOBS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    # With confirms on, basic_publish waits for the broker's ack and raises on a nack, and on a
    # return of a mandatory message that no queue took (UnroutableError).
    channel.confirm_delivery()

    def publish(body):
        props = properties(job)
        channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
        return props.message_id

    for i in range(0, len(fields), 4):
        path, size, name, content_type = fields[i : i + 4]
        file = uploads_pb2.TransferFile(path=path, size=int(size), name=name, content_type=content_type)
        print("ok", publish(file.SerializeToString()), flush=True)
    for what, body in BAD_BODIES:
        try:
            uploads_pb2.TransferFile.FromString(body)
            sys.exit(f"the {what} body decodes in Python: it would not test the error queue")
        except protobuf_message.DecodeError:
            pass
        print("bad", publish(body), what, flush=True)
    connection.close()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: produce.py EXCHANGE ROUTING_KEY JOB [PATH SIZE NAME CONTENT_TYPE]...")
    main(*sys.argv[1:])
