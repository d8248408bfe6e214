#!/usr/bin/env python3
"""Shard scaling: server CPU time per request with one shard and with two,
for shardloop_echo and for the raw liburing echo server (one process per
CPU, sharing the port with SO_REUSEPORT, the hand-written equivalent of
two shards).

The servers (all started once and left running):
  shardloop 1       shardloop_echo --shards 1 (its shard pinned to CPU 0)
  shardloop 2 hash  shardloop_echo --shards 2 (the kernel's reuseport hash)
  shardloop 2 cpu   shardloop_echo --shards 2 --spread cpu (SO_INCOMING_CPU)
  liburing 1        echo_uring_ref pinned to CPU 0
  liburing 2        two echo_uring_ref, pinned to CPU 0 and CPU 1, one port

For each load (connections, and a fixed request rate or closed loop) every
server is driven in turn by shardloop_loadgen (echo mode, 64-byte messages,
two client shards on the same two CPUs: these machines have no third), the
order reversing each round. The load generator samples the servers' CPU
time from /proc over its measured window (--server-pid). Reported: medians
of the per-round ratios two-servers / one-server, of CPU time per request
and of requests per second, and the median p50 latencies (from the
scheduled send time at a fixed rate).
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from procs import (fmt, median, read_line, run_client, spawn, start_driver,  # noqa: E402
                   stop_all, write_json_report)

# (connections, requests per second; 0: closed loop)
DEFAULT_LOADS = [(100, 40000), (100, 100000), (1000, 40000), (100, 0), (1000, 0)]
QUICK_LOADS = [(100, 40000), (100, 0)]
# (two-server configuration, its one-server baseline)
PAIRS = [("shardloop 2 hash", "shardloop 1"), ("shardloop 2 cpu", "shardloop 1"),
         ("liburing 2", "liburing 1")]
TARGET = 1.10  # CPU per request may rise at most 10% from 1 to 2 shards


def fail(message):
    raise SystemExit(f"run_shard_scaling: {message}")


def start(argv):
    """Starts a server and returns (process, port) once it prints port=N."""
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = read_line(proc, 10)
    if not line or not line.startswith("port="):
        fail(f"{' '.join(argv)} did not print port=N (got {line!r})")
    return proc, line.split("=", 1)[1]


def start_servers(build):
    echo = os.path.join(build, "apps/echo/shardloop_echo")
    ref = os.path.join(build, "bench/echo/echo_uring_ref")
    for binary in (echo, ref):
        if not os.access(binary, os.X_OK):
            fail(f"{binary} is not built (cmake --build --preset release)")
    servers = {}
    for name, extra in (("shardloop 1", ["--shards", "1"]),
                        ("shardloop 2 hash", ["--shards", "2"]),
                        ("shardloop 2 cpu", ["--shards", "2", "--spread", "cpu"])):
        proc, port = start([echo, "--port", "0"] + extra)
        servers[name] = ([proc], port)
    proc, port = start(["taskset", "-c", "0", ref, "--port", "0", "--reuseport"])
    servers["liburing 1"] = ([proc], port)
    first, port = start(["taskset", "-c", "0", ref, "--port", "0", "--reuseport"])
    second, _ = start(["taskset", "-c", "1", ref, "--port", port, "--reuseport"])
    servers["liburing 2"] = ([first, second], port)
    return servers


def drive(args, procs, port, connections, rate):
    argv = [os.path.join(args.build_dir, "apps/loadgen/shardloop_loadgen"), "--mode", "echo",
            "--port", port, "--connections", str(connections), "--size", "64",
            "--shards", "2", "--duration", str(args.duration), "--warmup", str(args.warmup),
            "--json", "--quiet"]
    for proc in procs:
        argv += ["--server-pid", str(proc.pid)]
    if rate:
        argv += ["--rate", str(rate)]
    code, out, err, _ = run_client(argv, args.duration + args.warmup + 60)
    if code != 0:
        fail(f"load generator exited {code}: {err.strip()[-300:]}")
    report = json.loads(out.strip().splitlines()[-1])
    if report.get("errors"):
        fail(f"load generator saw {report['errors']} errors")
    return (report["requests_per_s"], report["server_cpu_us_per_request"],
            report["latency_us"]["p50"])


def run(args, servers):
    names = list(servers)
    results = []
    for connections, rate in args.loads:
        trials = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else reversed(names):
                procs, port = servers[name]
                trials[name].append(drive(args, procs, port, connections, rate))
        load = f"{connections} conns, " + (f"{rate} req/s" if rate else "closed loop")
        for two, one in PAIRS:
            cpu_ratios = [b[1] / a[1] for a, b in zip(trials[one], trials[two])]
            rate_ratios = [b[0] / a[0] for a, b in zip(trials[one], trials[two])]
            results.append({
                "load": load, "connections": connections, "rate": rate, "server": two,
                "baseline": one,
                "cpu_us_per_request_1": median([t[1] for t in trials[one]]),
                "cpu_us_per_request_2": median([t[1] for t in trials[two]]),
                "requests_per_s_1": median([t[0] for t in trials[one]]),
                "requests_per_s_2": median([t[0] for t in trials[two]]),
                "p50_us_1": median([t[2] for t in trials[one]]),
                "p50_us_2": median([t[2] for t in trials[two]]),
                "cpu_ratio": median(cpu_ratios), "throughput_ratio": median(rate_ratios),
                "trials_1": trials[one], "trials_2": trials[two]})
        print_rows(results[-len(PAIRS):], header=len(results) == len(PAIRS))
    return {"results": results}


def print_rows(rows, header):
    if header:
        print(f"{'load':<26} {'2 servers':<17} {'1: µs/req':>9} {'2: µs/req':>9} "
              f"{'CPU ratio':>9} {'req/s ratio':>11} {'p50 µs 1 / 2':>15}")
    for row in rows:
        print(f"{row['load']:<26} {row['server']:<17} "
              f"{fmt(row['cpu_us_per_request_1'], '9.2f')} "
              f"{fmt(row['cpu_us_per_request_2'], '9.2f')} "
              f"{fmt(row['cpu_ratio'], '9.3f')} {fmt(row['throughput_ratio'], '11.3f')} "
              f"{fmt(row['p50_us_1'], '7.1f')} {fmt(row['p50_us_2'], '7.1f')}",
              flush=True)


def load_list(text):
    loads = []
    for item in text.split(","):
        connections, _, rate = item.partition("@")
        try:
            loads.append((int(connections), int(rate or 0)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected CONNECTIONS[@RATE] items separated by commas, got {item!r}")
    return loads


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default="build/release",
                   help="the release build (shardloop_echo, shardloop_loadgen, echo_uring_ref)")
    p.add_argument("--loads", type=load_list,
                   help="CONNECTIONS[@RATE],... (no rate: closed loop); default "
                        + ",".join(f"{c}@{r}" if r else str(c) for c, r in DEFAULT_LOADS))
    p.add_argument("--quick", action="store_true",
                   help="only " + ",".join(f"{c}@{r}" if r else str(c) for c, r in QUICK_LOADS))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per trial")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per trial")
    p.add_argument("--json", metavar="FILE", help="also write every trial here")
    args = p.parse_args()
    args.loads = args.loads or (QUICK_LOADS if args.quick else DEFAULT_LOADS)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        fail("--rounds must be >= 1, --duration > 0 and --warmup >= 0")
    if len(os.sched_getaffinity(0)) < 2:
        fail("needs two CPUs (0 and 1)")
    return args


def main():
    args = parse_args()
    start_driver()
    try:
        output = run(args, start_servers(args.build_dir))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
    worst = max(r["cpu_ratio"] for r in output["results"] if r["server"] == "shardloop 2 cpu")
    print(f"shardloop 2 cpu: largest CPU ratio {worst:.3f} (target <= {TARGET:.2f}: "
          f"{'met' if worst <= TARGET else 'missed'})")
    if args.json:
        write_json_report(args.json, output, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
