#!/usr/bin/env python3
"""File transfer throughput of ct-filer against sha256sum (bench/hub).

usage: xfer.py CT_HUB CT_FILER MIB REPS

A hub and two filers on loopback; the receiver `get`s a MIB MiB file
(on tmpfs when /dev/shm exists) REPS times; each time `sha256sum` reads
the same file.  Prints one line per run: "xfer SECONDS sha256sum SECONDS".
The harness (processes, waiting on printed lines) is the test's.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "apps", "hub", "test"))
import test_hub as t  # noqa: E402

t.HUB, t.FILER = sys.argv[1], sys.argv[2]
MIB, REPS = int(sys.argv[3]), int(sys.argv[4])
shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
tmp = tempfile.mkdtemp(prefix="ct-hub-bench-", dir=shm)
try:
    hub, ep, snd, rcv = t.transfer_setup(tmp)
    src = os.path.join(snd.dir, "share", "big.bin")
    digest = t.make_file(src, MIB)
    for rep in range(REPS):
        m = rcv.mark()
        t0 = time.monotonic()
        rcv.cmd("get %d big.bin" % snd.id)
        line = rcv.wait(r"transfer #\d+ get big\.bin from \d+: (\w+)", m,
                        timeout=600)
        xfer = time.monotonic() - t0
        if line.group(1) != "done" or digest not in line.string:
            t.fail("transfer failed: " + line.string)
        os.unlink(os.path.join(rcv.dir, "in", "big.bin"))
        t0 = time.monotonic()
        subprocess.run(["sha256sum", src], check=True, stdout=subprocess.DEVNULL)
        ref = time.monotonic() - t0
        print("xfer %.3f sha256sum %.3f" % (xfer, ref), flush=True)
finally:
    for p in t.procs:
        p.stop()
    shutil.rmtree(tmp, ignore_errors=True)
