#!/usr/bin/env python3
"""End-to-end tests of ct-hub and ct-filer on loopback.

usage: test_hub.py CT_HUB CT_FILER SCENARIO
SCENARIO: messaging | slow-consumer | transfer | resume | corrupt | daemon |
          terminal

Every wait is on a condition (a line printed by a process, a /proc
state, a file), bounded by a timeout; nothing sleeps for a fixed time.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HUB = FILER = SCENARIO = None  # set by main, or by an importer (bench/hub)
TIMEOUT = float(os.environ.get("CT_TEST_TIMEOUT", "30"))
procs = []


def fail(msg):
    print("FAIL:", msg, flush=True)
    for p in procs:
        p.dump()
    sys.exit(1)


class Proc:
    """A child whose stdout and stderr lines are collected by threads."""

    def __init__(self, name, args, env=None, cwd=None):
        self.name = name
        self.lines = []  # (stream, line)
        self.cv = threading.Condition()
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=e, cwd=cwd)
        for stream, f in (("out", self.p.stdout), ("err", self.p.stderr)):
            threading.Thread(target=self._read, args=(stream, f),
                             daemon=True).start()
        procs.append(self)

    def _read(self, stream, f):
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cv:
                self.lines.append((stream, line))
                self.cv.notify_all()
        with self.cv:
            self.lines.append((stream, None))
            self.cv.notify_all()

    def mark(self):
        with self.cv:
            return len(self.lines)

    def wait(self, pattern, since=0, timeout=TIMEOUT, stream=None):
        """The first line at or after index `since` matching `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(since, len(self.lines)):
                    s, line = self.lines[i]
                    if line is not None and (stream is None or s == stream):
                        m = rx.search(line)
                        if m:
                            return m
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("%s: no line matching %r within %.0f s"
                         % (self.name, pattern, timeout))
                self.cv.wait(left)

    def wait_count(self, pattern, n, since=0, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.count(pattern, since) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("%s: fewer than %d lines matching %r"
                         % (self.name, n, pattern))
                self.cv.wait(left)

    def count(self, pattern, since=0):
        rx = re.compile(pattern)
        with self.cv:
            return sum(1 for _, l in self.lines[since:]
                       if l is not None and rx.search(l))

    def cmd(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def dump(self):
        print("---- %s (rc %s)" % (self.name, self.p.poll()))
        with self.cv:
            for s, l in self.lines[-60:]:
                if l is not None:
                    print("  %s| %s" % (s, l))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_hub(*extra):
    port = free_port()
    hub = Proc("hub", [HUB, "--listen", "tcp:%d:interface=127.0.0.1" % port]
               + list(extra))
    hub.wait(r"^ready$")
    return hub, "tcp:host=127.0.0.1:port=%d" % port


def start_filer(name, hub_ep, tmp, interval="0.2", env=None, extra=()):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "in"), exist_ok=True)
    os.makedirs(os.path.join(d, "share"), exist_ok=True)
    f = Proc(name, [FILER, "--hub", hub_ep, "--name", name,
                    "--report-interval", interval,
                    "--dir", os.path.join(d, "in"),
                    "--share", os.path.join(d, "share")] + list(extra),
             env=env)
    m = f.wait(r"joined the hub as (\d+)")
    f.id = int(m.group(1))
    f.dir = d
    return f


def wait_members(f, n):
    """Ask `list` until the hub reports n members."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        mark = f.mark()
        f.cmd("list")
        m = f.wait(r"^(\d+) members:", since=mark)
        if int(m.group(1)) == n:
            return
        if time.monotonic() > deadline:
            fail("%s: expected %d members, got %s" % (f.name, n, m.group(1)))
        # the next answer comes after another round trip: no sleep needed


def hub_stats(f):
    mark = f.mark()
    f.cmd("stats")
    line = f.wait(r"^hub stats:", since=mark).string
    return {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}


def rss_kib(pid, key):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def make_file(path, mib):
    block = bytearray(os.urandom(1 << 20))  # one buffer, rewritten in place
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(mib):
            block[0] = i & 0xff
            os.write(fd, block)
    finally:
        os.close(fd)
    return sha256_file(path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


# ---------------------------------------------------------------- scenarios

def messaging(tmp):
    hub, ep = start_hub("--broadcast-interval", "0.2")
    fs = [start_filer("f%d" % i, ep, tmp) for i in range(5)]
    for f in fs:
        wait_members(f, 5)
    hub.wait(r"join: member \d+ \(f4\).*; 5 alive", stream="err")
    # list shows every name and a listening endpoint
    mark = fs[0].mark()
    fs[0].cmd("list")
    fs[0].wait(r"^5 members:", since=mark)
    for f in fs:
        fs[0].wait(r"^  %d %s tcp:host=127\.0\.0\.1:port=\d+" % (f.id, f.name),
                   since=mark)
    # unicast
    marks = [f.mark() for f in fs]
    fs[0].cmd("send %d hello one" % fs[1].id)
    fs[1].wait(r"^send from %d \(f0\): hello one$" % fs[0].id, marks[1])
    # multicast to 2 and 3
    fs[0].cmd("multicast %d,%d hello some" % (fs[2].id, fs[3].id))
    fs[2].wait(r"^multicast from %d \(f0\): hello some$" % fs[0].id, marks[2])
    fs[3].wait(r"^multicast from %d \(f0\): hello some$" % fs[0].id, marks[3])
    # broadcast reaches everyone else
    fs[1].cmd("broadcast hello all")
    for i in (0, 2, 3, 4):
        fs[i].wait(r"^broadcast from %d \(f1\): hello all$" % fs[1].id,
                   marks[i])
    # a marker sent after them proves f4 got no multicast, f1 no broadcast
    # of its own
    fs[0].cmd("send %d marker" % fs[4].id)
    fs[4].wait(r"^send from \d+ \(f0\): marker$", marks[4])
    if fs[4].count(r"hello some", marks[4]) or fs[1].count(r"hello all",
                                                           marks[1]):
        fail("a message reached a member it was not addressed to")
    # bad requests get an error, the connection stays
    m = fs[0].mark()
    fs[0].cmd("send 9999 nobody")
    fs[0].wait(r"error from the hub: no member 9999", m)
    # a direct connection, then a direct message
    m = fs[1].mark()
    fs[0].cmd("connect %d" % fs[1].id)
    fs[0].wait(r"connected directly to %d \(f1\)" % fs[1].id)
    fs[1].wait(r"peer %d \(f0\) connected directly" % fs[0].id, m)
    fs[0].cmd("send %d over the wire" % fs[1].id)
    fs[1].wait(r"^direct message from %d \(f0\): over the wire$" % fs[0].id, m)
    # a member that stops reporting (and everything else: SIGSTOP) is
    # dropped after 3 intervals; the others see the roster shrink
    m = hub.mark()
    os.kill(fs[4].p.pid, signal.SIGSTOP)
    hub.wait(r"dropping member %d \(f4\): no report" % fs[4].id, m)
    hub.wait(r"leave: member %d \(f4\).*; 4 alive" % fs[4].id, m)
    wait_members(fs[0], 4)
    st = hub_stats(fs[0])
    if st["silent-drops"] != 1 or st["members"] != 4:
        fail("stats after a silent member: %r" % st)
    m4 = fs[4].mark()
    os.kill(fs[4].p.pid, signal.SIGCONT)
    # it reconnects with back-off and joins again
    fs[4].wait(r"lost the hub", m4)
    fs[4].wait(r"joined the hub as", m4)
    wait_members(fs[0], 5)
    for f in fs + [hub]:
        f.stop()
        if f.p.returncode not in (0, -15):
            fail("%s exited with %s" % (f.name, f.p.returncode))


def slow_consumer(tmp):
    # a member that never reads: raw socket, says hello, never recv()s;
    # the hub's limits (hard 4 MiB; soft 1 MiB for 0.5 s) disconnect it
    # while a normal member keeps receiving.
    hub, ep = start_hub("--broadcast-interval", "5", "--output-hard-limit",
                        "4M", "--output-soft-limit", "1M",
                        "--output-soft-seconds", "0.5")
    # reports every second: the flood below must not make them late
    a = start_filer("a", ep, tmp, interval="1")
    b = start_filer("b", ep, tmp, interval="1")
    port = int(ep.rsplit("=", 1)[1])
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def send(h, content=b""):
        if content:
            h = dict(h, **{"content-length": len(content)})
        j = json.dumps(h).encode()
        s.sendall(struct.pack(">I", len(j)) + j + content)

    send({"type": "hello", "name": "sloth", "report-interval-ms": 60000})
    hub.wait(r"join: member \d+ \(sloth\)", stream="err")
    wait_members(a, 3)
    # a floods broadcasts of 60 KiB; b reads them, sloth does not
    payload = "x" * 60000
    m = hub.mark()
    mb = b.mark()
    sent = 0
    ma = a.mark()
    while hub.count(r"slow consumer: member \d+ \(sloth\)", m) == 0:
        for _ in range(20):
            a.cmd("broadcast %d %s" % (sent, payload[:3000]))
            sent += 1
        a.wait_count(r"^sent$", sent, ma)
        if sent > 20000:
            fail("the slow consumer was never disconnected")
    hub.wait(r"leave: member \d+ \(sloth\)", m)
    # b keeps receiving: the last broadcast and one after the drop
    b.wait(r"^broadcast from %d \(a\): %d " % (a.id, sent - 1), mb)
    a.cmd("broadcast after-drop")
    b.wait(r"^broadcast from %d \(a\): after-drop$" % a.id, mb)
    st = hub_stats(a)
    if st["slow-consumer-drops"] != 1 or st["members"] != 2:
        fail("stats after a slow consumer: %r" % st)
    s.close()
    for p in (a, b, hub):
        p.stop()


def transfer_setup(tmp, sender_env=None):
    hub, ep = start_hub("--broadcast-interval", "0.5")
    snd = start_filer("snd", ep, tmp, env=sender_env)
    rcv = start_filer("rcv", ep, tmp, interval="0.5")
    wait_members(rcv, 2)
    return hub, ep, snd, rcv


def transfer(tmp):
    hub, ep, snd, rcv = transfer_setup(tmp)
    src = os.path.join(snd.dir, "share", "big.bin")
    digest = make_file(src, 200)
    base_r = rss_kib(rcv.p.pid, "VmRSS")
    base_s = rss_kib(snd.p.pid, "VmRSS")
    m = rcv.mark()
    rcv.cmd("get %d big.bin" % snd.id)
    line = rcv.wait(r"transfer #\d+ get big\.bin from \d+: (\w+)", m,
                    timeout=120)
    if line.group(1) != "done":
        fail("transfer: %s" % line.string)
    out = os.path.join(rcv.dir, "in", "big.bin")
    if sha256_file(out) != digest or digest not in line.string:
        fail("digest mismatch after the transfer")
    if os.path.exists(os.path.join(rcv.dir, "in", ".big.bin.ctpart")):
        fail("the part file is still there")
    snd.wait(r"transfer #\d+ put big\.bin to \d+: done")
    grow_r = rss_kib(rcv.p.pid, "VmHWM") - base_r
    grow_s = rss_kib(snd.p.pid, "VmHWM") - base_s
    print("RSS growth: receiver %d KiB, sender %d KiB" % (grow_r, grow_s))
    if grow_r > 16 * 1024 or grow_s > 16 * 1024:
        fail("peak RSS grew by more than 16 MiB")
    # put: the sender offers, the receiver fetches; the hub may go away
    # meanwhile since the transfer is peer to peer
    small = os.path.join(tmp, "put.bin")
    d2 = make_file(small, 8)
    m = rcv.mark()
    hub.stop()
    snd.cmd("put %d %s" % (rcv.id, small))
    rcv.wait(r"transfer #\d+ get put\.bin from \d+: done", m)
    if sha256_file(os.path.join(rcv.dir, "in", "put.bin")) != d2:
        fail("digest mismatch after put")
    for p in (snd, rcv):
        p.stop()


def resume(tmp):
    hub, ep, snd, rcv = transfer_setup(tmp)
    src = os.path.join(snd.dir, "share", "big.bin")
    digest = make_file(src, 200)
    part = os.path.join(rcv.dir, "in", ".big.bin.ctpart")
    m = rcv.mark()
    rcv.cmd("get %d big.bin" % snd.id)
    rcv.wait(r"getting big\.bin", m)
    # kill the receiver once part of the file has arrived
    # ask `transfers` (one round trip each) until 8 MiB have arrived
    deadline = time.monotonic() + TIMEOUT
    while True:
        mk = rcv.mark()
        rcv.cmd("transfers")
        got = rcv.wait(r"get big\.bin from \d+: (\w+) [\d.]+% (\S+ \S+)/", mk)
        if got.group(1) == "running" and got.group(2).endswith("MiB") and \
                float(got.group(2).split()[0]) >= 8:
            break
        if got.group(1) not in ("connecting", "running"):
            fail("transfer ended before the kill: %s" % got.string)
        if time.monotonic() > deadline:
            fail("the transfer did not progress")
    rcv.p.kill()
    rcv.p.wait()
    have = os.path.getsize(part)
    if have >= 200 << 20:
        fail("the transfer finished before the kill; cannot test resume")
    snd.wait(r"put big\.bin to \d+: interrupted")
    rcv2 = Proc("rcv2", [FILER, "--hub", ep, "--name", "rcv2",
                         "--report-interval", "0.5",
                         "--dir", os.path.join(rcv.dir, "in")])
    rcv2.wait(r"joined the hub")
    wait_members(rcv2, 2)
    rcv2.cmd("get %d big.bin" % snd.id)
    m = rcv2.wait(r"resuming big\.bin at (\d+) bytes")
    if int(m.group(1)) < 8 << 20:
        fail("resumed at %s, below what the part file held" % m.group(1))
    line = rcv2.wait(r"transfer #\d+ get big\.bin from \d+: (\w+)",
                     timeout=120)
    if line.group(1) != "done":
        fail("resumed transfer: %s" % line.string)
    if sha256_file(os.path.join(rcv.dir, "in", "big.bin")) != digest:
        fail("digest mismatch after resume")
    for p in (snd, rcv2, hub):
        p.stop()


def corrupt(tmp):
    hub, ep, snd, rcv = transfer_setup(
        tmp, sender_env={"CT_FILER_TEST_CORRUPT_OFFSET": "3000000"})
    src = os.path.join(snd.dir, "share", "c.bin")
    make_file(src, 5)
    m = rcv.mark()
    rcv.cmd("get %d c.bin" % snd.id)
    line = rcv.wait(r"transfer #\d+ get c\.bin from \d+: (\w+)", m)
    if line.group(1) != "failed" or "digest mismatch" not in line.string:
        fail("corruption not detected: %s" % line.string)
    snd.wait(r"put c\.bin to \d+: failed.*digest mismatch")
    left = os.listdir(os.path.join(rcv.dir, "in"))
    if left:
        fail("files left after a corrupted transfer: %r" % left)
    for p in (snd, rcv, hub):
        p.stop()


def terminal(tmp):
    """On a terminal (a pty), a transfer shows a progress line (bytes,
    rate, ETA) rewritten in place.  The sender is stopped (SIGSTOP) so the
    transfer waits long enough to be drawn, then continued."""
    import pty
    hub, ep = start_hub("--broadcast-interval", "0.2")
    snd = start_filer("snd", ep, tmp)
    src = os.path.join(snd.dir, "share", "t.bin")
    digest = make_file(src, 4)
    d = os.path.join(tmp, "tty")
    os.makedirs(d)
    master, slave = pty.openpty()
    p = subprocess.Popen([FILER, "--hub", ep, "--name", "tty",
                          "--report-interval", "0.2", "--dir", d],
                         stdin=slave, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    buf = bytearray()
    cv = threading.Condition()

    def reader():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                b = b""
            with cv:
                if not b:
                    buf.extend(b"\0EOF")
                    cv.notify_all()
                    return
                buf.extend(b)
                cv.notify_all()
    threading.Thread(target=reader, daemon=True).start()

    def wait(pattern):
        rx = re.compile(pattern.encode())
        with cv:
            if not cv.wait_for(lambda: rx.search(buf), timeout=TIMEOUT):
                fail("tty: no %r in %r" % (pattern, bytes(buf[-2000:])))

    try:
        wait(r"joined the hub as")
        os.write(master, b"list\n")
        wait(r"2 members:")
        os.kill(snd.p.pid, signal.SIGSTOP)
        os.write(master, b"get %d t.bin\n" % snd.id)
        # the progress line: carriage return, erase line, then the fields
        wait(r"\r\x1b\[K#1 get t\.bin from \d+: connecting [\d.]+% "
             r"\S+ \S*B/\S+ \S*B \S+ \S*B/s ETA ")
        os.kill(snd.p.pid, signal.SIGCONT)
        wait(r"\r\x1b\[Ktransfer #1 get t\.bin from \d+: done .*" + digest)
        os.write(master, b"quit\n")
        p.wait(TIMEOUT)
        if p.stderr.read():
            fail("tty: unexpected stderr")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    for x in (snd, hub):
        x.stop()


def daemon(tmp):
    hub, ep = start_hub("--broadcast-interval", "0.2")
    a = start_filer("a", ep, tmp)
    ctl = os.path.join(tmp, "b.sock")
    d = Proc("b", [FILER, "--hub", ep, "--name", "b", "--report-interval",
                   "0.2", "--control", ctl, "--daemon"])
    d.p.wait(10)
    wait_members(a, 2)
    # the control socket listens before the hub connection is made
    c = socket.socket(socket.AF_UNIX)
    c.connect(ctl)
    rf = c.makefile("rb")

    def ask(line, pattern):
        c.sendall((line + "\n").encode())
        while True:
            got = rf.readline().decode()
            if not got:
                fail("control socket closed")
            if re.search(pattern, got):
                return got

    ask("watch", r"watching events")
    bid = int(ask("id", r"^id \d+").split()[1])
    a.cmd("send %d to the daemon" % bid)
    # the event arrives on the watching connection
    while True:
        got = rf.readline().decode()
        if re.search(r"^send from %d \(a\): to the daemon" % a.id, got):
            break
        if not got:
            fail("control socket closed")
    ask("list", r"^2 members:")
    c.sendall(b"quit\n")
    rf.read()
    c.close()
    for p in (a, hub):
        p.stop()


def main():
    # tmpfs when there is one: the big files then cost memory bandwidth,
    # not a (possibly slow, shared) disk
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    tmp = tempfile.mkdtemp(prefix="ct-hub-test-", dir=shm)
    try:
        {"messaging": messaging, "slow-consumer": slow_consumer,
         "transfer": transfer, "resume": resume, "corrupt": corrupt,
         "daemon": daemon, "terminal": terminal}[SCENARIO](tmp)
    finally:
        for p in procs:
            if p.p.poll() is None:
                try:
                    os.kill(p.p.pid, signal.SIGCONT)
                except OSError:
                    pass
                p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    # sanitizer reports of any child (stopped cleanly, so LSan ran)
    for p in procs:
        with p.cv:
            p.cv.wait_for(lambda: sum(l is None for _, l in p.lines) == 2,
                          timeout=TIMEOUT)
        if p.count(r"ERROR: (Address|Leak)Sanitizer|runtime error:"):
            fail("%s: sanitizer report" % p.name)
    print("ok", SCENARIO)


if __name__ == "__main__":
    HUB, FILER, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3]
    main()
