#!/usr/bin/python3
"""make torture: hostile-peer scenarios against the real binaries.

    /usr/bin/python3 scripts/torture.py BUILD_DIR [SCENARIO...]

Each scenario starts its own ctwistd on 127.0.0.1 (a free port), attacks it,
checks that it kept serving a healthy client within bounded memory, stops
it by PID, and prints one line:

    scenario            numbers                                   PASS|FAIL

Everything is bounded: each scenario has a deadline, the whole run takes a
few minutes at most.  Exit status 0 when every scenario passed.  Only
loopback is used.  docs/reliability.md records a run and what each
scenario promises.
"""
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
CTWISTD = os.path.join(BUILD, "apps", "ctwistd", "ctwistd")
MiB = 1024 * 1024
LOGS = tempfile.mkdtemp(prefix="ct-torture-")  # servers' logs; kept on failure


# --------------------------------------------------------------- helpers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """ctwistd PLUGIN on a free port; stopped by PID."""

    def __init__(self, plugin, *args, workers=0, opts=()):
        self.port = free_port()
        cmd = [CTWISTD] + list(opts)
        if workers:
            cmd += ["--workers", str(workers)]
        cmd += [plugin, "--listen", "tcp:%d:interface=127.0.0.1" % self.port]
        cmd += list(args)
        self.log = open(os.path.join(LOGS, "%s-%d.log" % (plugin, self.port)), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ctwistd %s did not start" % plugin)

    def pids(self):
        """The server and its worker processes."""
        out = [self.proc.pid]
        try:
            kids = open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)).read()
            out += [int(k) for k in kids.split()]
        except OSError:
            pass
        return out

    def rss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                for line in open("/proc/%d/status" % pid):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def echo_ok(port, payload=b"healthy\n", timeout=5):
    """A healthy client: connect, send, get the same bytes back."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got == payload


def frame(header, content=b""):
    if content:
        header = dict(header, **{"content-length": len(content)})
    h = json.dumps(header).encode()
    return struct.pack(">I", len(h)) + h + content


def read_frame(s):
    """One message frame from socket s: (header dict, content), or None."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            c = s.recv(n - len(buf))
            if not c:
                return None
            buf += c
        return buf
    raw = exact(4)
    if raw is None:
        return None
    h = json.loads(exact(struct.unpack(">I", raw)[0]))
    return h, exact(int(h.get("content-length", 0))) or b""


def msg_ok(port):
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(frame({"type": "ping"}, b"ok"))
        got = read_frame(s)
        return got is not None and got[1] == b"ok"


def tcpext(name):
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for keys, vals in zip(lines[::2], lines[1::2]):
        if keys.startswith("TcpExt:"):
            d = dict(zip(keys.split()[1:], vals.split()[1:]))
            return int(d.get(name, 0))
    return 0


# ------------------------------------------------------------- scenarios

def nonreading_flood():
    """A client sends 100 MiB and never reads: the echo server stops
    reading from it (back-pressure) instead of buffering the echo."""
    srv = Server("echo")
    try:
        base = srv.rss_kib()
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.setblocking(False)
        chunk = b"x" * 65536
        sent, deadline = 0, time.monotonic() + 20
        last = time.monotonic()
        # Until 100 MiB went, or the server stopped taking bytes for 2 s.
        while sent < 100 * MiB and time.monotonic() < deadline and time.monotonic() - last < 2:
            try:
                sent += s.send(chunk)
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        growth = (srv.rss_kib() - base) / 1024
        ok = echo_ok(srv.port) and growth < 16 and srv.alive()
        s.close()
        return ok, "sent %.0f MiB before the server stopped reading; RSS +%.1f MiB; others served" % (sent / MiB, growth)
    finally:
        srv.stop()


def broadcast_nonreaders():
    """Ten 4 MiB broadcasts while 20 peers never read: recipients share one
    copy; the readers get everything; memory stays bounded."""
    srv = Server("message-echo")
    try:
        non = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
        readers = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
        time.sleep(0.2)
        base = srv.rss_kib()
        content = os.urandom(4 * MiB)
        f = frame({"type": "news", "broadcast": 1}, content)
        want = 10
        got = [0, 0, 0]
        peak = [base]

        def drain(i, sock):
            sock.settimeout(30)
            while got[i] < want:
                m = read_frame(sock)
                if m is None or m[1] != content:
                    break
                got[i] += 1

        sender = socket.create_connection(("127.0.0.1", srv.port))
        threads = [threading.Thread(target=drain, args=(i, s))
                   for i, s in enumerate(readers + [sender])]
        for t in threads:
            t.start()
        for _ in range(10):
            sender.sendall(f)
            peak[0] = max(peak[0], srv.rss_kib())
        for t in threads:
            t.join(60)
        peak[0] = max(peak[0], srv.rss_kib())
        growth = (peak[0] - base) / 1024
        ok = got[0] == want and got[1] == want and growth < 64 and msg_ok(srv.port)
        for s in non + readers + [sender]:
            s.close()
        return ok, "readers got %d/%d and %d/%d messages intact; RSS +%.1f MiB (cap 64)" % (got[0], want, got[1], want, growth)
    finally:
        srv.stop()


