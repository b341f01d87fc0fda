#!/usr/bin/python3
"""End-to-end tests of ctwistd: every bundled plugin, the example plugin,
the loader's error paths, logging, policies, pidfile, daemon mode.

usage: test_ctwistd.py CTWISTD UPPER_SO BAD_ABI_SO NO_SYMBOL_SO

Servers listen on 127.0.0.1 port 0; the test reads the printed address.
Every wait is bounded; nothing asserts on timing.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

CTWISTD, UPPER, BAD_ABI, NO_SYMBOL = sys.argv[1:5]
LOCAL = "tcp:0:interface=127.0.0.1"
SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:")
TMP = tempfile.mkdtemp(prefix="ctwistd-test-")
SERVERS = []  # every Server started; killed after each test if still alive


class Server:
    """A running ctwistd; `addrs` holds the (host, port) or path it printed."""

    def __init__(self, args, nlisten=1):
        self.proc = subprocess.Popen([CTWISTD] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        SERVERS.append(self)
        self.out = b""
        self.addrs = []
        deadline = time.monotonic() + 15
        while len(self.addrs) < nlisten:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("no 'listening on' within 15 s: %r" %
                                     self.out)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                _, err = self.proc.communicate(timeout=10)
                raise AssertionError("ctwistd exited early (%s): %s" %
                                     (self.proc.returncode, err.decode()))
            self.out += chunk
            self.addrs = []
            for m in re.finditer(rb"listening on (\S+)\n", self.out):
                a = m.group(1).decode()
                if a.startswith("unix:"):
                    self.addrs.append(a[5:])
                else:
                    host, port = a.rsplit(":", 1)
                    self.addrs.append((host, int(port)))

    def connect(self, i=0):
        a = self.addrs[i]
        fam = socket.AF_UNIX if isinstance(a, str) else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(a)
        return s

    def stop(self, sig=signal.SIGTERM):
        """Signal, wait (bounded), check a clean exit; returns stderr."""
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=15)
        err = err.decode(errors="replace")
        check_sanitizer(err)
        assert self.proc.returncode == 0, \
            "exit status %s: %s" % (self.proc.returncode, err)
        return err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def check_sanitizer(err):
    assert not SANITIZER.search(err), "sanitizer report:\n" + err


def recv_all(s, limit=1 << 20):
    data = b""
    while len(data) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed after %d of %d bytes" % (len(data), n)
        data += chunk
    return data


def fails(args, *needles, status=None):
    """ctwistd must exit non-zero with every needle in its stderr."""
    p = subprocess.run([CTWISTD] + args, capture_output=True, timeout=15)
    err = p.stderr.decode(errors="replace")
    check_sanitizer(err)
    assert p.returncode != 0, "exit 0 for %r" % args
    if status is not None:
        assert p.returncode == status, "status %d, wanted %d: %s" % (
            p.returncode, status, err)
    for n in needles:
        assert n in err, "%r not in stderr: %s" % (n, err)
    assert "listening on" not in p.stdout.decode(), p.stdout


# ------------------------------------------------------------------ tests


def test_echo_pidfile_graceful_stop():
    pidfile = os.path.join(TMP, "echo.pid")
    srv = Server(["--pidfile", pidfile, "echo", "--listen", LOCAL])
    with open(pidfile) as f:
        assert int(f.read()) == srv.proc.pid
    s = srv.connect()
    s.sendall(b"hello, world\r\n")
    assert recv_exact(s, 14) == b"hello, world\r\n"
    # SIGTERM with a connection open: it is closed (EOF), the process
    # exits 0 and the pidfile is gone.
    err = srv.stop()
    assert recv_all(s) == b""
    s.close()
    assert not os.path.exists(pidfile), "pidfile left behind"
    assert "stopping" in err and "stopped" in err, err


def wait_stderr(srv, needle, secs=15):
    """Read the server's stderr until `needle` appears (bounded)."""
    err = b""
    deadline = time.monotonic() + secs
    while needle.encode() not in err:
        left = deadline - time.monotonic()
        assert left > 0, "%r not in stderr within %d s: %r" % (needle, secs,
                                                               err)
        r, _, _ = select.select([srv.proc.stderr], [], [], left)
        if r:
            chunk = os.read(srv.proc.stderr.fileno(), 65536)
            assert chunk, "stderr closed before %r: %r" % (needle, err)
            err += chunk
    return err.decode(errors="replace")


