#!/usr/bin/python3
"""Interop: a plain Python socket client (the one in docs/message-protocol.md)
talks to ctwist's message echo server, `ctwistd message-echo`.

Usage: test_message_python.py BUILD_DIR   (exit status 0 on success;
BUILD_DIR is the build tree or its test/interop directory)
"""
import json
import os
import socket
import struct
import subprocess
import sys


# --- the client from docs/message-protocol.md --------------------------------
def send(sock, header, content=b""):
    header = dict(header, **({"content-length": len(content)} if content else {}))
    h = json.dumps(header).encode("utf-8")
    sock.sendall(struct.pack(">I", len(h)) + h + content)

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk: raise EOFError("connection closed")
        buf += chunk
    return buf

def recv(sock):
    (hlen,) = struct.unpack(">I", recv_exact(sock, 4))
    header = json.loads(recv_exact(sock, hlen).decode("utf-8"))
    return header, recv_exact(sock, header.get("content-length", 0))
# -----------------------------------------------------------------------------


def find_server(build_dir):
    """apps/ctwistd/ctwistd in the build tree: ctest passes
    BUILD/test/interop, a person may pass BUILD itself."""
    d = os.path.abspath(build_dir)
    for _ in range(4):
        cand = os.path.join(d, "apps", "ctwistd", "ctwistd")
        if os.access(cand, os.X_OK):
            return cand
        d = os.path.dirname(d)
    raise SystemExit("ctwistd not found above %s" % build_dir)


def read_to_eof(sock):
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def split_frames(data):
    frames = []
    while len(data) >= 4:
        (hlen,) = struct.unpack(">I", data[:4])
        header = json.loads(data[4:4 + hlen].decode("utf-8"))
        clen = header.get("content-length", 0)
        frames.append((header, data[4 + hlen:4 + hlen + clen]))
        data = data[4 + hlen + clen:]
    return frames, data


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    build_dir = sys.argv[1] if len(sys.argv) > 1 else "build"
    proc = subprocess.Popen([find_server(build_dir), "--log-level", "error",
                             "message-echo", "--listen",
                             "tcp:0:interface=127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode()
        check(line.startswith("listening on "), "ctwistd said %r" % line)
        port = int(line.rsplit(":", 1)[1])
        check(port > 0, "server printed port %r" % port)
        a = socket.create_connection(("127.0.0.1", port), timeout=10)
        b = socket.create_connection(("127.0.0.1", port), timeout=10)

        # Empty header, no content.
        send(a, {})
        check(recv(a) == ({}, b""), "empty message echo")
        # Strings, integers, unicode, binary content.
        hdr = {"type": "chat", "n": -7, "text": "caf\u00e9 \u4e2d\u6587 \"q\"\n"}
        send(a, hdr, b"\x00\x01binary\xff")
        h, c = recv(a)
        check(c == b"\x00\x01binary\xff", "content echo")
        check(h == dict(hdr, **{"content-length": len(c)}), "header echo %r" % h)
        # Large content, several messages in one write.
        big = os.urandom(300000)
        send(a, {"i": 1}, big)
        send(a, {"i": 2})
        check(recv(a) == ({"i": 1, "content-length": len(big)}, big), "big")
        check(recv(a) == ({"i": 2}, b""), "after big")
        # Broadcast reaches both connections.
        send(b, {"broadcast": 1}, b"all")
        for s in (a, b):
            check(recv(s)[1] == b"all", "broadcast")
        # A malformed header closes that connection only, after the reply
        # to the valid frame sent before it in the same write and one error
        # frame naming the problem.
        bad = socket.create_connection(("127.0.0.1", port), timeout=10)
        h = b'{"x": 1.5}'
        ok = json.dumps({"type": "before"}).encode()
        bad.sendall(struct.pack(">I", len(ok)) + ok +
                    struct.pack(">I", len(h)) + h)
        frames, rest = split_frames(read_to_eof(bad))
        check(rest == b"", "whole frames only, then EOF")
        check(len(frames) == 2, "reply + error frame, got %r" % (frames,))
        check(frames[0] == ({"type": "before"}, b""), "owed reply first")
        err = frames[1][0]
        check(err.get("type") == "error" and err.get("code") == "EPROTO",
              "error frame %r" % err)
        check("only strings and integers" in err.get("message", ""),
              "error frame names the problem: %r" % err)
        bad.close()
        send(a, {"still": "alive"})
        check(recv(a) == ({"still": "alive"}, b""), "other connection untouched")
        a.close()
        b.close()
        print("ok: python client interoperates with ctwistd message-echo on port",
              port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
