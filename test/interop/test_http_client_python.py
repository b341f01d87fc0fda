"""Interop: ctwist's HTTP client (ct-http) against Python's http.server
(HTTP/1.0, close-delimited) and a Twisted static.File site (HTTP/1.1,
keep-alive, chunked).  Bodies are compared by SHA-256; the keep-alive pool
is checked with --repeat (one connection left open afterwards).  Servers
listen on 127.0.0.1 port 0, are waited for with a bounded timeout and
stopped by PID.
"""
import hashlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

PY = "/usr/bin/python3"
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/test/interop"
CTHTTP = os.path.join(BUILD, "..", "..", "apps", "http", "ct-http")
HERE = os.path.dirname(os.path.abspath(__file__))
READY_TIMEOUT = 15.0
SANITIZER = re.compile(r"ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:")
ENV = {k: v for k, v in os.environ.items()
       if k.lower() not in ("http_proxy", "no_proxy")}


def sha(b):
    return hashlib.sha256(b).hexdigest()


def start(args, pattern):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=ENV)
    out = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        m = re.search(pattern, out)
        if m:
            return proc, int(m.group(1))
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            raise AssertionError("server not ready: %r" % out)
        r, _, _ = select.select([proc.stdout], [], [], left)
        if r:
            out += os.read(proc.stdout.fileno(), 4096)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fetch(url, out, *extra, env=ENV):
    p = subprocess.run([CTHTTP, "GET", url, "-o", out] + list(extra),
                       capture_output=True, timeout=60, env=env)
    err = p.stderr.decode(errors="replace")
    assert not SANITIZER.search(err), err
    with open(out, "rb") as f:
        return p.returncode, f.read(), err


def main():
    with tempfile.TemporaryDirectory(prefix="ct-http-client-") as top:
        root = os.path.join(top, "root")
        os.makedirs(root)
        files = {"small.txt": b"small file\n",
                 "random.bin": os.urandom(2 * 1024 * 1024 + 13),
                 "large.bin": os.urandom(24 * 1024 * 1024)}
        for name, data in files.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        out = os.path.join(top, "out")

        # Python's http.server: HTTP/1.0, the connection closes each time.
        proc, port = start([PY, "-u", "-m", "http.server", "--bind",
                            "127.0.0.1", "--directory", root, "0"],
                           rb"port (\d+)")
        try:
            for name, data in files.items():
                rc, body, err = fetch("http://127.0.0.1:%d/%s" % (port, name),
                                      out)
                assert rc == 0 and sha(body) == sha(data), (name, rc, err)
            rc, body, err = fetch("http://127.0.0.1:%d/missing" % port, out)
            assert rc == 1, (rc, err)
            rc, body, err = fetch("http://127.0.0.1:%d/small.txt" % port, out,
                                  "--repeat", "3", "-v")
            assert rc == 0 and body == files["small.txt"], err
            assert "0 open connection(s)" in err, err  # HTTP/1.0 closes
        finally:
            stop(proc)

        # Twisted static.File: HTTP/1.1, keep-alive, chunked resources.
        proc, port = start([PY, "-u", os.path.join(HERE, "http_twisted_site.py"),
                            root], rb"listening on 127\.0\.0\.1:(\d+)")
        try:
            base = "http://127.0.0.1:%d" % port
            for name, data in files.items():
                rc, body, err = fetch("%s/%s" % (base, name), out)
                assert rc == 0 and sha(body) == sha(data), (name, rc, err)
            rc, body, err = fetch(base + "/random.bin", out, "--repeat", "4",
                                  "-v")
            assert rc == 0 and sha(body) == sha(files["random.bin"]), err
            assert "200, 1 open connection(s)" in err, err
            n = 3 * 1024 * 1024 + 5
            want = bytearray()
            i = 0
            while len(want) < n:
                k = min(n - len(want), 7919)
                want += bytes((i + j) % 251 for j in range(k))
                i += k
            rc, body, err = fetch("%s/chunked/%d" % (base, n), out)
            assert rc == 0 and sha(body) == sha(bytes(want)), (rc, len(body), err)
            rc, body, err = fetch(base + "/redirect?to=/small.txt", out, "-v")
            assert rc == 0 and body == files["small.txt"], err
            # The proxy settings are read from the environment: a proxy that
            # refuses connections makes the request fail, no_proxy bypasses.
            bad = dict(ENV, http_proxy="http://127.0.0.1:1")
            rc, _, err = fetch(base + "/small.txt", out, env=bad)
            assert rc == 3 and "ECONNREFUSED" in err, (rc, err)
            rc, body, err = fetch(base + "/small.txt", out,
                                  env=dict(bad, no_proxy="127.0.0.1"))
            assert rc == 0 and body == files["small.txt"], (rc, err)
            p = subprocess.run([CTHTTP, "GET", "https://127.0.0.1:%d/" % port],
                               capture_output=True, timeout=30, env=ENV)
            assert p.returncode == 3 and b"https is not supported" in p.stderr
            p = subprocess.run([CTHTTP, "--help"], capture_output=True,
                               timeout=30)
            assert p.returncode == 0 and b"usage: ct-http" in p.stdout
        finally:
            stop(proc)
    print("ok")


if __name__ == "__main__":
    main()
