#!/usr/bin/env python3
"""Writes the named seeds of corpus/decode_classify/ (see src/lib.rs for the input format).

A seed's name says what the engine must decide, and the corpus replay test checks it:
`run-aN-…` runs at attempt N; `too-large-…`, `unknown-job-…` and `decode-…` go to the error
queue with that failure kind; `any-…` (and files the fuzzer adds) only must not panic.
"""
import os
import random
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "decode_classify")
NO_TYPE, OWN_TYPE, OTHER_TYPE = 0, 1, 2
ATTEMPT, TRACEPARENT, DELIVERY_COUNT, DEATH, EXCHANGE = 0, 1, 2, 3, 4


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


def field(tag, wire, payload):
    key = varint(tag << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def node(name=b"", data=b"", ids=(), child=None):
    out = b""
    if name:
        out += field(1, 2, name)
    if data:
        out += field(2, 2, data)
    if ids:
        out += field(3, 2, b"".join(varint(i) for i in ids))
    if child is not None:
        out += field(4, 2, child)
    return out


def nested(depth):
    body = node(name=b"leaf")
    for _ in range(depth):
        body = node(child=body)
    return body


# Header values: tag byte and payload.
def int_(n):
    return bytes([0]) + struct.pack(">q", n)


def string(b):
    return bytes([1, len(b)]) + b


def raw(b):
    return bytes([2, len(b)]) + b


def float_(x):
    return bytes([3]) + struct.pack(">d", x)


def bool_(b):
    return bytes([4, 1 if b else 0])


def timestamp(t):
    return bytes([5]) + struct.pack(">Q", t)


def array(*values):
    return bytes([6, len(values)]) + b"".join(values)


def table(*pairs):
    return bytes([7, len(pairs)]) + b"".join(bytes([n]) + v for n, v in pairs)


VOID = bytes([8])


def message(kind=NO_TYPE, headers=(), body=b""):
    out = bytes([kind, len(headers)])
    for name, value in headers:
        out += bytes([name]) + value
    return out + body


VALID = node(name=b"report.pdf", data=b"\x00\x01\x02", ids=(1, 300, 2**40))
TRACE = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

SEEDS = {
    "run-a1-empty": b"",
    "run-a1-empty-body": message(),
    "run-a1-valid": message(OWN_TYPE, [(ATTEMPT, int_(1)), (TRACEPARENT, string(TRACE))], VALID),
    "run-a1-no-type": message(NO_TYPE, [], VALID),
    "run-a3-retry": message(OWN_TYPE, [(ATTEMPT, int_(3)), (EXCHANGE, string(b"fuzz.decode"))], VALID),
    "run-a2-attempt-timestamp": message(OWN_TYPE, [(ATTEMPT, timestamp(2))], VALID),
    "run-a1-bad-traceparent": message(OWN_TYPE, [(TRACEPARENT, string(b"00-zz-zz-zz"))], VALID),
    "run-a1-traceparent-bytes": message(OWN_TYPE, [(TRACEPARENT, raw(b"\xff\xfe"))], VALID),
    "run-a1-unknown-field": message(OWN_TYPE, [], VALID + field(9, 0, varint(7))),
    "run-a1-nested-50": message(OWN_TYPE, [], nested(50)),
    "run-a1-odd-headers": message(
        OWN_TYPE,
        [
            (DELIVERY_COUNT, int_(7)),
            (DEATH, array(table((0, string(b"q")), (9, int_(1))), VOID)),
            (200, float_(float("nan"))),
            (201, bool_(True)),
            (202, raw(b"\x00\xff")),
            (203, VOID),
        ],
        VALID,
    ),
    "run-a1-deep-header": message(OWN_TYPE, [(DEATH, bytes([6, 1]) * 32 + VOID)], VALID),
    "any-header-past-depth-limit": message(OWN_TYPE, [(DEATH, bytes([6, 1]) * 60 + VOID)], VALID),
    "run-a4294967295-attempt-max": message(OWN_TYPE, [(ATTEMPT, int_(2**32 - 1))], VALID),
    "run-a1-at-size-limit": message(OWN_TYPE, [], node(data=b"d" * (4096 - 3))),
    "too-large-body": message(OWN_TYPE, [], node(data=b"d" * 4096)),
    "too-large-before-bad-attempt": message(OTHER_TYPE, [(ATTEMPT, int_(0))], b"\xff" * 4097),
    "unknown-job-other-type": message(OTHER_TYPE, [], VALID),
    "unknown-job-before-bad-attempt": message(OTHER_TYPE, [(ATTEMPT, int_(-1))], b"\xff"),
    "decode-attempt-zero": message(OWN_TYPE, [(ATTEMPT, int_(0))], VALID),
    "decode-attempt-negative": message(OWN_TYPE, [(ATTEMPT, int_(-3))], VALID),
    "decode-attempt-over-u32": message(OWN_TYPE, [(ATTEMPT, int_(2**32))], VALID),
    "decode-attempt-i64-max": message(OWN_TYPE, [(ATTEMPT, int_(2**63 - 1))], VALID),
    "decode-attempt-string": message(OWN_TYPE, [(ATTEMPT, string(b"2"))], VALID),
    "decode-attempt-invalid-utf8": message(OWN_TYPE, [(ATTEMPT, string(b"\xc3\x28"))], VALID),
    "decode-attempt-float": message(OWN_TYPE, [(ATTEMPT, float_(1.0))], VALID),
    "decode-attempt-bool": message(OWN_TYPE, [(ATTEMPT, bool_(True))], VALID),
    "decode-attempt-void": message(OWN_TYPE, [(ATTEMPT, VOID)], VALID),
    "decode-attempt-array": message(OWN_TYPE, [(ATTEMPT, array(int_(1)))], VALID),
    "decode-attempt-table": message(OWN_TYPE, [(ATTEMPT, table((0, int_(1))))], VALID),
    "decode-attempt-timestamp-huge": message(OWN_TYPE, [(ATTEMPT, timestamp(2**64 - 1))], VALID),
    "decode-truncated": message(OWN_TYPE, [], VALID[:7]),
    "decode-truncated-varint": message(OWN_TYPE, [], field(3, 2, b"\x05") + b"\xff"),
    "decode-invalid-utf8": message(OWN_TYPE, [], node(name=b"\xff\xfe\xfd")),
    "decode-wrong-wire-type": message(OWN_TYPE, [], field(1, 0, varint(42))),
    "decode-wrong-message-type": message(OWN_TYPE, [], field(1, 5, b"\x00\x00\x80\x3f") + field(4, 0, varint(1))),
    "decode-zero-tag": message(OWN_TYPE, [], b"\x00\x00"),
    "decode-length-past-end": message(OWN_TYPE, [], b"\x0a\x7f" + b"short"),
    "decode-varint-overflow": message(OWN_TYPE, [], b"\x18" + b"\xff" * 11),
    "decode-deep-nesting": message(OWN_TYPE, [], nested(200)),
    "decode-group-wire-type": message(OWN_TYPE, [], field(5, 3, b"")),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    rng = random.Random(7)
    for i in range(8):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        with open(os.path.join(OUT, f"any-random-{i}"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
