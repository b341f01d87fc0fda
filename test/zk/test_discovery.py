#!/usr/bin/env python3
"""ZooKeeper scenarios of docs/discovery.md (ctest label zk).

    test_discovery.py SCENARIO CTWISTD CT_RPC ZK_CLIENT ENSEMBLE_FILE WORKDIR

SCENARIO:
  kill     three servers and a client calling: SIGKILL one (calls go on,
           in-flight idempotent calls are retried, the others reported,
           the member leaves within the session timeout), restart it (it is
           picked up), SIGTERM one (no call fails)
  expiry   a server stopped past its session timeout comes back to an
           expired session: it registers again, exactly once
  workers  a --workers 2 server is registered once; kill -9 a worker: the
           member stays
  outage   ZooKeeper (its own, here) stopped under load: calls go on to the
           known members; restarted: the watches resume

Every wait is on a condition and bounded; nothing sleeps for a fixed time
to let something happen.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zkserver  # noqa: E402

SESSION = 2.0  # the servers' ZooKeeper session timeout in these tests
LIMIT = 40.0   # bound of any single wait


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def wait_until(cond, what, limit=LIMIT):
    """Evaluate cond() until true; each evaluation blocks on the system
    under test (a ZooKeeper read, a stats round trip), so this is no busy
    loop."""
    deadline = time.monotonic() + limit
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure("timed out (%g s) waiting for %s" % (limit, what))


class Env:
    def __init__(self, ctwistd, ctrpc, client, ensemble, workdir, service):
        self.ctwistd, self.ctrpc, self.client_bin = ctwistd, ctrpc, client
        self.ensemble = ensemble
        self.dir = workdir
        self.service = service
        self.procs = []
        self.logs = []

    def server(self, port=0, workers=None, session=SESSION):
        log = os.path.join(self.dir, "server-%d.log" % len(self.logs))
        self.logs.append(log)
        cmd = [self.ctwistd]
        if workers:
            cmd += ["--workers", str(workers)]
        cmd += ["rpc", "--listen", "tcp:%d:interface=127.0.0.1" % port,
                "--zk", self.ensemble, "--service", self.service,
                "--zk-session-timeout", str(session), "--zk-grace", "1"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                             stderr=open(log, "w"), stdin=subprocess.DEVNULL)
        self.procs.append(p)
        line = read_line(p.stdout, "ctwistd's 'listening on'")
        check(line.startswith("listening on 127.0.0.1:"), "ctwistd said %r" % line)
        p.port = int(line.rsplit(":", 1)[1])
        p.log = log
        return p

    def endpoint(self, p):
        return "tcp:host=127.0.0.1:port=%d" % p.port

    def members(self):
        """The member endpoints ct-rpc discovers (a fresh session)."""
        r = subprocess.run([self.ctrpc, "--zk", self.ensemble, "--service",
                            self.service, "--members"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            if "no member" in r.stderr:
                return set()
            raise Failure("ct-rpc --members: %s" % r.stderr.strip())
        return set(r.stdout.split())

    def client(self, conc=4, secs=0.2):
        log = os.path.join(self.dir, "client.log")
        self.logs.append(log)
        p = subprocess.Popen([self.client_bin, self.ensemble, self.service,
                              str(conc), str(secs)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=open(log, "w"), text=True)
        self.procs.append(p)
        check(json.loads(read_line(p.stdout, "zk_client ready")).get("ready"),
              "zk_client not ready")
        p.env = self
        return p

    def stats(self, c):
        c.stdin.write("stats\n")
        c.stdin.flush()
        return json.loads(read_line(c.stdout, "zk_client stats"))

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            p.send_signal(sig)
        try:
            return p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def quit_client(self, c):
        c.stdin.write("quit\n")
        c.stdin.flush()
        check(c.wait(timeout=30) == 0, "zk_client exit status")

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        # Sanitizer reports of the processes go to their logs: show them,
        # so that ctest's FAIL_REGULAR_EXPRESSION sees them.
        for log in self.logs:
            try:
                text = open(log, errors="replace").read()
            except OSError:
                continue
            if "Sanitizer" in text or "runtime error:" in text:
                print("---- %s\n%s" % (log, text))


def read_line(f, what, limit=LIMIT):
    r, _, _ = select.select([f], [], [], limit)
    if not r:
        raise Failure("no line from %s within %g s" % (what, limit))
    line = f.readline()
    if isinstance(line, bytes):
        line = line.decode()
    if not line:
        raise Failure("%s ended" % what)
    return line.strip()


def calls_grow(env, c, by=20):
    """Wait until both clients completed `by` more calls; the stats."""
    s0 = env.stats(c)
    want = (s0["idem"]["ok"] + by, s0["plain"]["ok"] + by)
    return wait_until(lambda: (lambda s: s if (s["idem"]["ok"] >= want[0] and
                                               s["plain"]["ok"] >= want[1])
                               else None)(env.stats(c)),
                      "%d more successful calls" % by)


def members_are(env, c, eps):
    want = sorted(eps)
    return wait_until(lambda: (lambda s: s if sorted(s["members"]) == want
                               else None)(env.stats(c)),
                      "the client's members to be %s" % want)


# ------------------------------------------------------------- scenarios

def scenario_kill(env):
    servers = [env.server() for _ in range(3)]
    c = env.client()
    members_are(env, c, [env.endpoint(s) for s in servers])
    calls_grow(env, c)

    # SIGKILL with calls in flight on both clients, for sure: the victim is
    # stopped first, so that its calls cannot complete, until each client
    # has one outstanding there; then killed (a stopped process dies too).
    victim = servers[0]
    vep = env.endpoint(victim)
    os.kill(victim.pid, signal.SIGSTOP)
    wait_until(lambda: (lambda s: s["idem"]["outstanding"].get(vep, 0) >= 1 and
                        s["plain"]["outstanding"].get(vep, 0) >= 1)(env.stats(c)),
               "calls in flight on the stopped server")
    t0 = time.monotonic()
    env.stop(victim, signal.SIGKILL)
    members_are(env, c, [env.endpoint(s) for s in servers[1:]])
    took = time.monotonic() - t0
    print("kill: member gone from the client after %.2f s (session %g s)"
          % (took, SESSION))
    # Liveness bound, generous for a loaded machine: the session timeout
    # plus ZooKeeper's expiry tick and the watch.
    check(took < SESSION + 10, "member still there %.1f s after SIGKILL" % took)
    s = calls_grow(env, c)
    print("kill: stats %s" % json.dumps(s))
    check(s["idem"]["fail"] == 0,
          "idempotent calls failed: %s" % s["idem"]["errors"])
    check(s["retries"] >= 1, "no idempotent call was retried")
    check(s["plain"]["fail"] >= 1, "no in-flight non-idempotent call reported")
    for e in s["plain"]["errors"]:
        check("lost" in e["message"] or "may have run" in e["message"],
              "unexpected failure: %s" % e)

    # Restart on the same port: picked up, and it gets calls.
    back = env.server(port=victim.port)
    servers[0] = back
    s = members_are(env, c, [env.endpoint(x) for x in servers])
    before = s["calls"].get(env.endpoint(back), 0)
    wait_until(lambda: env.stats(c)["calls"].get(env.endpoint(back), 0)
               > before + 5, "calls to the restarted member")

    # SIGTERM: the member is deleted first, then the server drains.
    s0 = calls_grow(env, c)
    term = servers[1]
    check(env.stop(term) == 0, "SIGTERM exit status")
    members_are(env, c, [env.endpoint(servers[0]), env.endpoint(servers[2])])
    s = calls_grow(env, c)
    print("term: stats %s" % json.dumps(s))
    check(s["idem"]["fail"] == s0["idem"]["fail"] and
          s["plain"]["fail"] == s0["plain"]["fail"],
          "calls failed during a SIGTERM: %s %s" % (s["idem"]["errors"],
                                                   s["plain"]["errors"]))
    env.quit_client(c)
    for p in (servers[0], servers[2]):
        check(env.stop(p) == 0, "server exit status")


def registrations(log):
    return open(log).read().count("zk: registered ")


def scenario_expiry(env):
    srv = env.server(session=SESSION)
    ep = env.endpoint(srv)
    wait_until(lambda: env.members() == {ep}, "the server's registration")
    c = env.client(conc=2, secs=0.05)
    members_are(env, c, [ep])
    # A pause longer than the session: ZooKeeper expires it and deletes
    # the member (the client sees it go).
    os.kill(srv.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: env.stats(c)["nodes"] == 0, "the session to expire")
    finally:
        os.kill(srv.pid, signal.SIGCONT)
    # Back: a new session, registered again -- once.
    wait_until(lambda: env.stats(c)["nodes"] == 1 and
               registrations(srv.log) >= 2, "the re-registration")
    s = calls_grow(env, c, by=10)
    check(s["nodes"] == 1, "%d member nodes" % s["nodes"])
    check(env.members() == {ep}, "members after expiry")
    text = open(srv.log).read()
    check(registrations(srv.log) == 2,
          "registered %d times" % registrations(srv.log))
    check(text.count("expired; a new session") == 1, "expiries: %s" % text)
    env.quit_client(c)
    check(env.stop(srv) == 0, "server exit status")


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def scenario_workers(env):
    sup = env.server(workers=2)
    ep = env.endpoint(sup)
    wait_until(lambda: env.members() == {ep}, "the supervisor's registration")
    c = env.client(conc=2, secs=0.05)
    members_are(env, c, [ep])
    calls_grow(env, c)
    kids = wait_until(lambda: children(sup.pid) if len(children(sup.pid)) == 2
                      else None, "two workers")
    os.kill(kids[0], signal.SIGKILL)
    # The supervisor restarts it; the member never leaves.
    wait_until(lambda: len(children(sup.pid)) == 2 and
               kids[0] not in children(sup.pid), "the worker's restart")
    s = calls_grow(env, c)
    check(s["nodes"] == 1 and s["members"] == [ep], "members: %s" % s)
    check(env.members() == {ep}, "member after kill -9 of a worker")
    check(registrations(sup.log) == 1,
          "registered %d times" % registrations(sup.log))
    env.quit_client(c)
    check(env.stop(sup) == 0, "supervisor exit status")
    check(env.members() == set(), "member left after SIGTERM")


def scenario_outage(env):
    zk = zkserver.ZooKeeper(os.path.join(env.dir, "zookeeper")).start()
    env.ensemble = zk.ensemble
    try:
        servers = [env.server(session=4.0) for _ in range(2)]
        c = env.client(conc=2, secs=0.05)
        members_are(env, c, [env.endpoint(s) for s in servers])
        zk.stop()
        wait_until(lambda: env.stats(c)["unreachable"] == 1,
                   "the client to notice the outage")
        s = calls_grow(env, c)
        check(sorted(s["members"]) == sorted(env.endpoint(x) for x in servers),
              "members kept during the outage: %s" % s["members"])
        zk.start()
        wait_until(lambda: env.stats(c)["unreachable"] == 0,
                   "the client to reconnect")
        # The watch is armed again: a new server is picked up.
        servers.append(env.server(session=4.0))
        members_are(env, c, [env.endpoint(x) for x in servers])
        s = calls_grow(env, c)
        check(s["idem"]["fail"] == 0 and s["plain"]["fail"] == 0,
              "calls failed: %s" % s)
        env.quit_client(c)
        for p in servers:
            check(env.stop(p) == 0, "server exit status")
    finally:
        zk.stop()


def main(argv):
    if len(argv) != 7:
        sys.stderr.write(__doc__)
        return 2
    scenario, ctwistd, ctrpc, client, ens_file, workdir = argv[1:]
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    ensemble = open(ens_file).read().strip()
    service = "test-%s-%d" % (scenario, os.getpid())
    env = Env(ctwistd, ctrpc, client, ensemble, workdir, service)
    try:
        globals()["scenario_" + scenario](env)
    except Failure as e:
        print("FAIL: %s" % e)
        for log in env.logs:
            print("---- %s" % log)
            print(open(log, errors="replace").read()[-4000:])
        return 1
    finally:
        env.cleanup()
    print("ok: %s" % scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