def tcp_queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the loopback socket local_port ->
    remote_port from /proc/net/tcp: bytes not yet acknowledged by the peer,
    and bytes received but not yet read by the process; None if absent."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            lport = int(fields[1].split(":")[1], 16)
            rport = int(fields[2].split(":")[1], 16)
            if lport == local_port and rport == remote_port:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def flood_until_paused(srv):
    """Connect to an echo server and send without ever reading until the
    server holds more echoed bytes in its own output buffer than its
    high-water mark (256 KiB), so it has stopped reading and that output
    cannot leave.  The amount is exact from /proc/net/tcp: what the server
    has read and echoed (sent, less what waits in the client's send queue
    and the server's receive queue) less what the kernel took (the server's
    send queue and the client's receive queue).  Returns the socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(srv.addrs[0])
    s.setblocking(False)
    sport, cport = srv.addrs[0][1], s.getsockname()[1]
    chunk = b"x" * 65536
    sent = 0
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the server never paused"
        try:
            sent += s.send(chunk)
            continue
        except BlockingIOError:
            pass
        server, client = tcp_queues(sport, cport), tcp_queues(cport, sport)
        if server and client:
            held = sent - client[0] - server[1] - server[0] - client[1]
            if held > 256 * 1024:
                return s
        select.select([], [s], [], 0.01)  # wait for room to send more


def test_second_signal_aborts_the_graceful_stop():
    # A client that floods an echo server and never reads keeps its
    # connection flushing: the graceful stop would wait the whole
    # --shutdown-timeout (an hour).
    # The kernel can still take the held output after the first signal
    # (the server's send buffer grows by autotuning), and then the graceful
    # stop ends by itself before the second signal: that attempt proves
    # nothing, so it is made again (at most 3 times per mode).
    for workers in ([], ["--workers", "1"]):
        for attempt in range(3):
            srv = Server(workers + ["--shutdown-timeout", "3600", "echo",
                                    "--listen", LOCAL])
            s = flood_until_paused(srv)
            srv.proc.send_signal(signal.SIGTERM)
            wait_stderr(srv, "connection(s)")  # the stop is under way
            srv.proc.send_signal(signal.SIGTERM)
            _, err = srv.proc.communicate(timeout=30)  # far below an hour
            err = err.decode(errors="replace")
            s.close()
            check_sanitizer(err)
            assert srv.proc.returncode == 0, (srv.proc.returncode, err)
            drained_first = ("all connections closed" in err and
                             "aborted 0 connection(s)" in err)
            if not drained_first or attempt == 2:
                break
        assert "aborted 1 connection(s)" in err, err


def test_sigint_stops_too():
    srv = Server(["echo", "--listen", LOCAL])
    srv.stop(signal.SIGINT)


def test_discard():
    srv = Server(["discard", "--listen", LOCAL])
    s = srv.connect()
    s.sendall(b"x" * 100000)
    s.settimeout(0.2)
    try:
        data = s.recv(10)
        assert False, "discard answered %r" % data
    except socket.timeout:
        pass
    s.close()
    srv.stop()


def test_daytime():
    srv = Server(["daytime", "--listen", LOCAL])
    s = srv.connect()
    data = recv_all(s).decode()
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\r\n",
                        data), repr(data)
    s.close()
    srv.stop()


def test_qotd_default_and_option():
    srv = Server(["qotd", "--listen", LOCAL])
    s = srv.connect()
    assert recv_all(s) == b"An apple a day keeps the doctor away.\r\n"
    srv.stop()
    srv = Server(["qotd", "--quote", "Simple is better.", "--listen", LOCAL])
    s = srv.connect()
    assert recv_all(s) == b"Simple is better.\r\n"
    srv.stop()
    srv = Server(["qotd", "--listen", LOCAL, "--quote=Now is better."])
    s = srv.connect()
    assert recv_all(s) == b"Now is better.\r\n"
    srv.stop()


def test_chargen():
    srv = Server(["chargen", "--listen", LOCAL])
    s = srv.connect()
    data = recv_exact(s, 20000)
    noise = (b"@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~ "
             b"!\"#$%&?")
    assert data == (noise * (20000 // len(noise) + 1))[:20000]
    s.close()
    # Also stop while a chargen client is connected and reading.
    s = srv.connect()
    recv_exact(s, 1000)
    srv.proc.send_signal(signal.SIGTERM)
    recv_all(s, limit=1 << 30)  # drains until the server closes
    _, err = srv.proc.communicate(timeout=15)
    check_sanitizer(err.decode(errors="replace"))
    assert srv.proc.returncode == 0


def test_two_endpoints_tcp_and_unix():
    path = os.path.join(TMP, "echo.sock")
    srv = Server(["echo", "--listen", LOCAL, "--listen", "unix:" + path],
                 nlisten=2)
    for i in (0, 1):
        s = srv.connect(i)
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        s.close()
    srv.stop()
    assert not os.path.exists(path), "unix socket file left behind"


def test_upper_plugin():
    srv = Server(["--plugin", UPPER, "--listen", LOCAL])
    s = srv.connect()
    s.sendall(b"hello\r\nMixed Case 123\r\n")
    assert recv_exact(s, 23) == b"HELLO\r\nMIXED CASE 123\r\n"
    # one byte at a time
    for b in b"abc\r\n":
        s.sendall(bytes([b]))
    assert recv_exact(s, 5) == b"ABC\r\n"
    s.close()
    srv.stop()


def test_upper_plugin_options():
    srv = Server(["--plugin", UPPER, "--listen", LOCAL, "--max-length", "4",
                  "--goodbye-after", "0.2"])
    s = srv.connect()
    s.sendall(b"abcd\r\n")
    assert recv_exact(s, 6) == b"ABCD\r\n"
    s.sendall(b"abcdefgh\r\n")  # over the limit: closed
    assert recv_all(s) == b""
    s.close()
    s = srv.connect()  # idle: BYE, then closed
    assert recv_all(s) == b"BYE\r\n"
    s.close()
    srv.stop()


def test_plugin_help():
    p = subprocess.run([CTWISTD, "--plugin", UPPER, "--help"],
                       capture_output=True, timeout=15)
    assert p.returncode == 0 and b"--max-length" in p.stdout, p
    # The usage line works as printed: it names the plugin by its path.
    m = re.search(rb"usage: (ctwistd .*)\n", p.stdout)
    assert m, p.stdout
    words = m.group(1).decode().split()
    assert words[1:3] == ["--plugin", UPPER], words
    srv = Server([words[1], words[2], "--listen", LOCAL])
    s = srv.connect()
    s.sendall(b"ok\r\n")
    assert recv_exact(s, 4) == b"OK\r\n"
    s.close()
    srv.stop()
    p = subprocess.run([CTWISTD, "echo", "--help"], capture_output=True,
                       timeout=15)
    assert p.returncode == 0 and b"usage: ctwistd echo --listen" in p.stdout, p
    p = subprocess.run([CTWISTD, "--help"], capture_output=True, timeout=15)
    assert p.returncode == 0 and b"chargen" in p.stdout, p


def test_errors():
    fails(["echo", "--listen", "tcp:notaport"], "tcp:notaport")
    fails(["echo", "--listen", "bogus:1"], "bogus:1")
    fails(["nosuch", "--listen", LOCAL], "unknown plugin 'nosuch'", status=2)
    fails(["--plugin", os.path.join(TMP, "missing.so"), "--listen", LOCAL],
          "cannot load plugin", "missing.so")
    fails(["--plugin", BAD_ABI, "--listen", LOCAL], "ABI version 42",
          "supports 1")
    # A bare file name is looked up in the library path: say so.
    cwd = os.getcwd()
    os.chdir(os.path.dirname(UPPER))
    try:
        fails(["--plugin", os.path.basename(UPPER), "--listen", LOCAL],
              "cannot load plugin", "--plugin ./%s" % os.path.basename(UPPER))
    finally:
        os.chdir(cwd)
    fails(["--plugin", NO_SYMBOL, "--listen", LOCAL], "ctwist_plugin")
    fails(["echo", "--listen", LOCAL, "--bogus"],
          "unknown option '--bogus'", status=2)
    fails(["qotd", "--listen", LOCAL, "--quote"], "--quote needs a value",
          status=2)
    fails(["--plugin", UPPER, "--listen", LOCAL, "--max-length", "abc"],
          "--max-length", "not an integer", status=2)
    fails(["--plugin", UPPER, "--listen", LOCAL, "--max-length", "0"],
          "out of range", status=2)
    fails(["echo"], "no --listen", status=2)
    fails(["--frobnicate", "echo", "--listen", LOCAL],
          "unknown option '--frobnicate'", status=2)
    fails([], "no plugin", status=2)
    fails(["--log-format", "xml", "echo", "--listen", LOCAL], "xml", status=2)
    fails(["--idle-timeout", "-1", "echo", "--listen", LOCAL],
          "--idle-timeout", status=2)
    fails(["--frame-timeout", "0", "echo", "--listen", LOCAL],
          "--frame-timeout", status=2)
    # the port is taken: the second one fails and names it
    srv = Server(["echo", "--listen", LOCAL])
    port = srv.addrs[0][1]
    fails(["echo", "--listen", "tcp:%d:interface=127.0.0.1" % port],
          "tcp:%d" % port)
    # a pidfile held by a live process
    pidfile = os.path.join(TMP, "busy.pid")
    with open(pidfile, "w") as f:
        f.write("%d\n" % srv.proc.pid)
    fails(["--pidfile", pidfile, "echo", "--listen", LOCAL], "pidfile",
          "another process")
    assert os.path.exists(pidfile)
    srv.stop()


def test_pidfile_is_locked():
    import fcntl
    # A pidfile locked by someone else is refused, whatever it contains
    # (here: nothing, as a process that has just created it).
    pidfile = os.path.join(TMP, "locked.pid")
    with open(pidfile, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        fails(["--pidfile", pidfile, "echo", "--listen", LOCAL], "pidfile",
              "another process")
    # A stale, unlocked pidfile of a dead process is taken over.
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(pidfile, "w") as f:
        f.write("%d\n" % dead.pid)
    srv = Server(["--pidfile", pidfile, "echo", "--listen", LOCAL])
    with open(pidfile) as f:
        assert int(f.read()) == srv.proc.pid
    # Several starts at once with one pidfile: exactly one runs.
    racers = [subprocess.Popen([CTWISTD, "--pidfile", pidfile + "2", "echo",
                                "--listen", LOCAL], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE) for _ in range(4)]
    outs = []
    for p in racers:
        # The losers exit by themselves; read the winner's first line only.
        line = p.stdout.readline()
        outs.append((p, line))
    winners = [p for p, line in outs if line.startswith(b"listening on")]
    assert len(winners) == 1, [(p.poll(), line) for p, line in outs]
    for p, line in outs:
        if p is not winners[0]:
            _, err = p.communicate(timeout=15)
            assert p.returncode == 1 and b"another process" in err, err
    with open(pidfile + "2") as f:
        assert int(f.read()) == winners[0].pid
    winners[0].send_signal(signal.SIGTERM)
    winners[0].communicate(timeout=15)
    assert winners[0].returncode == 0
    srv.stop()
    assert not os.path.exists(pidfile)


def test_json_log():
    log = os.path.join(TMP, "log.json")
    srv = Server(["--logfile", log, "--log-format", "json", "echo",
                  "--listen", LOCAL])
    s = srv.connect()
    s.sendall(b"x")
    recv_exact(s, 1)
    s.close()
    err = srv.stop()
    assert err == "", "log went to stderr: " + err
    events = []
    with open(log) as f:
        for line in f:
            events.append(json.loads(line))
    assert events, "empty log"
    for ev in events:
        assert {"time", "level", "module", "message"} <= set(ev), ev
    msgs = [ev["message"] for ev in events]
    assert any("listening on 127.0.0.1:" in m for m in msgs), msgs
    assert any("stopped" in m for m in msgs), msgs


def test_text_log_level():
    log = os.path.join(TMP, "log.txt")
    srv = Server(["--logfile", log, "--log-level", "warn", "echo",
                  "--listen", LOCAL])
    srv.stop()
    with open(log) as f:
        text = f.read()
    assert "[info]" not in text, text
    log = os.path.join(TMP, "log2.txt")
    srv = Server(["--logfile", log, "echo", "--listen", LOCAL])
    srv.stop()
    with open(log) as f:
        text = f.read()
    assert "[info] ctwistd: echo listening on" in text, text


def test_idle_timeout_policy():
    srv = Server(["--idle-timeout", "0.2", "echo", "--listen", LOCAL])
    s = srv.connect()
    s.sendall(b"a")
    assert recv_exact(s, 1) == b"a"
    assert recv_all(s) == b""  # closed once idle
    s.close()
    srv.stop()


def test_message_echo_frame_timeout():
    srv = Server(["--frame-timeout", "0.3", "message-echo", "--listen", LOCAL])
    s = srv.connect()
    frame = b"\0\0\0\x0f" + b'{"type":"ping"}'
    s.sendall(frame)
    assert recv_exact(s, len(frame)) == frame  # echoed
    s.sendall(frame[:6])  # a frame that never completes
    data = recv_all(s)  # an error frame, then EOF after ~0.3 s
    assert b'"type":"error"' in data and b'"code":"ETIMEDOUT"' in data, data
    s.close()
    srv.stop()


def test_max_connections_policy():
    srv = Server(["--max-connections", "1", "echo", "--listen", LOCAL])
    a = srv.connect()
    a.sendall(b"1")
    assert recv_exact(a, 1) == b"1"
    b = srv.connect()  # refused: closed at once
    try:
        assert recv_all(b) == b""
    except ConnectionResetError:
        pass
    a.sendall(b"2")
    assert recv_exact(a, 1) == b"2"
    a.close()
    b.close()
    srv.stop()


def test_daemon():
    pidfile = os.path.join(TMP, "daemon.pid")
    log = os.path.join(TMP, "daemon.log")
    p = subprocess.run([CTWISTD, "--daemon", "--pidfile", pidfile,
                        "--logfile", log, "echo", "--listen", LOCAL],
                       capture_output=True, timeout=15)
    assert p.returncode == 0, p
    m = re.search(rb"listening on 127.0.0.1:(\d+)", p.stdout)
    assert m, p
    with open(pidfile) as f:
        pid = int(f.read())
    try:
        s = socket.create_connection(("127.0.0.1", int(m.group(1))), 10)
        s.sendall(b"daemon")
        assert recv_exact(s, 6) == b"daemon"
        s.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(pidfile), "daemon did not remove its pidfile"
    # A daemon that cannot start reports it and exits non-zero.
    p = subprocess.run([CTWISTD, "--daemon", "echo", "--listen",
                        "tcp:notaport"], capture_output=True, timeout=15)
    assert p.returncode != 0 and b"tcp:notaport" in p.stdout, p


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def test_workers():
    pidfile = os.path.join(TMP, "workers.pid")
    srv = Server(["--workers", "2", "--pidfile", pidfile, "echo", "--listen",
                  LOCAL])
    with open(pidfile) as f:
        assert int(f.read()) == srv.proc.pid
    kids = children(srv.proc.pid)
    assert len(kids) == 2, kids
    for i in range(6):
        s = srv.connect()
        s.sendall(b"w%d" % i)
        assert recv_exact(s, 2) == b"w%d" % i
        s.close()
    # A crashed worker is replaced.
    os.kill(kids[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = children(srv.proc.pid)
        if len(now) == 2 and kids[0] not in now:
            break
        time.sleep(0.05)
    now = children(srv.proc.pid)
    assert len(now) == 2 and kids[0] not in now, (kids, now)
    for i in range(6):
        s = srv.connect()
        s.sendall(b"again")
        assert recv_exact(s, 5) == b"again"
        s.close()
    # SIGTERM stops them all; a connection open in a worker is closed.
    s = srv.connect()
    s.sendall(b"x")
    recv_exact(s, 1)
    err = srv.stop()
    assert recv_all(s) == b""
    for k in now:
        assert not os.path.exists("/proc/%d" % k) or \
            open("/proc/%d/stat" % k).read().split()[2] == "Z", k
    assert not os.path.exists(pidfile)
    assert "restarting" in err, err
    fails(["--workers", "2", "echo", "--listen", "unix:" +
           os.path.join(TMP, "w.sock")], "--workers needs tcp", status=2)
    fails(["--workers", "0", "echo", "--listen", LOCAL], "--workers",
          status=2)
    fails(["--workers", "2", "echo", "--listen", LOCAL, "--bogus"],
          "unknown option '--bogus'", status=2)
    fails(["--workers", "2", "echo", "--listen", "tcp:notaport"],
          "tcp:notaport")


def main():
    tests = [(k, v) for k, v in globals().items()
             if k.startswith("test_") and callable(v)]
    only = os.environ.get("CTWISTD_TEST")
    failed = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            fn()
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
        except Exception:
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc()
        for srv in SERVERS:
            srv.kill()
        SERVERS.clear()
        sys.stdout.flush()
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)  # the test's scratch directory
    sys.exit(rc)
