"""Interop: Python's urllib.request and http.client against `ctwistd web`.

A temporary tree (text, HTML, random binary, a 64 MiB file, a directory
with index.html, a symlink out of the root) is served by ctwistd on
127.0.0.1 port 0; the test reads the printed address.  Bodies are compared
by SHA-256.  Covers: urllib (one connection per request, Connection:
close), http.client keep-alive (many requests on one socket), Range,
conditional GET, HEAD, the directory listing's links, traversal attempts
(raw, encoded, double-encoded, symlink), the Common Log Format access log,
and the server's peak RSS after streaming the 64 MiB file (bounded memory).
Stopped by PID with SIGTERM; a clean exit and no sanitizer report required.
"""
import hashlib
import html.parser
import http.client
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/test/interop"
CTWISTD = os.path.join(BUILD, "..", "..", "apps", "ctwistd", "ctwistd")
READY_TIMEOUT = 15.0
SANITIZER = re.compile(r"ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:")
BIG = 64 << 20


def sha(b):
    return hashlib.sha256(b).hexdigest()


def make_tree(top):
    root = os.path.join(top, "root")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(top, "outside"))
    files = {
        "hello.txt": b"hello, world\n",
        "page.html": b"<!DOCTYPE html><p>page</p>\n",
        "random.bin": os.urandom(300 * 1024 + 7),
        "sub/index.html": b"<h1>sub</h1>\n",
        "space name.txt": b"spaces\n",
    }
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    with open(os.path.join(top, "outside", "secret.txt"), "wb") as f:
        f.write(b"secret\n")
    os.symlink("../outside", os.path.join(root, "out"))
    h = hashlib.sha256()
    block = bytes((i * 131 + 7) & 0xFF for i in range(1 << 20))
    with open(os.path.join(root, "big.bin"), "wb") as f:
        for i in range(BIG >> 20):
            chunk = block[i:] + block[:i]
            f.write(chunk)
            h.update(chunk)
    return root, files, h.hexdigest()


