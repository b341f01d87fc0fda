#!/usr/bin/python3
"""Reference JSON-RPC 2.0 server on Twisted (epoll reactor) over
Int32StringReceiver: each 4-byte-length-prefixed string is one request or
batch, answered the same way.  Serves `add` (the benchmark's call) and
`echo`, with the standard errors, as ctwistd rpc does.

Usage: /usr/bin/python3 rpc_twisted.py PORT   (listens on 127.0.0.1, prints
"ready", exits on SIGTERM or SIGINT).
"""
import json
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted_serve import serve  # noqa: E402

from twisted.protocols.basic import Int32StringReceiver  # noqa: E402

METHODS = {
    "add": lambda a, b: a + b,
    "echo": lambda *a: list(a),
}


def error(code, message, id_=None):
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message},
            "id": id_}


def handle(req):
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or \
            not isinstance(req.get("method"), str):
        return error(-32600, "Invalid Request")
    fn = METHODS.get(req["method"])
    params = req.get("params", [])
    if fn is None:
        reply = error(-32601, "Method not found", req.get("id"))
    else:
        try:
            result = fn(**params) if isinstance(params, dict) else fn(*params)
            reply = {"jsonrpc": "2.0", "result": result, "id": req.get("id")}
        except TypeError:
            reply = error(-32602, "Invalid params", req.get("id"))
    return reply if "id" in req else None


class JsonRpc(Int32StringReceiver):
    MAX_LENGTH = 16 * 1024 * 1024

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def stringReceived(self, data):
        try:
            msg = json.loads(data)
        except ValueError:
            self.sendString(json.dumps(error(-32700, "Parse error")).encode())
            return
        if isinstance(msg, list):
            replies = [r for r in map(handle, msg) if r is not None] if msg \
                else error(-32600, "Invalid Request")
            if replies:
                self.sendString(json.dumps(replies).encode())
        else:
            reply = handle(msg)
            if reply is not None:
                self.sendString(json.dumps(reply, separators=(",", ":"))
                                .encode())


if __name__ == "__main__":
    sys.exit(serve(JsonRpc, "rpc_twisted.py"))
