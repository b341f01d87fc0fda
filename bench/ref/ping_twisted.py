#!/usr/bin/python3
"""Reference PING server on Twisted (epoll reactor): a LineReceiver that
answers "PING" with "+PONG" (redis's inline protocol, enough for
`redis-benchmark -t ping_inline`), TCP_NODELAY on like the ctwist server.

Usage: /usr/bin/python3 ping_twisted.py PORT   (listens on 127.0.0.1, prints
"ready", exits on SIGTERM or SIGINT).
"""
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted_serve import serve  # noqa: E402

from twisted.protocols import basic  # noqa: E402


class Ping(basic.LineReceiver):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def lineReceived(self, line):
        if line == b"PING":
            self.sendLine(b"+PONG")
        else:
            self.sendLine(b"-ERR unknown command")


if __name__ == "__main__":
    sys.exit(serve(Ping, "ping_twisted.py"))
