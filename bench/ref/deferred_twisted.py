#!/usr/bin/python3
"""Twisted reference for bench/deferred: the same three shapes.

Run with /usr/bin/python3 (Debian's python3-twisted).  Times are process
CPU time (time.process_time), like the C side, because the benchmark
machine is shared.  Prints key=value
lines that bench/deferred/run.sh hands to the C benchmark, plus a
human-readable summary on stderr.

(b) uses 100,000 callbacks, not 1,000,000: Twisted's Deferred pops each
callback from the front of a Python list, so a chain is quadratic there
(1,000,000 takes about 44 s).
"""
import sys
import time

import twisted
from twisted.internet import defer


def inc(x):
    return x + 1


def fail(_):
    raise ValueError("bench failure")


def recover(f):
    return 1


def best(fn, n, reps=3):
    return min(fn(n) for _ in range(reps))


def shape_a(n):
    t0 = time.process_time()
    for _ in range(n):
        d = defer.Deferred()
        d.addCallback(inc)
        d.addCallback(inc)
        d.addCallback(inc)
        d.callback(0)
    return time.process_time() - t0


def shape_b(n):
    t0 = time.process_time()
    d = defer.Deferred()
    for _ in range(n):
        d.addCallback(inc)
    d.callback(0)
    return time.process_time() - t0


def shape_c(n):
    t0 = time.process_time()
    for _ in range(n):
        d = defer.Deferred()
        d.addCallback(fail)
        d.addErrback(recover)
        d.callback(0)
    return time.process_time() - t0


def main():
    n_a, n_b, n_c = 1000000, 100000, 1000000
    a = best(shape_a, n_a)
    b = best(shape_b, n_b, reps=1)
    c = best(shape_c, n_c, reps=1)
    print("version=%s" % twisted.__version__.split(".")[0])
    print("a_ns_per_cb=%.1f" % (a / (3 * n_a) * 1e9))
    print("b_ns_per_cb=%.1f" % (b / n_b * 1e9))
    print("b_callbacks=%d" % n_b)
    print("c_ns_per_hop=%.1f" % (c / n_c * 1e9))
    print(
        "twisted %s: (a) %.0f ns/callback, (b) %d callbacks in %.2f s, "
        "(c) %.0f ns/hop" % (twisted.__version__, a / (3 * n_a) * 1e9, n_b, b,
                             c / n_c * 1e9),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
