#!/usr/bin/python3
"""End to end: `ctwistd rpc` served to `ct-rpc` and to the Python
standard-library client of docs/rpc.md (docs/examples/rpc_client.py),
with one worker and with --workers 2.

usage: test_rpc.py CTWISTD CT_RPC RPC_CLIENT_PY

Servers listen on 127.0.0.1 port 0; the test reads the printed address.
Every wait is bounded; nothing asserts on timing.
"""
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

CTWISTD, CT_RPC, CLIENT_PY = sys.argv[1:4]
SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:")

spec = importlib.util.spec_from_file_location("rpc_client", CLIENT_PY)
rpc_client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rpc_client)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def start(extra=()):
    proc = subprocess.Popen([CTWISTD] + list(extra) +
                            ["rpc", "--listen", "tcp:0:interface=127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    deadline = time.monotonic() + 15
    while True:
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)\n", out)
        if m:
            return proc, int(m.group(1))
        left = deadline - time.monotonic()
        check(left > 0, "no 'listening on' within 15 s: %r" % out)
        r, _, _ = select.select([proc.stdout], [], [], left)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError("ctwistd exited early: %r" %
                                     proc.stderr.read())
            out += chunk


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    err = err.decode(errors="replace")
    check(not SANITIZER.search(err), "sanitizer report:\n" + err)
    check(proc.returncode == 0, "ctwistd exit %s: %s" % (proc.returncode, err))


def ct_rpc(port, *args, status=0):
    p = subprocess.run([CT_RPC, "--connect", "tcp:127.0.0.1:%d" % port] +
                       list(args), capture_output=True, text=True, timeout=60)
    check(not SANITIZER.search(p.stderr), "sanitizer report:\n" + p.stderr)
    check(p.returncode == status, "ct-rpc %s: exit %d, wanted %d\n%s%s" %
          (" ".join(args), p.returncode, status, p.stdout, p.stderr))
    return p.stdout, p.stderr


def stats(port):
    c = rpc_client.RpcClient("127.0.0.1", port)
    try:
        return c.call("stats")
    finally:
        c.close()


def test_ct_rpc(port):
    out, _ = ct_rpc(port, "add", "1", "2")
    check(out == "3\n", out)
    out, _ = ct_rpc(port, "add", '{"a": 1.5, "b": 2}')
    check(out == "3.5\n", out)
    out, _ = ct_rpc(port, "echo", '{"x": [1, "y"]}')
    check(json.loads(out) == {"x": [1, "y"]}, out)
    out, _ = ct_rpc(port, "echo", "word", "7")
    check(json.loads(out) == ["word", 7], out)
    out, _ = ct_rpc(port, "fib", "20")
    check(out == "6765\n", out)
    _, err = ct_rpc(port, "fib", "1000", status=1)
    check("error -32602" in err and '"max"' in err, err)
    _, err = ct_rpc(port, "nope", status=1)
    check("error -32601: Method not found" in err, err)
    _, err = ct_rpc(port, "--timeout", "0.2", "sleep", "30", status=1)
    check("-32001" in err or "ETIMEDOUT" in err, err)
    before = stats(port)["cancelled"]
    out, _ = ct_rpc(port, "--cancel-after", "0.1", "sleep", "30")
    check(out == "cancelled\n", out)
    # The cancellation crossed the wire: the server counted it.
    deadline = time.monotonic() + 10
    while stats(port)["cancelled"] <= before:
        check(time.monotonic() < deadline, "server never saw rpc.cancel")
    out, _ = ct_rpc(port, "--notify", "echo", "1")
    check(out == "", out)
    out, _ = ct_rpc(port, "--bench", "3000", "--concurrency", "8",
                    "--connections", "2", "add", "1", "2")
    check(re.search(r"3000 calls in .* over 2 connections, 8 in flight: "
                    r"\d+ calls/s", out), out)
    check(re.search(r"p50 .* us, p99 .* us, p999 .* us", out), out)
    # Two members (two spellings of the one server; the repeated endpoint
    # counts once), round robin: an even split, reported per member.
    two = "tcp:127.0.0.1:%d,tcp:host=127.0.0.1:port=%d" % (port, port)
    out, _ = ct_rpc(port, "--connect", two, "--balancer", "rr",
                    "--idempotent", "add", "--bench", "3000",
                    "--concurrency", "8", "add", "1", "2")
    check(re.search(r"over 2 connections", out), out)
    calls = [int(n) for n in re.findall(r"^member \S+: (\d+) calls", out,
                                        re.M)]
    check(calls == [1500, 1500], out)
    _, err = ct_rpc(port, "--balancer", "nope", "add", status=2)
    check("p2c or rr" in err, err)


def test_python_client(port, one_worker=True):
    c = rpc_client.RpcClient("127.0.0.1", port)
    check(c.call("add", [1, 2]) == 3, "add")
    check(c.call("add", {"a": 40, "b": 2}) == 42, "named")
    # A notification gets no reply: the next reply is the next call's.
    c.notify("echo", [1])
    check(c.call("echo", ["after"]) == ["after"], "after notification")
    # A batch: one array back, the notification left out.
    c.send([{"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": "a"},
            {"jsonrpc": "2.0", "method": "echo", "params": [0]},
            {"jsonrpc": "2.0", "method": "nope", "id": "b"}])
    got = {r["id"]: r for r in c.recv()}
    check(got["a"]["result"] == 2 and got["b"]["error"]["code"] == -32601,
          got)
    # rpc.cancel: the sleep is answered at once with -32800.
    sid = c.request("sleep", [30])
    c.cancel(sid)
    r = c.recv()
    check(r["id"] == sid and r["error"]["code"] == -32800, r)
    # deadline-ms: cancelled at the deadline, or not started at all.
    sid = c.request("sleep", [30], deadline_ms=50)
    r = c.recv()
    check(r["id"] == sid and r["error"]["code"] == -32001, r)
    sid = c.request("add", [1, 2], deadline_ms=0)
    r = c.recv()
    check(r["error"]["code"] == -32001, r)
    # Bad input gets an error and the connection keeps serving.
    c.sock.sendall(b"\0\0\0\x02{}")  # a frame without content
    check(c.recv()["error"]["code"] == -32700, "empty content")
    c.send([])
    check(c.recv()["error"]["code"] == -32600, "empty batch")
    check(c.call("add", [2, 2]) == 4, "still serving")
    c.close()
    if not one_worker:
        return  # stats are per worker: the rest needs a single process
    # A client that disconnects mid-call: the server cancels its calls.
    before = stats(port)["cancelled"]
    d = rpc_client.RpcClient("127.0.0.1", port)
    d.request("sleep", [30])
    d.request("sleep", [30])
    d.call("add", [0, 0])  # both sleeps have started
    d.close()
    deadline = time.monotonic() + 10
    while True:
        s = stats(port)
        if s["cancelled"] >= before + 2 and s["in_flight"] == 0:
            break
        check(time.monotonic() < deadline, "in-flight calls not cancelled: %r"
              % s)


def main():
    p = subprocess.run([CT_RPC, "--help"], capture_output=True, text=True)
    check(p.returncode == 0 and "--bench" in p.stdout, p.stdout)
    p = subprocess.run([CT_RPC, "add"], capture_output=True, text=True)
    check(p.returncode == 2, "usage error exit %d" % p.returncode)
    p = subprocess.run([CT_RPC, "--connect", "tcp:127.0.0.1:1", "add"],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and "ECONNREFUSED" in p.stderr, p.stderr)

    proc, port = start()
    try:
        test_ct_rpc(port)
        test_python_client(port)
    finally:
        stop(proc)
    proc, port = start(["--workers", "2"])
    try:
        out, _ = ct_rpc(port, "--bench", "2000", "--concurrency", "8",
                        "--connections", "4", "add", "1", "2")
        check("2000 calls" in out, out)
        test_python_client(port, one_worker=False)
    finally:
        stop(proc)
    print("ok")


if __name__ == "__main__":
    main()