def slowloris():
    """200 peers trickle a header one byte every 0.5 s: each is dropped at
    the frame deadline (2 s + 1 s per 500 B here) while a healthy client is
    served."""
    srv = Server("message-echo", opts=("--frame-timeout", "2"))
    try:
        conns = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(200)]
        payload = struct.pack(">I", 1000) + b'{"type": "slow", "x": "' + b"y" * 200
        start = time.monotonic()
        closed, i = set(), 0
        served = True
        while len(closed) < len(conns) and time.monotonic() - start < 15:
            for k, c in enumerate(conns):
                if k in closed:
                    continue
                try:
                    c.send(payload[i:i + 1])
                    c.setblocking(False)
                    try:
                        data = c.recv(4096)
                        if data == b"" or b"ETIMEDOUT" in data:
                            closed.add(k)
                    except BlockingIOError:
                        pass
                    c.setblocking(True)
                except OSError:
                    closed.add(k)
            served = served and msg_ok(srv.port)
            i = min(i + 1, len(payload) - 1)
            time.sleep(0.5)
        took = time.monotonic() - start
        for c in conns:
            c.close()
        ok = len(closed) == len(conns) and served and took < 8
        return ok, "%d/%d tricklers dropped after %.1f s (deadline 2 s); others served" % (len(closed), len(conns), took)
    finally:
        srv.stop()


def connection_burst():
    """10,000 connects as fast as a client can: all accepted and echoed,
    no listen-queue overflow."""
    srv = Server("echo")
    storm = os.path.join(BUILD, "bench", "storm", "storm")
    try:
        ovf = tcpext("ListenOverflows")
        out = subprocess.run([storm, str(srv.port), "10000"], capture_output=True,
                             text=True, timeout=90)
        ovf = tcpext("ListenOverflows") - ovf
        ok = out.returncode == 0 and ovf == 0 and srv.alive()
        return ok, "%s; ListenOverflows +%d" % (out.stdout.strip() or out.stderr.strip(), ovf)
    finally:
        srv.stop()


MALFORMED = [
    b"\x00\x00\x00\x02[]",                              # header not an object
    b"\x00\x00\x00\x05{bad}",                           # not JSON
    b"\x7f\x00\x00\x00",                                # header over the limit
    struct.pack(">I", 22) + b'{"content-length": -1}',  # negative length
    struct.pack(">I", 31) + b'{"content-length": 99999999999}',  # content over the limit
    struct.pack(">I", 13) + b'{"a": [1, 2]}',           # value not string/int
]


def malformed_frames():
    """Malformed and random frames: each offender gets its owed replies, one
    error frame naming the problem and a close; others are served."""
    srv = Server("message-echo")
    try:
        errors = 0
        for bad in MALFORMED:
            with socket.create_connection(("127.0.0.1", srv.port), 5) as s:
                s.sendall(frame({"type": "ok"}, b"before") + bad)
                first = read_frame(s)
                second = read_frame(s)
                tail = s.recv(1)
                if (first and first[1] == b"before" and second and
                        second[0].get("type") == "error" and tail == b""):
                    errors += 1
        rnd = random.Random(1)
        for _ in range(300):
            with socket.create_connection(("127.0.0.1", srv.port), 5) as s:
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 512))))
        ok = errors == len(MALFORMED) and msg_ok(srv.port) and srv.alive()
        return ok, "%d/%d malformed kinds answered reply+error+close; 300 random peers; others served" % (errors, len(MALFORMED))
    finally:
        srv.stop()


def kill9_worker():
    """kill -9 of a worker under load: the supervisor restarts it and the
    port keeps answering."""
    srv = Server("echo", workers=2)
    try:
        time.sleep(0.5)
        before = srv.pids()[1:]
        stop = [False]
        fails = [0, 0]

        def load():
            while not stop[0]:
                fails[1] += 1
                try:
                    if not echo_ok(srv.port, timeout=2):
                        fails[0] += 1
                except OSError:
                    fails[0] += 1

        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.5)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = srv.pids()[1:]
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        stop[0] = True
        t.join()
        after = srv.pids()[1:]
        ok = len(after) == 2 and before[0] not in after and echo_ok(srv.port)
        return ok, "workers %s -> %s; %d of %d echoes failed around the kill" % (before, after, fails[0], fails[1])
    finally:
        srv.stop()


def halfclose_flush():
    """10 MiB sent then shutdown(SHUT_WR): all 10 MiB come back, then EOF."""
    srv = Server("echo")
    try:
        data = os.urandom(10 * MiB)
        s = socket.create_connection(("127.0.0.1", srv.port), 30)
        got = []

        def reader():
            while True:
                c = s.recv(1 << 20)
                if not c:
                    return
                got.append(c)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(30)
        back = b"".join(got)
        s.close()
        ok = back == data
        return ok, "%d of %d bytes back, then EOF" % (len(back), len(data))
    finally:
        srv.stop()


SCENARIOS = [nonreading_flood, broadcast_nonreaders, slowloris, connection_burst,
             malformed_frames, kill9_worker, halfclose_flush]


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    wanted = sys.argv[2:]
    failed = 0
    started = time.monotonic()
    for sc in SCENARIOS:
        if wanted and sc.__name__ not in wanted:
            continue
        t0 = time.monotonic()
        try:
            ok, numbers = sc()
        except Exception as e:  # a scenario that crashes fails
            ok, numbers = False, "error: %r" % (e,)
        failed += not ok
        print("%-22s %-90s %s (%.1f s)" % (sc.__name__, numbers, "PASS" if ok else "FAIL",
                                          time.monotonic() - t0), flush=True)
    print("torture: %d failed, %.0f s" % (failed, time.monotonic() - started))
    if failed:
        print("torture: server logs kept in %s" % LOGS)
    else:
        shutil.rmtree(LOGS, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
