#!/usr/bin/python3
"""Twisted's parse rate for the framing benchmark (bench/framing).

Feeds the same streams as framing_mem.c (message i is SIZE bytes of
chr(ord('a') + i % 26), framed) in chunks (default 16 KiB) to Twisted's
LineReceiver, NetstringReceiver, Int32StringReceiver and
Int16StringReceiver through dataReceived, with a StringTransport, and
prints one line per case: "framing size msgs_per_s mb_per_s" (process CPU
time, stream bytes).

Usage: /usr/bin/python3 framing_twisted.py [seconds-per-case] [chunk bytes]
"""
import sys
import time

from twisted.internet.testing import StringTransport
from twisted.protocols import basic

STREAM_TARGET = 1 << 20  # as framing_mem.c: 1 MiB, cache-resident


def make(cls):
    class Counter(cls):
        MAX_LENGTH = 1 << 20
        n = 0

        def lineReceived(self, line):
            self.n += 1

        def stringReceived(self, s):
            self.n += 1

    return Counter


KINDS = {
    "line": (make(basic.LineReceiver), 2),
    "netstring": (make(basic.NetstringReceiver), 12),
    "int32": (make(basic.Int32StringReceiver), 4),
    "int16": (make(basic.Int16StringReceiver), 2),
}


def frame(kind, payload):
    n = len(payload)
    if kind == "line":
        return payload + b"\r\n"
    if kind == "netstring":
        return b"%d:%s," % (n, payload)
    if kind == "int32":
        return n.to_bytes(4, "big") + payload
    return n.to_bytes(2, "big") + payload


def main():
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
    for kind, (cls, overhead) in KINDS.items():
        for size in (32, 1024, 16384):
            count = STREAM_TARGET // (size + overhead) + 1
            stream = b"".join(
                frame(kind, bytes([97 + i % 26]) * size) for i in range(count)
            )
            chunks = [stream[o:o + chunk] for o in range(0, len(stream), chunk)]
            p = cls()
            p.makeConnection(StringTransport())
            passes = 0
            t0 = time.process_time()
            while True:
                for c in chunks:
                    p.dataReceived(c)
                passes += 1
                t1 = time.process_time()
                if t1 - t0 >= secs:
                    break
            if p.n != passes * count:
                sys.stderr.write("%s/%d: got %d, expected %d\n"
                                 % (kind, size, p.n, passes * count))
                return 1
            dt = t1 - t0
            print("%s %d %.1f %.3f" % (kind, size, p.n / dt,
                                        passes * len(stream) / dt / 1e6))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