def start(root, log):
    proc = subprocess.Popen(
        [CTWISTD, "web", "--listen", "tcp:0:interface=127.0.0.1", "--path",
         root, "--access-log", log],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while b"listening on" not in out or not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            raise AssertionError("ctwistd not ready: %r %r" %
                                 (out, proc.stderr.read()))
        r, _, _ = select.select([proc.stdout], [], [], left)
        if r:
            out += os.read(proc.stdout.fileno(), 4096)
    m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", out)
    return proc, int(m.group(1))


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def raw_get(port, target, version="1.1"):
    """One request on a fresh socket; returns (status, body) after EOF."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET %s HTTP/%s\r\nHost: x\r\nConnection: close\r\n\r\n" %
               (target, version)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main():
    with tempfile.TemporaryDirectory(prefix="ct-http-interop-") as top:
        root, files, big_sha = make_tree(top)
        log = os.path.join(top, "access.log")
        proc, port = start(root, log)
        base = "http://127.0.0.1:%d" % port
        requests = 0
        try:
            # urllib: a new connection per request (Connection: close).
            for rel, data in files.items():
                url = base + "/" + urllib.request.quote(rel)
                with urllib.request.urlopen(url, timeout=10) as r:
                    assert r.status == 200, (rel, r.status)
                    assert sha(r.read()) == sha(data), rel
                requests += 1
            with urllib.request.urlopen(base + "/page.html", timeout=10) as r:
                assert r.headers["Content-Type"] == "text/html", r.headers
                r.read()
            with urllib.request.urlopen(base + "/hello.txt", timeout=10) as r:
                assert r.headers["Content-Type"] == "text/plain", r.headers
                r.read()
            requests += 2
            try:
                urllib.request.urlopen(base + "/missing", timeout=10)
                raise AssertionError("no 404")
            except urllib.error.HTTPError as e:
                assert e.code == 404
                e.read()
            requests += 1
            # A redirect to the directory's '/' and its index.html.
            with urllib.request.urlopen(base + "/sub", timeout=10) as r:
                assert r.geturl().endswith("/sub/") and r.read() == files["sub/index.html"]
            requests += 2

            # http.client keep-alive: one socket for everything.
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/random.bin")
            r = c.getresponse()
            body = r.read()
            assert r.status == 200 and sha(body) == sha(files["random.bin"])
            assert not r.will_close
            sock = c.sock
            etag = r.getheader("ETag")
            lm = r.getheader("Last-Modified")
            checks = [
                ("GET", "/random.bin", {"Range": "bytes=1000-1999"}, 206,
                 files["random.bin"][1000:2000]),
                ("GET", "/random.bin", {"Range": "bytes=-10"}, 206,
                 files["random.bin"][-10:]),
                ("GET", "/random.bin", {"If-None-Match": etag}, 304, b""),
                ("GET", "/random.bin", {"If-Modified-Since": lm}, 304, b""),
                ("HEAD", "/random.bin", {}, 200, b""),
                ("GET", "/hello.txt", {}, 200, files["hello.txt"]),
                ("GET", "/nope", {}, 404, None),
                ("GET", "/hello.txt", {}, 200, files["hello.txt"]),
            ]
            for method, path, hdrs, status, want in checks:
                c.request(method, path, headers=hdrs)
                r = c.getresponse()
                body = r.read()
                assert r.status == status, (path, hdrs, r.status)
                if want is not None:
                    assert body == want, (path, hdrs, len(body))
                assert c.sock is sock, "connection was not kept alive"
            requests += 1 + len(checks)

            # The listing's links all work.
            c.request("GET", "/")
            r = c.getresponse()
            page = r.read().decode()
            requests += 1
            p = Links()
            p.feed(page)
            assert sorted(p.links) == sorted(
                ["big.bin", "hello.txt", "out/", "page.html", "random.bin",
                 "space%20name.txt", "sub/"]), p.links
            for href in p.links:
                c.request("GET", "/" + href)
                r = c.getresponse()
                r.read()
                want = 403 if href == "out/" else 200
                assert r.status == want, (href, r.status)
                requests += 1
            assert c.sock is sock
            c.close()

            # Traversal attempts on raw sockets (no client-side cleanup).
            for target, status in [("/../outside/secret.txt", 404),
                                   ("/%2e%2e/outside/secret.txt", 404),
                                   ("/%2E%2E%2Foutside%2Fsecret.txt", 404),
                                   ("/%252e%252e/outside/secret.txt", 404),
                                   ("/sub/..%2f..%2foutside/secret.txt", 404),
                                   ("/out/secret.txt", 403)]:
                st, body = raw_get(port, target)
                assert st == status and b"secret\n" not in body, (target, st)
                requests += 1
            # HTTP/1.0 without keep-alive.
            st, body = raw_get(port, "/hello.txt", "1.0")
            assert st == 200 and body == files["hello.txt"]
            requests += 1

            # 64 MiB, compared by SHA-256; the server's peak RSS stays far
            # below the file's size (pull producer, bounded buffering).
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/big.bin")
            r = c.getresponse()
            h = hashlib.sha256()
            n = 0
            while True:
                b = r.read(1 << 16)
                if not b:
                    break
                h.update(b)
                n += len(b)
            assert n == BIG and h.hexdigest() == big_sha, n
            c.close()
            requests += 1
            rss = peak_rss_kib(proc.pid)
            limit = 48 * 1024
            if SANITIZER_BUILD:
                limit = 160 * 1024  # ASan's shadow and quarantine
            assert 0 < rss < limit, "peak RSS %d KiB" % rss
            print("served %d MiB with peak RSS %d KiB" % (BIG >> 20, rss))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        err = err.decode(errors="replace")
        assert not SANITIZER.search(err), err
        assert proc.returncode == 0, (proc.returncode, err)
        with open(log) as f:
            lines = f.read().splitlines()
        clf = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d '
                         r'[+-]\d{4}\] "[A-Z]+ \S+ HTTP/1\.[01]" \d{3} (\d+|-)$')
        for line in lines:
            assert clf.match(line), line
        assert len(lines) == requests, (len(lines), requests)
        print("ok: %d requests, access log matches" % requests)


with open(CTWISTD, "rb") as _f:
    SANITIZER_BUILD = b"__asan_init" in _f.read()

if __name__ == "__main__":
    main()
