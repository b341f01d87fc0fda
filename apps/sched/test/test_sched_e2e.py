#!/usr/bin/env python3
"""One real end-to-end run of ct-sched with short intervals.

Synchronises on conditions only: log lines read from the scheduler's
stderr (select() with a bounded deadline) and files the tasks write.
Also checks --help, --dry-run and the error for a bad config line.
"""
import os
import select
import signal
import subprocess
import sys
import tempfile

EXE = sys.argv[1]
EXAMPLE = sys.argv[2] if len(sys.argv) > 2 else None
DEADLINE = 30.0


class Log:
    def __init__(self, proc):
        self.proc = proc
        self.buf = b""
        self.lines = []

    def wait_for(self, pred, what):
        """Read stderr lines until pred(all lines so far) holds."""
        import time
        end = time.monotonic() + DEADLINE
        while not pred(self.lines):
            left = end - time.monotonic()
            if left <= 0:
                sys.exit("timed out waiting for %s; log:\n%s" % (what, "\n".join(self.lines)))
            r, _, _ = select.select([self.proc.stderr], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                if not pred(self.lines):
                    sys.exit("ct-sched exited waiting for %s; log:\n%s" % (what, "\n".join(self.lines)))
                return
            self.buf += chunk
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.lines.append(line.decode("utf-8", "replace"))


def run(args, **kw):
    out = subprocess.run(args, capture_output=True, text=True, **kw)
    print(out.stderr)  # sanitizer reports, if any, reach ctest's output
    return out


def count(lines, text):
    return sum(1 for l in lines if text in l)


def main():
    d = tempfile.mkdtemp(prefix="ct-sched-e2e-")
    conf = os.path.join(d, "tasks.conf")
    state = os.path.join(d, "state")

    out = run([EXE, "--help"])
    assert out.returncode == 0 and "catch-up" in out.stdout, out

    with open(conf, "w") as f:
        f.write("# e2e\nok every 1s run true\nbad evry 1s run true\n")
    out = run([EXE, conf])
    assert out.returncode == 1, out
    assert conf + ":3: unknown schedule 'evry'" in out.stderr, out.stderr

    with open(conf, "w") as f:
        f.write('q cron "*/15 * * * *" run true\ne every 5s jitter 1s run true\n')
    out = run([EXE, "--dry-run", conf],
              env=dict(os.environ, TZ="UTC"))
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert lines[0] == "q (line 1):" and len(lines) == 22, out.stdout
    assert all(l.endswith(":00:00 UTC") or l.endswith(":15:00 UTC") or
               l.endswith(":30:00 UTC") or l.endswith(":45:00 UTC") for l in lines[1:11]), out.stdout
    assert lines[12] == "  +5s .. +6s after start", out.stdout

    if EXAMPLE is not None:  # the documented example config is valid
        out = run([EXE, "--dry-run", EXAMPLE])
        assert out.returncode == 0 and "rotate (line" in out.stdout, out

    ticks = os.path.join(d, "ticks")
    fresh = os.path.join(d, "fresh")
    tick_line = "tick every 1s run sh -c 'echo tick >> %s'\n" % ticks
    with open(conf, "w") as f:
        f.write(tick_line)
        f.write("boom every 1s run sh -c 'echo boom-output; exit 7'\n")
    proc = subprocess.Popen([EXE, "--state", state, conf], stderr=subprocess.PIPE)
    log = Log(proc)
    try:
        log.wait_for(lambda ls: count(ls, "task tick: run succeeded") >= 2 and
                     count(ls, "task boom failed") >= 1, "two ticks and a failure")
        failure = [l for l in log.lines if "task boom failed" in l][0]
        assert "exited with code 7" in failure and "boom-output" in failure, failure
        with open(ticks) as f:
            assert f.read().count("tick") >= 2

        # Reload: tick unchanged, boom removed, fresh added.
        with open(conf, "w") as f:
            f.write(tick_line)
            f.write("fresh at +0s run sh -c 'echo fresh > %s'\n" % fresh)
        proc.send_signal(signal.SIGHUP)
        log.wait_for(lambda ls: count(ls, "task fresh: run succeeded") >= 1,
                     "the reloaded config's new task")
        assert count(log.lines, "1 unchanged, 1 new or changed, 1 removed") == 1, log.lines
        with open(fresh) as f:
            assert f.read() == "fresh\n"
        n = count(log.lines, "task tick: run succeeded")
        log.wait_for(lambda ls: count(ls, "task tick: run succeeded") >= n + 1,
                     "tick going on after the reload")
        with open(state) as f:
            assert "\ntick " in f.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        log.wait_for(lambda ls: count(ls, "sched: stopped") >= 1, "the stop")
        rc = proc.wait(timeout=DEADLINE)
        rest = proc.stderr.read().decode("utf-8", "replace")
        # Echo the scheduler's log: a sanitizer report in it fails the test
        # (ctest's FAIL_REGULAR_EXPRESSION in sanitizer builds).
        print("\n".join(log.lines) + "\n" + rest)
    assert rc == 0, rc
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    print("ok")


if __name__ == "__main__":
    main()
