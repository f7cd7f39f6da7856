"""Publishes hostile messages to a job's exchange, by the wire contract and pika alone.

Usage: hostile.py URL EXCHANGE ROUTING_KEY FIRST_ID

Each message is persistent, mandatory and confirmed; one line per message on stdout:
`<case> <id> <message_id>`. The bodies are the bad-input job's `Document` (text = 1,
child = 2, id = 3), valid or not as the case says:

* `wide-valid`, `wide-invalid`: a header table as wide as a 128 KiB frame holds (void values
  under the shortest distinct names);
* `deep-valid`, `deep-invalid`: a header table nested 10,000 levels deep;
* `bad-name`: a header name that is not UTF-8;
* `control`: control characters (escape sequences, bell, carriage return) in the `type`, the
  `message_id` and a header, so that the error queue's listing must escape them.

lapin cannot write a table 10,000 levels deep (its encoder recurses on a thread it owns), so
Python writes them all, on a thread with a stack large enough for pika's encoder.
"""

import sys
import threading

import pika

FRAME_MAX = 131072
DEPTH = 10_000


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def document(text, ident):
    text = text.encode()
    return b"\x0a" + varint(len(text)) + text + b"\x18" + varint(ident)


INVALID = b"\xff\xff\xff"


def names():
    """Distinct names, shortest first: every printable one-byte name, then two bytes, then
    three; not `CC` or `BCC`, which RabbitMQ reads as lists of extra routing keys."""
    alphabet = [chr(c) for c in range(0x21, 0x7F)]
    candidates = (
        alphabet
        + [a + b for a in alphabet for b in alphabet]
        + [a + b + c for a in alphabet for b in alphabet for c in alphabet]
    )
    return (name for name in candidates if name not in ("CC", "BCC"))


def wide_headers(room):
    """Void headers whose table takes at most `room` bytes."""
    headers, size = {}, 4
    for name in names():
        entry = 1 + len(name) + 1
        if size + entry > room:
            return headers
        headers[name] = None
        size += entry
    return headers


def deep_headers():
    headers = {}
    for _ in range(DEPTH):
        headers = {"a": headers}
    return headers


def publish_all(url, exchange, routing_key, first_id):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()

    def send(case, ident, body, headers, kind="bad_input", message_id=None):
        message_id = message_id or f"bad-{ident}"
        properties = pika.BasicProperties(
            content_type="application/x-protobuf",
            type=kind,
            message_id=message_id,
            delivery_mode=2,
            headers=headers,
        )
        channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        print(case, ident, message_id, flush=True)

    ident = first_id
    # The content header around the table: class, weight, size and flags (14), the content
    # type, type, message id and delivery mode, and a little room.
    room = FRAME_MAX - 8 - 14 - 200
    wide = wide_headers(room)
    print("wide", len(wide), "entries", file=sys.stderr)
    for case, body in (("wide-valid", True), ("wide-invalid", False)):
        send(case, ident, document("wide", ident) if body else INVALID, wide)
        ident += 1
    deep = deep_headers()
    for case, body in (("deep-valid", True), ("deep-invalid", False)):
        send(case, ident, document("deep", ident) if body else INVALID, deep)
        ident += 1
    send("bad-name", ident, INVALID, {b"\xff\xfe": 1, "ok": 2})
    ident += 1
    send(
        "control",
        ident,
        document("control", ident),
        {"x-note": "\x1b]0;owned\x07\x1b[2J"},
        kind="evil\x1b[31m\r\x08",
        message_id=f"ctl-{ident}-\x1b[2J\x07",
    )
    connection.close()


def main():
    url, exchange, routing_key, first_id = sys.argv[1:5]
    sys.setrecursionlimit(200_000)
    threading.stack_size(512 << 20)
    failure = []

    def run():
        try:
            publish_all(url, exchange, routing_key, int(first_id))
        except BaseException as error:  # reported by the main thread's exit code
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


if __name__ == "__main__":
    main()
