#!/usr/bin/python3
"""Summarise bench/echo/run.sh's raw results: medians, ratios to the
references, syscalls per message (strace -c files) and idle memory."""
import statistics
import sys

SHAPES = [("pp1", "64 B ping-pong, 1 conn"),
          ("pp50", "64 B ping-pong, 50 conns"),
          ("pipe50x16", "64 B, 50 conns x 16 pipelined"),
          ("bulk4", "16 KiB bulk, 4 conns"),
          ("pp50_1k", "1 KiB ping-pong, 50 conns"),
          ("pipe50x16_1k", "1 KiB, 50 conns x 16 pipelined")]
REFS = ["libevent", "libuv", "bufferevent", "twisted"]
ORDER = ["ctwist"] + REFS


def kv(line):
    d = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            d[k] = v
    return d


def med(rows, key):
    vals = [float(r[key]) for r in rows if key in r]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def main():
    res_file, strace_file, mem_file = sys.argv[1:4]
    runs = {}
    with open(res_file) as f:
        for line in f:
            d = kv(line)
            runs.setdefault((d["server"], d["bench"]), []).append(d)
    servers = [s for s in ORDER if any(k[0] == s for k in runs)]
    shapes = [(k, t) for k, t in SHAPES if any(key[1] == k for key in runs)]

    print()
    print("| shape | server | req/s | MB/s | p50 µs | p99 µs | server CPU | server µs/msg | loadgen CPU | failed runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    medians = {}
    for shape, title in shapes:
        for s in servers:
            rows = runs.get((s, shape), [])
            ok = [r for r in rows if "failed" not in r]
            m = {k: med(ok, k) for k in ("req_s", "mb_s", "p50_us", "p99_us",
                                         "server_cpu", "server_us_per_msg", "client_cpu")}
            medians[(s, shape)] = m
            bulk = shape.startswith("bulk")
            print(f"| {title} | {s} | {fmt(m['req_s'])} | {fmt(m['mb_s'], 1)} | "
                  f"{'-' if bulk else fmt(m['p50_us'], 1)} | {'-' if bulk else fmt(m['p99_us'], 1)} | "
                  f"{fmt(m['server_cpu'], 2)} | {fmt(m['server_us_per_msg'], 3)} | "
                  f"{fmt(m['client_cpu'], 2)} | {len(rows) - len(ok)} |")

    if "ctwist" in servers:
        print()
        print("Ratios ctwist / reference (req/s; MB/s for bulk; in parentheses: server CPU µs per "
              "message, reference / ctwist, >1 means ctwist is cheaper):")
        print()
        refs = [r for r in REFS if r in servers]
        print("| shape | " + " | ".join(f"ctwist/{r}" for r in refs) + " |")
        print("|---|" + "---:|" * len(refs))
        for shape, title in shapes:
            cells = []
            c = medians[("ctwist", shape)]
            key = "mb_s" if shape.startswith("bulk") else "req_s"
            for r in refs:
                m = medians[(r, shape)]
                if c[key] and m[key]:
                    cell = f"{c[key] / m[key]:.2f}"
                    if c["server_us_per_msg"] and m["server_us_per_msg"]:
                        cell += f" ({m['server_us_per_msg'] / c['server_us_per_msg']:.2f})"
                else:
                    cell = "-"
                cells.append(cell)
            print(f"| {title} | " + " | ".join(cells) + " |")

    stats = []
    with open(strace_file) as f:
        for line in f:
            stats.append(kv(line))
    if stats:
        print()
        print("Syscalls per echoed 64 B ping-pong message (strace -c -f -p over a fixed count):")
        print()
        print("| server | conns | messages | syscalls/msg | breakdown per msg |")
        print("|---|---:|---:|---:|---|")
        for d in stats:
            calls = {}
            try:
                with open(d["file"]) as sf:
                    for line in sf:
                        p = line.split()
                        if len(p) < 5 or not p[0][0].isdigit() or p[-1] == "total":
                            continue
                        calls[p[-1]] = int(p[3])
            except (OSError, ValueError):
                pass
            n = int(d["msgs"])
            total = sum(calls.values())
            parts = ", ".join(f"{k} {v / n:.2f}" for k, v in
                              sorted(calls.items(), key=lambda kv_: -kv_[1]) if v / n >= 0.005)
            print(f"| {d['server']} | {d['conns']} | {n:,} | {total / n:.2f} | {parts} |")

    mem = []
    with open(mem_file) as f:
        for line in f:
            mem.append(kv(line))
    if mem:
        print()
        print("Idle memory (server VmRSS growth with N idle connections open, after one echo each):")
        print()
        print("| server | connections | RSS before | RSS after | bytes per connection |")
        print("|---|---:|---:|---:|---:|")
        for d in mem:
            n = int(d["conns"])
            r0, r1 = int(d["rss0_kb"]), int(d["rss1_kb"])
            print(f"| {d['server']} | {n:,} | {r0:,} kB | {r1:,} kB | {(r1 - r0) * 1024 / n:,.0f} |")


if __name__ == "__main__":
    main()
