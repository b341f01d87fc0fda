#!/usr/bin/env python3
"""A standalone ZooKeeper for the tests (ctest label zk).

    zkserver.py start DIR   start one on 127.0.0.1, a free client port, data
                            in DIR; wait for ruok -> imok (bounded); write
                            DIR/ensemble ("127.0.0.1:PORT") and DIR/pid
    zkserver.py stop DIR    stop it by its PID (TERM, then KILL)

Importable too: ZooKeeper(dir).start() / .stop() / .ensemble, and a
restart on the same port and data (the outage scenario).  Debian's
zookeeper package provides the jars; the JVM starts in a few seconds on a
quiet machine, more on a loaded one, hence the generous bound.
"""
import glob
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

START_TIMEOUT = 90.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ruok(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"ruok")
            return s.recv(16) == b"imok"
    except OSError:
        return False


class ZooKeeper:
    def __init__(self, workdir, port=None, tick_ms=200):
        self.dir = os.path.abspath(workdir)
        self.port = port or free_port()
        self.tick_ms = tick_ms
        self.proc = None
        self.pid = None
        self.started = False

    @property
    def ensemble(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        """Start with an empty data directory; a restart of the same object
        keeps it (and so the sessions and nodes)."""
        data = os.path.join(self.dir, "data")
        if not self.started:
            shutil.rmtree(data, ignore_errors=True)
        self.started = True
        os.makedirs(data, exist_ok=True)
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            # A short tick lets tests ask for short sessions (2..20 ticks).
            f.write("tickTime=%d\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                    "dataDir=%s\nadmin.enableServer=false\n"
                    "4lw.commands.whitelist=ruok,stat\n"
                    "maxClientCnxns=200\n"
                    % (self.tick_ms, self.port, os.path.join(self.dir, "data")))
        jars = ":".join(sorted(glob.glob("/usr/share/java/*.jar")))
        logpath = os.path.join(self.dir, "zookeeper.log")
        log = open(logpath, "ab")
        start_at = log.tell()
        self.proc = subprocess.Popen(
            ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dzookeeper.jmx.log4j.disable=true", "-cp", jars,
             "org.apache.zookeeper.server.ZooKeeperServerMain", cfg],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        self.pid = self.proc.pid
        try:
            self._wait_ready(logpath, start_at)
        except RuntimeError:
            self.stop()
            raise
        with open(os.path.join(self.dir, "ensemble"), "w") as f:
            f.write(self.ensemble + "\n")
        with open(os.path.join(self.dir, "pid"), "w") as f:
            f.write("%d\n" % self.pid)
        return self

    def _wait_ready(self, logpath, start_at):
        """Wait (bounded) until ZooKeeper answers ruok.  Woken by the JVM's
        own log lines, followed with `tail -F` (inotify): ruok is asked once
        the log says the client port is bound, and again on every later
        line until it answers (the bind itself follows its log line)."""
        deadline = time.monotonic() + START_TIMEOUT
        tail = subprocess.Popen(["tail", "-c", "+%d" % (start_at + 1), "-F",
                                 logpath], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        bound = False
        recent = b""
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("ZooKeeper exited with %s (see %s)"
                                       % (self.proc.returncode, logpath))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("ZooKeeper did not answer ruok within "
                                       "%g s" % START_TIMEOUT)
                if bound and ruok(self.port, left):
                    return
                if select.select([tail.stdout], [], [], left)[0]:
                    chunk = os.read(tail.stdout.fileno(), 65536)
                    # Keep a tail in case the marker spans two reads.
                    recent = (recent + chunk)[-4096:]
                    bound = bound or b"binding to port" in recent
        finally:
            tail.kill()
            tail.wait()

    def stop(self):
        pid = self.pid
        if pid is None:
            try:
                pid = int(open(os.path.join(self.dir, "pid")).read())
            except (OSError, ValueError):
                return
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            # Not our child (the fixture's start exited): wait on a pidfd.
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                fd = None
            if fd is not None:
                os.kill(pid, signal.SIGTERM)
                if not select.select([fd], [], [], 10)[0]:
                    os.kill(pid, signal.SIGKILL)
                    select.select([fd], [], [], 10)
                os.close(fd)
        self.pid = None
        self.proc = None


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        sys.stderr.write(__doc__)
        return 2
    zk = ZooKeeper(argv[2])
    if argv[1] == "start":
        t0 = time.monotonic()
        zk.start()
        print("ZooKeeper %s (pid %d) answered imok after %.1f s"
              % (zk.ensemble, zk.pid, time.monotonic() - t0))
    else:
        zk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
