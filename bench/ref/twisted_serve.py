"""The shared main of the Twisted reference servers (echo, ping, rpc).

serve(ProtocolClass, "name.py") listens on 127.0.0.1:PORT (sys.argv[1])
with a 4096 backlog, prints "ready" and runs the reactor until SIGTERM or
SIGINT (the reactor's own signal handlers stop it).  The caller installs
the epoll reactor before importing twisted.internet.reactor.
"""
import sys


def serve(protocol_class, script):
    from twisted.internet import protocol, reactor

    if len(sys.argv) != 2:
        sys.stderr.write("usage: %s PORT\n" % script)
        return 2
    factory = protocol.Factory.forProtocol(protocol_class)
    factory.noisy = False
    reactor.listenTCP(int(sys.argv[1]), factory, backlog=4096,
                      interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()
    return 0
