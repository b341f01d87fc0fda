#!/usr/bin/python3
"""Reference echo server on Twisted with the epoll reactor.

Usage: /usr/bin/python3 echo_twisted.py PORT   (listens on 127.0.0.1, prints
"ready", exits on SIGTERM or SIGINT: the reactor's own signal handlers stop it).
"""
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402


class Echo(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: echo_twisted.py PORT\n")
        return 2
    factory = protocol.Factory.forProtocol(Echo)
    factory.noisy = False
    reactor.listenTCP(int(sys.argv[1]), factory, backlog=4096, interface="127.0.0.1")

    def ready():
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    reactor.callWhenRunning(ready)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
