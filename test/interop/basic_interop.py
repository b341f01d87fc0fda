"""Shared driver of the framing interop tests (test_basic_*.py).

Each test exchanges 10,000 messages of random sizes (empty and maximum-size
ones included) both ways between ctwist (basic_peer) and Twisted
(basic_twisted_peer.py): Twisted client -> ctwist echo server, then ctwist
client -> Twisted echo server.  Every process records what it received;
the SHA-256 of the sent sequence, of what the server received and of what
came back must be equal.  Peers are started with a bounded readiness
timeout and stopped by PID.
"""
import hashlib
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
TWISTED_PEER = os.path.join(HERE, "basic_twisted_peer.py")
COUNT = 10000
READY_TIMEOUT = 10.0
RUN_TIMEOUT = 40.0


def gen_messages(framing, max_length, count, seed):
    r = random.Random(seed)
    out = []
    for i in range(count):
        if i == 0 or i % 500 == 7:
            n = 0
        elif i == 1 or i % 1000 == 999:
            n = max_length
        else:
            x = r.random()
            if x < 0.70:
                n = r.randint(0, 64)
            elif x < 0.95:
                n = r.randint(0, 2048)
            else:
                n = r.randint(0, max_length)
        m = r.randbytes(n)
        if framing == "line":
            # A line cannot hold its delimiter; keep lone CR and LF out too.
            m = m.replace(b"\r", b"r").replace(b"\n", b"n")
        out.append(m)
    return out


def encode(msgs):
    return b"".join(struct.pack(">I", len(m)) + m for m in msgs)


def count_records(data):
    n, off = 0, 0
    while off + 4 <= len(data):
        (k,) = struct.unpack(">I", data[off:off + 4])
        off += 4 + k
        n += 1
    return n


def start(cmd, ready):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None)
    if not ready:
        return p, None
    deadline = time.monotonic() + READY_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None:
            stop(p)
            raise RuntimeError("%s did not become ready" % cmd[:3])
        rl, _, _ = select.select([p.stdout], [], [], left)
        if rl:
            c = os.read(p.stdout.fileno(), 1)
            if not c:
                continue
            line += c
    if not line.startswith(b"PORT "):
        stop(p)
        raise RuntimeError("unexpected readiness line %r" % line)
    return p, int(line.split()[1])


def stop(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()


def wait(procs, deadline):
    for p in procs:
        left = deadline - time.monotonic()
        try:
            p.wait(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            for q in procs:
                stop(q)
            raise RuntimeError("peers timed out")


def one_direction(title, server_cmd, client_cmd, msgs_file, srv_out, cli_out,
                  expected, count):
    t0 = time.monotonic()
    srv, port = start(server_cmd, True)
    try:
        cli, _ = start(client_cmd(port), False)
        wait([cli, srv], time.monotonic() + RUN_TIMEOUT)
    finally:
        stop(srv)
    ok = True
    if cli.returncode != 0 or srv.returncode != 0:
        print("%s: exit status client %s, server %s"
              % (title, cli.returncode, srv.returncode))
        ok = False
    for what, path in (("server received", srv_out),
                       ("client got back", cli_out)):
        with open(path, "rb") as f:
            data = f.read()
        d = hashlib.sha256(data).hexdigest()
        n = count_records(data)
        same = d == expected
        print("%s: %s %d messages, sha256 %s %s"
              % (title, what, n, d[:16], "ok" if same else "MISMATCH"))
        ok = ok and same and n == count
    print("%s: %.1f s" % (title, time.monotonic() - t0))
    return ok


def main(framing, max_length, seed=5):
    if len(sys.argv) < 2:
        print("usage: %s BUILD_DIR_OF_TEST_INTEROP" % sys.argv[0])
        return 2
    peer = os.path.join(os.path.abspath(sys.argv[1]), "basic_peer")
    if not os.access(peer, os.X_OK):
        print("missing %s" % peer)
        return 1
    tmp = tempfile.mkdtemp(prefix="ct-interop-%s-" % framing)
    try:
        msgs = gen_messages(framing, max_length, COUNT, seed)
        blob = encode(msgs)
        msgs_file = os.path.join(tmp, "messages.bin")
        with open(msgs_file, "wb") as f:
            f.write(blob)
        expected = hashlib.sha256(blob).hexdigest()
        print("%s: %d messages, %d bytes, max %d, sha256 %s"
              % (framing, len(msgs), len(blob) - 4 * len(msgs), max_length,
                 expected[:16]))
        m = str(max_length)
        ok1 = one_direction(
            "Twisted client -> ctwist server",
            [peer, "server", framing, m, os.path.join(tmp, "s1.bin")],
            lambda port: [PY, TWISTED_PEER, "client", framing, m, str(port),
                          msgs_file, os.path.join(tmp, "c1.bin")],
            msgs_file, os.path.join(tmp, "s1.bin"), os.path.join(tmp, "c1.bin"),
            expected, len(msgs))
        ok2 = one_direction(
            "ctwist client -> Twisted server",
            [PY, TWISTED_PEER, "server", framing, m,
             os.path.join(tmp, "s2.bin")],
            lambda port: [peer, "client", framing, m, str(port), msgs_file,
                          os.path.join(tmp, "c2.bin")],
            msgs_file, os.path.join(tmp, "s2.bin"), os.path.join(tmp, "c2.bin"),
            expected, len(msgs))
        return 0 if ok1 and ok2 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
