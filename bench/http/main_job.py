#!/usr/bin/env python3
"""The main job's run (scripts/run.sh): shardloop_httpd on every CPU of the
machine, one pinned shard each, driven by shardloop_loadgen (also one shard
per CPU, so on a small machine the two share the CPUs) for a few seconds per
workload; then a short table of what the server achieved, and everything it
started is stopped. Exits non-zero when a step fails, a request fails, or
the server does not exit cleanly on SIGTERM.

Workloads: GET /plaintext without and with pipelining (16 deep), GET /json,
a 64 KiB static file (sendfile), each over --connections keep-alive
connections; then /plaintext and /json again on a server started with
--spread cpu (a connection is accepted by the shard on the CPU that
received it). Server CPU per request comes from /proc/PID/stat across the
measured window (the load generator reads it, --server-pid).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from procs import (copy_stream, read_line, run_client, spawn, start_driver, stop,  # noqa: E402
                   stop_all)

WORKLOADS = [  # (label, path, pipeline depth)
    ("plaintext", "/plaintext", 1),
    ("plaintext, pipelined", "/plaintext", 16),
    ("json", "/json", 1),
    ("static file 64 KiB", "/static-64k.bin", 1),
]
# The same server again, each connection accepted by the shard on the CPU
# that received it (--spread cpu), for the workloads where that matters:
# one request per round trip, where a shard often sleeps between requests.
SPREAD_CPU_WORKLOADS = [w for w in WORKLOADS if w[2] == 1 and w[1] != "/static-64k.bin"]


def fail(message):
    raise SystemExit(f"main_job: {message}")


def serve_and_drive(args, cpus, root, spread, workloads):
    """Starts shardloop_httpd with --spread `spread`, drives each workload,
    stops the server with SIGTERM. Returns (results, failed)."""
    log_path = os.path.join(root, f"httpd-{spread}.log")
    with open(log_path, "ab") as log:
        server = spawn([args.httpd, "--host", "127.0.0.1", "--port", "0", "--shards",
                        str(len(cpus)), "--root", root, "--spread", spread],
                       stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    results = []
    failed = False
    try:
        line = read_line(server, timeout=10)
        if line is None or not line.startswith("port="):
            fail(f"shardloop_httpd did not print port=N (got {line!r}); log: {log_path}")
        port = line.split("=", 1)[1]
        threading.Thread(target=copy_stream, args=(server.stdout, log_path), daemon=True).start()
        print(f"shardloop_httpd --spread {spread}: {len(cpus)} shards on CPUs "
              f"{','.join(map(str, cpus))}, port {port}; shardloop_loadgen: {len(cpus)} shards, "
              f"{args.connections} connections, {args.duration:g} s per workload",
              file=sys.stderr)
        for label, path, pipeline in workloads:
            argv = [args.loadgen, "--mode", "http", "--host", "127.0.0.1", "--port", port,
                    "--path", path, "--pipeline", str(pipeline),
                    "--connections", str(args.connections), "--shards", str(len(cpus)),
                    "--duration", str(args.duration), "--warmup", str(args.warmup),
                    "--server-pid", str(server.pid), "--json", "--quiet"]
            code, out, err, _ = run_client(argv, args.duration + args.warmup + 30)
            if code != 0:
                print(f"{label}: shardloop_loadgen exited {code}: {err.strip()}", file=sys.stderr)
                failed = True
                continue
            r = json.loads(out.strip().splitlines()[-1])
            bad = sum(n for status, n in r["status"].items() if status != "200")
            if r["errors"] or bad or not r["requests"]:
                failed = True
            results.append({"workload": label, "spread": spread, "pipeline": pipeline, **r})
    finally:
        code = stop(server, grace=10)
    if code != 0:
        print(f"shardloop_httpd exited with status {code} on SIGTERM; log: {log_path}",
              file=sys.stderr)
        failed = True
    return results, failed


def print_table(args, cpus, results):
    print(f"\nshardloop_httpd, {len(cpus)} shards (one per CPU), driven by shardloop_loadgen "
          f"on the same {len(cpus)} CPUs, {args.connections} connections, {args.duration:g} s "
          "each (spread: which shard accepts a connection, the kernel's hash or the CPU that "
          "received it):")
    header = (f"{'workload':<22} {'spread':>6} {'pipe':>4} {'requests/s':>11} {'MB/s in':>8} "
              f"{'p50 us':>8} {'p99 us':>8} {'max us':>8} {'srv CPU us/req':>14} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        lat = r["latency_us"]
        cpu = r.get("server_cpu_us_per_request")
        errors = r["errors"] + sum(n for s, n in r["status"].items() if s != "200")
        print(f"{r['workload']:<22} {r['spread']:>6} {r['pipeline']:>4} "
              f"{r['requests_per_s']:>11.0f} {r['bytes_received_per_s'] / 1e6:>8.1f} "
              f"{lat['p50']:>8.0f} {lat['p99']:>8.0f} {lat['max']:>8.0f} "
              f"{'-' if cpu is None else format(cpu, '14.2f'):>14} {errors:>6}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default=os.path.join(REPO, "build", "release"))
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per workload")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    args = p.parse_args()
    args.httpd = os.path.join(args.build_dir, "apps", "httpd", "shardloop_httpd")
    args.loadgen = os.path.join(args.build_dir, "apps", "loadgen", "shardloop_loadgen")
    for path in (args.httpd, args.loadgen):
        if not os.access(path, os.X_OK):
            fail(f"{path} is not built")
    start_driver()
    cpus = sorted(os.sched_getaffinity(0))
    root = tempfile.mkdtemp(prefix="shardloop-main-job-")
    with open(os.path.join(root, "static-64k.bin"), "wb") as f:
        f.write(os.urandom(64 * 1024))
    results = []
    failed = False
    try:
        for spread, workloads in (("hash", WORKLOADS), ("cpu", SPREAD_CPU_WORKLOADS)):
            got, bad = serve_and_drive(args, cpus, root, spread, workloads)
            results += got
            failed = failed or bad
    finally:
        stop_all()
    print_table(args, cpus, results)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
