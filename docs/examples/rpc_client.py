#!/usr/bin/python3
"""A JSON-RPC 2.0 client for ctwist's RPC server in the Python standard
library alone (socket, struct, json): the client shown in docs/rpc.md.

    python3 rpc_client.py 127.0.0.1 7000 add 1 2

Each frame is a 4-byte big-endian header length, the header (a JSON
object), then the content: one JSON-RPC request, response or batch.
"""
import json
import socket
import struct
import sys


class RpcClient:
    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.next_id = 1

    def send(self, message, deadline_ms=None):
        """Send one request, notification or batch (any JSON value)."""
        content = json.dumps(message).encode("utf-8")
        header = {"content-type": "application/json",
                  "content-length": len(content)}
        if deadline_ms is not None:
            header["deadline-ms"] = deadline_ms
        h = json.dumps(header).encode("utf-8")
        self.sock.sendall(struct.pack(">I", len(h)) + h + content)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    def recv(self):
        """The next response (or batch of responses), parsed."""
        (hlen,) = struct.unpack(">I", self._exact(4))
        header = json.loads(self._exact(hlen))
        return json.loads(self._exact(header.get("content-length", 0)))

    def request(self, method, params=None, deadline_ms=None):
        """Send a request; returns its id (answers may come in any order)."""
        msg = {"jsonrpc": "2.0", "method": method, "id": self.next_id}
        if params is not None:
            msg["params"] = params
        self.next_id += 1
        self.send(msg, deadline_ms)
        return msg["id"]

    def call(self, method, params=None, deadline_ms=None):
        """Call and wait: the result, or RuntimeError(code, message)."""
        self.request(method, params, deadline_ms)
        reply = self.recv()
        if "error" in reply:
            raise RuntimeError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def cancel(self, call_id):
        """Ask the server to cancel a call in flight (it answers -32800)."""
        self.notify("rpc.cancel", {"id": call_id})

    def close(self):
        self.sock.close()


if __name__ == "__main__":
    host, port, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = RpcClient(host, port)
    print(json.dumps(client.call(method, [json.loads(a) for a in sys.argv[4:]])))
