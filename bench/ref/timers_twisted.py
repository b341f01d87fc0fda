#!/usr/bin/python3
"""Twisted reference for bench/timers: N callLater calls with random delays
in [0, 1 s) run until all fired, then N scheduled and cancelled.  Same
output format as bench_timers.  Usage: /usr/bin/python3 timers_twisted.py [N]
"""
import random
import resource
import sys
import time

from twisted.internet import reactor


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    rnd = random.Random(42)
    state = {"fired": 0}

    def on_timer():
        state["fired"] += 1
        if state["fired"] == n:
            reactor.stop()

    w0, c0 = time.monotonic(), time.process_time()
    rss0 = rss_bytes()
    for _ in range(n):
        reactor.callLater(rnd.randrange(1000000) / 1e6, on_timer)
    rss1 = rss_bytes()
    reactor.run()
    w1, c1 = time.monotonic(), time.process_time()
    print("twisted fire n=%d wall=%.3f cpu=%.3f rss_per_timer=%.1f"
          % (n, w1 - w0, c1 - c0, (rss1 - rss0) / n))

    w0, c0 = time.monotonic(), time.process_time()
    calls = [reactor.callLater(rnd.randrange(1000000) / 1e6, on_timer)
             for _ in range(n)]
    for c in calls:
        c.cancel()
    w1, c1 = time.monotonic(), time.process_time()
    print("twisted cancel n=%d wall=%.3f cpu=%.3f" % (n, w1 - w0, c1 - c0))


if __name__ == "__main__":
    main()
