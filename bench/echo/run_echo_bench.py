#!/usr/bin/env python3
"""Echo benchmark driver: runs echo servers side by side the way
shared/BENCHMARKING.md asks and reports throughput, latency and server CPU
time per request, as medians and as ratios to the liburing reference.

Load mode (default): every server is started once, pinned to --server-cpu.
For each configuration (connections x message size) the driver runs
--rounds rounds; a round runs echo_loadgen (pinned to --client-cpus) once
against every server, in an order that reverses from one round to the next
(A B C, C B A, ...), so the servers of one configuration are measured back
to back. The load generator reads the server's /proc/PID/stat itself at the
instants its measured window opens and closes (--server-pid), so the CPU
time covers exactly the requests it counts.

Idle mode (--idle-rss N): each server is started afresh, its VmRSS read,
N idle connections opened with `echo_loadgen --idle`, and once the server
holds them all its VmRSS is read again: KiB per idle connection.

Servers are given as --server NAME=COMMAND (repeatable). The command is run
with "--port 0" appended and must print "port=N" as its first stdout line.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from procs import (copy_stream, fd_count, fmt, forget, median, read_line,  # noqa: E402
                   spawn, start_driver, stop, stop_all, wait_for, write_json_report)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CONNECTIONS = [1, 10, 100, 1000]
DEFAULT_SIZES = [64, 1024, 16384, 102400]
QUICK_CONNECTIONS = [100]
QUICK_SIZES = [64, 1024]

def fail(message):
    raise SystemExit(f"run_echo_bench: {message}")


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail(f"no VmRSS for pid {pid}")


class Server:
    def __init__(self, name, command, cpu, log_dir):
        self.name = name
        self.command = command
        self.cpu = cpu
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.proc = None
        self.port = None
        self.base_fds = None

    def start(self):
        argv = ["taskset", "-c", self.cpu] + shlex.split(self.command) + ["--port", "0"]
        log = open(self.log_path, "ab")
        self.proc = spawn(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        line = read_line(self.proc, timeout=10)
        if line is None or not line.startswith("port="):
            stop(self.proc)
            fail(f"server {self.name} did not print port=N (got {line!r}); log: {self.log_path}")
        self.port = int(line.split("=", 1)[1])
        # Whatever else the server prints goes to its log, so that a full
        # pipe can never block it.
        threading.Thread(target=copy_stream, args=(self.proc.stdout, self.log_path),
                         daemon=True).start()
        # Let the server finish starting before its fd count is the baseline.
        time.sleep(0.3)
        self.base_fds = fd_count(self.proc.pid)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self):
        if self.proc is not None:
            code = stop(self.proc)
            self.proc = None
            return code
        return None

    def settled(self, timeout=10.0):
        """None once the server holds no more fds than before: the previous
        trial's connections are closed and none leaked. Otherwise the number
        of extra fds, which become the new baseline, so that a descriptor a
        server opens lazily once is reported once and not waited for again."""
        if wait_for(lambda: fd_count(self.proc.pid) <= self.base_fds, timeout):
            return None
        extra = fd_count(self.proc.pid) - self.base_fds
        self.base_fds += extra
        return extra


def loadgen_trial(args, server, connections, size):
    argv = ["taskset", "-c", args.client_cpus, args.loadgen,
            "--host", args.host, "--port", str(server.port),
            "--connections", str(connections), "--size", str(size),
            "--duration", str(args.duration), "--warmup", str(args.warmup),
            "--threads", str(args.threads), "--server-pid", str(server.proc.pid)]
    # Connecting takes well under a millisecond per connection on loopback.
    timeout = args.warmup + args.duration + 30 + connections / 500
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return {"failed": f"echo_loadgen timed out after {timeout:.0f} s"}
    forget(proc)
    if proc.returncode != 0:
        return {"failed": f"echo_loadgen exited {proc.returncode}: {err.decode().strip()}"}
    result = json.loads(out.decode().strip().splitlines()[-1])
    requests = result["requests"]
    cpu_us = result["server_user_us"] + result["server_sys_us"]
    result["server_cpu_us"] = cpu_us
    result["cpu_us_per_req"] = cpu_us / requests if requests else None
    result["user_us_per_req"] = result["server_user_us"] / requests if requests else None
    result["sys_us_per_req"] = result["server_sys_us"] / requests if requests else None
    # Shares of one CPU over the window. "other" is what the machine was busy
    # with besides the two: another user's work competing for the CPUs.
    window_us = result["seconds"] * 1e6
    client_us = result["client_user_us"] + result["client_sys_us"]
    result["server_cpu_share"] = cpu_us / window_us
    result["client_cpu_share"] = client_us / window_us
    other_us = max(0.0, result["machine_busy_us"] - cpu_us - client_us)
    result["other_cpu_share"] = other_us / window_us
    return result


def run_load(args, servers):
    configs = [(c, s) for c in args.connections for s in args.sizes]
    per_trial = args.warmup + args.duration + 1.5
    estimate = len(configs) * args.rounds * len(servers) * per_trial
    print(f"{len(configs)} configurations x {args.rounds} rounds x {len(servers)} servers, "
          f"about {estimate / 60:.1f} min", file=sys.stderr)
    for server in servers:
        server.start()
    trials = []
    for connections, size in configs:
        for round_index in range(args.rounds):
            order = servers if round_index % 2 == 0 else list(reversed(servers))
            for server in order:
                if not server.alive():
                    print(f"server {server.name} died (exit {server.proc.returncode}), "
                          f"restarting; log: {server.log_path}", file=sys.stderr)
                    server.start()
                result = loadgen_trial(args, server, connections, size)
                result.update(server=server.name, round=round_index,
                              connections=connections, size=size)
                leak = server.settled() if server.alive() else None
                if leak is not None:
                    result["fd_leak"] = leak
                trials.append(result)
                print(progress_line(result), file=sys.stderr)
    for server in servers:
        server.shutdown()
    summary = summarize(args, servers, configs, trials)
    print_table(args, summary)
    return {"trials": trials, "summary": summary}


def progress_line(r):
    head = f"  c={r['connections']:<5} size={r['size']:<6} round {r['round']} {r['server']:<8}"
    if "failed" in r:
        return f"{head} FAILED: {r['failed']}"
    cpu = r["cpu_us_per_req"]
    cpu_text = f"{cpu:.2f}" if cpu is not None else "-"
    leak = f" FD LEAK {r['fd_leak']}" if "fd_leak" in r else ""
    return (f"{head} {r['requests_per_s']:>10.0f} req/s  p50 {r['p50_us']:.0f} us  "
            f"cpu {cpu_text} us/req  other work {100 * r['other_cpu_share']:.0f}%  "
            f"errors {r['errors']}{leak}")


def summarize(args, servers, configs, trials):
    """Medians per server and configuration, and the median of the
    per-round ratios to the reference server (same round, same config)."""
    summary = []
    for connections, size in configs:
        mine = [t for t in trials if t["connections"] == connections and t["size"] == size
                and "failed" not in t]
        reference = {t["round"]: t for t in mine if t["server"] == args.reference}
        for server in servers:
            rows = [t for t in mine if t["server"] == server.name]
            entry = {"connections": connections, "size": size, "server": server.name,
                     "trials": len(rows),
                     "failed": sum(1 for t in trials if t["server"] == server.name
                                   and t["connections"] == connections and t["size"] == size
                                   and "failed" in t),
                     "errors": sum(t["errors"] for t in rows),
                     "fd_leaks": sum(1 for t in rows if "fd_leak" in t)}
            for key in ("requests_per_s", "p50_us", "p99_us", "cpu_us_per_req",
                        "user_us_per_req", "sys_us_per_req", "server_cpu_share",
                        "client_cpu_share", "other_cpu_share"):
                entry[key] = median([t[key] for t in rows])
            rps_ratios, cpu_ratios = [], []
            for t in rows:
                ref = reference.get(t["round"])
                if ref is None:
                    continue
                if ref["requests_per_s"]:
                    rps_ratios.append(t["requests_per_s"] / ref["requests_per_s"])
                if t["cpu_us_per_req"] and ref["cpu_us_per_req"]:
                    cpu_ratios.append(t["cpu_us_per_req"] / ref["cpu_us_per_req"])
            entry["rps_ratio"] = median(rps_ratios)
            entry["cpu_ratio"] = median(cpu_ratios)
            summary.append(entry)
    return summary


def print_table(args, summary):
    print(f"\nMedians of {args.rounds} rounds; ratios are medians of per-round ratios to "
          f"'{args.reference}'. cpu/req, usr, sys: server CPU time per request (us).\n"
          "srv%, cli%: server and load generator CPU over the window; oth%: other work on "
          "the machine meanwhile (100 = one CPU).")
    header = (f"{'conns':>5} {'size':>6} {'server':<8} {'req/s':>9} {'p50us':>8} {'p99us':>8} "
              f"{'cpu/req':>7} {'usr':>6} {'sys':>6} {'srv%':>4} {'cli%':>4} {'oth%':>4} "
              f"{'rps/ref':>7} {'cpu/ref':>7} {'err':>3}")
    print(header)
    print("-" * len(header))
    for e in summary:
        shares = [None if e[k] is None else 100 * e[k]
                  for k in ("server_cpu_share", "client_cpu_share", "other_cpu_share")]
        note = "" if not e["failed"] and not e["fd_leaks"] else \
            f"  ({e['failed']} failed, {e['fd_leaks']} fd leaks)"
        print(f"{e['connections']:>5} {e['size']:>6} {e['server']:<8} "
              f"{fmt(e['requests_per_s'], '9.0f')} {fmt(e['p50_us'], '8.1f')} "
              f"{fmt(e['p99_us'], '8.1f')} {fmt(e['cpu_us_per_req'], '7.2f')} "
              f"{fmt(e['user_us_per_req'], '6.2f')} {fmt(e['sys_us_per_req'], '6.2f')} "
              f"{fmt(shares[0], '4.0f')} {fmt(shares[1], '4.0f')} {fmt(shares[2], '4.0f')} "
              f"{fmt(e['rps_ratio'], '7.3f')} "
              f"{fmt(e['cpu_ratio'], '7.3f')} {e['errors']:>3}{note}")
    other = median([e["other_cpu_share"] for e in summary])
    if other is not None and other > 0.10:
        print(f"WARNING: other work kept {100 * other:.0f}% of a CPU busy during the trials "
              "(oth%); it preempts the server and the load generator and changes how much "
              "work each wake-up batches, so these figures hold for this run only.")


def run_idle_rss(args, servers):
    n = args.idle_rss
    results = []
    for server in servers:
        server.start()
        rss_before = vm_rss_kib(server.proc.pid)
        argv = ["taskset", "-c", args.client_cpus, args.loadgen, "--idle",
                "--host", args.host, "--port", str(server.port), "--connections", str(n)]
        # The loadgen holds its connections until its stdin closes.
        holder = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        entry = {"server": server.name, "connections": n, "rss_before_kib": rss_before}
        line = read_line(holder, timeout=60 + n / 200)
        if line != "ready":
            entry["failed"] = f"echo_loadgen --idle did not get ready (got {line!r})"
        elif not wait_for(lambda: fd_count(server.proc.pid) >= server.base_fds + n, 30):
            entry["failed"] = (f"server holds {fd_count(server.proc.pid) - server.base_fds} "
                               f"of {n} connections after 30 s")
        else:
            time.sleep(1.0)  # let lazily allocated per-connection state settle
            rss_after = vm_rss_kib(server.proc.pid)
            entry.update(rss_after_kib=rss_after,
                         kib_per_connection=(rss_after - rss_before) / n)
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        stop(holder)
        leak = server.settled(timeout=30) if server.alive() else None
        if leak is not None:
            entry["fd_leak"] = leak
        server.shutdown()
        results.append(entry)
    print(f"\nIdle connections: {n}. KiB/conn = (VmRSS with them - VmRSS without) / {n}; "
          "kernel socket memory is not in VmRSS.")
    print(f"{'server':<8} {'rss0 KiB':>9} {'rss1 KiB':>9} {'KiB/conn':>8}")
    for e in results:
        if "failed" in e:
            print(f"{e['server']:<8} FAILED: {e['failed']}")
            continue
        leak = f"  FD LEAK {e['fd_leak']}" if "fd_leak" in e else ""
        print(f"{e['server']:<8} {e['rss_before_kib']:>9} {e['rss_after_kib']:>9} "
              f"{e['kib_per_connection']:>8.2f}{leak}")
    return {"idle_rss": results}


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def find_build_dir():
    for candidate in (os.path.join(REPO, "build", "release", "bench", "echo"),
                      os.path.join(REPO, "build", "bench", "echo")):
        if os.path.exists(os.path.join(candidate, "echo_loadgen")):
            return candidate
    return None


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", help="directory with echo_loadgen and the reference servers "
                   "(default: build/release/bench/echo or build/bench/echo in the repository)")
    p.add_argument("--server", action="append", default=[], metavar="NAME=COMMAND",
                   help="a server to measure (repeatable); default: uring, shardloop "
                   "(apps/echo of the same build tree), asio and uv (each when built)")
    p.add_argument("--reference", default="uring", help="server the ratios are taken against")
    p.add_argument("--connections", type=int_list, help="comma-separated connection counts")
    p.add_argument("--sizes", type=int_list, help="comma-separated message sizes in bytes")
    p.add_argument("--quick", action="store_true",
                   help=f"connections {QUICK_CONNECTIONS}, sizes {QUICK_SIZES}")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per trial")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per trial")
    p.add_argument("--threads", type=int, default=1, help="echo_loadgen threads")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--server-cpu", default="0", help="taskset CPU list for the servers")
    p.add_argument("--client-cpus", default="1", help="taskset CPU list for the load generator")
    p.add_argument("--idle-rss", type=int, metavar="N",
                   help="measure memory per idle connection with N connections instead")
    p.add_argument("--json", metavar="FILE", help="also write every trial and the summary here")
    args = p.parse_args()

    args.build_dir = args.build_dir or find_build_dir()
    if args.build_dir is None:
        fail("no build directory with echo_loadgen found; pass --build-dir")
    args.loadgen = os.path.join(args.build_dir, "echo_loadgen")
    if not os.access(args.loadgen, os.X_OK):
        fail(f"{args.loadgen} is not an executable")
    if not args.server:
        for name in ("uring", "asio", "uv"):
            path = os.path.join(args.build_dir, f"echo_{name}_ref")
            if os.access(path, os.X_OK):
                args.server.append(f"{name}={shlex.quote(path)}")
        # shardloop's own echo server (apps/echo), from the same build tree.
        ours = os.path.normpath(os.path.join(args.build_dir, "..", "..", "apps", "echo",
                                             "shardloop_echo"))
        if os.access(ours, os.X_OK):
            args.server.insert(1, f"shardloop={shlex.quote(ours)}")
    names = []
    for spec in args.server:
        if "=" not in spec:
            fail(f"--server expects NAME=COMMAND, got {spec!r}")
        names.append(spec.split("=", 1)[0])
    if len(set(names)) != len(names):
        fail("server names must be unique")
    if args.idle_rss is None and args.reference not in names:
        fail(f"reference server {args.reference!r} is not among {names}")
    if args.quick:
        args.connections = args.connections or QUICK_CONNECTIONS
        args.sizes = args.sizes or QUICK_SIZES
    args.connections = args.connections or DEFAULT_CONNECTIONS
    args.sizes = args.sizes or DEFAULT_SIZES
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        fail("--rounds must be >= 1, --duration > 0 and --warmup >= 0")
    return args


def main():
    args = parse_args()
    start_driver()
    log_dir = tempfile.mkdtemp(prefix="echo-bench-")
    servers = [Server(name, command, args.server_cpu, log_dir)
               for name, command in (s.split("=", 1) for s in args.server)]
    try:
        if args.idle_rss is not None:
            output = run_idle_rss(args, servers)
        else:
            output = run_load(args, servers)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
    print(f"server logs: {log_dir}", file=sys.stderr)
    if args.json:
        write_json_report(args.json, output, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
