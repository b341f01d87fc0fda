#!/usr/bin/python3
"""Reference echo server on Twisted with the epoll reactor.

Usage: /usr/bin/python3 echo_twisted.py PORT   (listens on 127.0.0.1, prints
"ready", exits on SIGTERM or SIGINT: the reactor's own signal handlers stop it).
"""
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted_serve import serve  # noqa: E402

from twisted.internet import protocol  # noqa: E402


class Echo(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


if __name__ == "__main__":
    sys.exit(serve(Echo, "echo_twisted.py"))
