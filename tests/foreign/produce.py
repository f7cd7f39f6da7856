"""Enqueues jobs from Python by the wire contract alone: pika for AMQP, protobuf for the body.

Usage: produce.py URL EXCHANGE ROUTING_KEY JOB COUNT

Publishes COUNT `TransferFile` jobs, then one message whose body is not a `TransferFile`, each
persistent, mandatory and confirmed, and prints one line per message: `ok <id>` or `bad <id>`.
Nothing here comes from the Rust framework: the message type is built from a descriptor at run
time, as a service with its own .proto file would have it.
"""

import sys
import time
import uuid

import pika
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def transfer_file_class():
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="transfer.proto", package="uploads", syntax="proto3")
    message = proto.message_type.add(name="TransferFile")
    message.field.add(name="path", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message.field.add(name="size", number=2, type=field.TYPE_UINT64, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("uploads.TransferFile"))


def properties(job):
    return pika.BasicProperties(
        content_type="application/x-protobuf",
        type=job,
        message_id=str(uuid.uuid4()),
        timestamp=int(time.time()),
        delivery_mode=2,
        headers={"x-jobs-attempt": 1},
    )


def main(url, exchange, routing_key, job, count):
    TransferFile = transfer_file_class()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()  # basic_publish raises on a nack or a return
    for n in range(int(count)):
        body = TransferFile(path=f"py/{n}.bin", size=100 + n).SerializeToString()
        props = properties(job)
        channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
        print("ok", props.message_id, flush=True)
    # Field 1 announced as a 100-byte string with 3 bytes behind it: not a TransferFile.
    props = properties(job)
    channel.basic_publish(exchange, routing_key, b"\x0a\x64abc", props, mandatory=True)
    print("bad", props.message_id, flush=True)
    connection.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
