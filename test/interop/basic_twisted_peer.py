#!/usr/bin/python3
"""The Twisted side of the framing interop tests (test_basic_*.py).

Same command line and behaviour as basic_peer.c, on Twisted's own
LineReceiver, NetstringReceiver and Int32StringReceiver:

  basic_twisted_peer.py server FRAMING MAX OUT
      listen on 127.0.0.1:0, print "PORT <n>", serve one connection
      (echo + record), exit when it ends.
  basic_twisted_peer.py client FRAMING MAX PORT IN OUT
      connect, send every message of IN, record what comes back, close
      once everything came back.

Message files hold <u32 big-endian length><bytes> records.
"""
import struct
import sys

from twisted.internet import protocol, reactor
from twisted.protocols import basic

STATUS = {"code": 0}


def read_messages(path):
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off + 4 <= len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


def write_messages(path, msgs):
    with open(path, "wb") as f:
        for m in msgs:
            f.write(struct.pack(">I", len(m)))
            f.write(m)


def make_protocol(base, max_length, client, to_send, out_path):
    class Peer(base):
        MAX_LENGTH = max_length

        def connectionMade(self):
            self.got = []
            if client:
                for m in to_send:
                    self.send(m)
                if not to_send:
                    self.transport.loseConnection()

        def send(self, m):
            if base is basic.LineReceiver:
                self.sendLine(m)
            else:
                self.sendString(m)

        def received(self, m):
            self.got.append(m)
            if not client:
                self.send(m)
            elif len(self.got) == len(to_send):
                self.transport.loseConnection()

        def lineReceived(self, line):
            self.received(line)

        def stringReceived(self, s):
            self.received(s)

        def lineLengthExceeded(self, line):
            sys.stderr.write("twisted peer: line length exceeded\n")
            STATUS["code"] = 1
            self.transport.loseConnection()

        def lengthLimitExceeded(self, length):
            sys.stderr.write("twisted peer: length limit exceeded: %d\n"
                             % length)
            STATUS["code"] = 1
            self.transport.loseConnection()

        def connectionLost(self, reason):
            write_messages(out_path, self.got)
            if getattr(self, "brokenPeer", 0):
                sys.stderr.write("twisted peer: bad netstring\n")
                STATUS["code"] = 1
            sys.stderr.write("twisted peer: received %d messages\n"
                             % len(self.got))
            if reactor.running:
                reactor.stop()

    return Peer


def main(argv):
    role, framing, max_length = argv[1], argv[2], int(argv[3])
    base = {"line": basic.LineReceiver,
            "netstring": basic.NetstringReceiver,
            "int32": basic.Int32StringReceiver}[framing]
    client = role == "client"
    to_send = read_messages(argv[5]) if client else []
    out_path = argv[6] if client else argv[4]
    proto = make_protocol(base, max_length, client, to_send, out_path)

    def timeout():
        sys.stderr.write("twisted peer: timed out\n")
        STATUS["code"] = 2
        reactor.stop()

    reactor.callLater(60, timeout)
    if client:
        class CF(protocol.ClientFactory):
            protocol = proto
            noisy = False

            def clientConnectionFailed(self, connector, reason):
                sys.stderr.write("twisted peer: connect failed: %s\n"
                                 % reason.getErrorMessage())
                STATUS["code"] = 1
                reactor.stop()

        reactor.connectTCP("127.0.0.1", int(argv[4]), CF())
    else:
        f = protocol.Factory.forProtocol(proto)
        f.noisy = False
        port = reactor.listenTCP(0, f, interface="127.0.0.1")
        print("PORT %d" % port.getHost().port, flush=True)
    reactor.run()
    return STATUS["code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
