#!/usr/bin/env python3
"""HTTP benchmark driver: shardloop's httpd (apps/httpd) against nginx
(Debian's nginx-light), the way shared/BENCHMARKING.md asks: both servers
run side by side, every trial drives one of them, the order alternates
round by round (A B, B A, ...), and the report gives medians and the median
of the per-round ratios httpd / nginx.

GET /plaintext: the 13-byte "Hello, World!" of the usual framework
benchmarks, which nginx answers with `return 200` (access log off, keep-alive
without a request limit). Server CPU per request is the growth of the
servers' utime + stime (/proc/PID/stat; nginx: its workers and master)
across the client's run, divided by the responses the client counted.

Placements (--placements):
  one  1 shard vs 1 worker, the server on CPU 0 and the client on CPU 1;
  all  one shard / one worker per CPU of the machine, pinned, the client on
       every CPU too (on a 2-CPU machine the client competes with them).
Clients (--clients): shardloop_loadgen (apps/loadgen) and wrk when it is
installed, each at every --pipeline depth, --connections connections.

--client-check: also shows that the load generator is not the bottleneck:
against bench/echo's raw liburing echo server, shardloop_loadgen (echo mode)
against bench/echo's raw liburing load generator, and on the HTTP servers
the two clients' rates side by side (the table's loadgen and wrk rows).
"""

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from procs import (child_pids, copy_stream, cpu_seconds, fmt, median,  # noqa: E402
                   read_line, run_client, spawn, start_driver, stop, stop_all, wait_for,
                   write_json_report)

BODY = "Hello, World!"


def fail(message):
    raise SystemExit(f"run_http_bench: {message}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Httpd:
    name = "httpd"

    def __init__(self, binary, cpus, log_dir, extra_args=()):
        self.binary, self.cpus, self.extra_args = binary, cpus, list(extra_args)
        self.log_path = os.path.join(log_dir, "httpd.log")
        self.proc = self.port = None

    def start(self):
        argv = ["taskset", "-c", ",".join(map(str, self.cpus)), self.binary,
                "--host", "127.0.0.1", "--port", "0", "--shards", str(len(self.cpus)),
                "--cpus", ",".join(map(str, self.cpus))] + self.extra_args
        with open(self.log_path, "ab") as log:
            self.proc = spawn(argv, stdout=subprocess.PIPE, stderr=log,
                              stdin=subprocess.DEVNULL)
        line = read_line(self.proc, timeout=10)
        if line is None or not line.startswith("port="):
            stop(self.proc)
            fail(f"httpd did not print port=N (got {line!r}); log: {self.log_path}")
        self.port = int(line.split("=", 1)[1])
        threading.Thread(target=copy_stream, args=(self.proc.stdout, self.log_path),
                         daemon=True).start()

    def pids(self):
        return [self.proc.pid]

    def shutdown(self):
        return stop(self.proc) if self.proc else None


class Nginx:
    name = "nginx"

    def __init__(self, binary, cpus, log_dir):
        self.binary, self.cpus = binary, cpus
        self.dir = os.path.join(log_dir, f"nginx-{len(cpus)}")
        self.log_path = os.path.join(self.dir, "error.log")
        self.proc = self.port = None

    def config(self):
        # One worker per CPU, each pinned to its own (as httpd pins its
        # shards), SO_REUSEPORT listeners, no access log, keep-alive without
        # nginx's default limit of 1,000 requests per connection.
        masks = " ".join(format(1 << cpu, "b") for cpu in self.cpus)
        temp = {name: os.path.join(self.dir, name)
                for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        temp_paths = "\n".join(f"    {name}_temp_path {path};" for name, path in temp.items())
        return f"""daemon off;
master_process on;
worker_processes {len(self.cpus)};
worker_cpu_affinity {masks};
pid {self.dir}/nginx.pid;
error_log {self.log_path} warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 65s;
{temp_paths}
    server {{
        listen 127.0.0.1:{self.port} reuseport backlog=4096;
        location = /plaintext {{
            default_type text/plain;
            return 200 "{BODY}";
        }}
    }}
}}
"""

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        argv = [self.binary, "-c", conf, "-p", self.dir]
        with open(os.path.join(self.dir, "stderr.log"), "ab") as log:
            self.proc = spawn(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        ok = wait_for(lambda: self.proc.poll() is None and accepts(self.port)
                      and len(child_pids(self.proc.pid)) >= len(self.cpus), 10)
        if not ok:
            stop(self.proc)
            fail(f"nginx did not start; see {self.dir}")

    def pids(self):
        return [self.proc.pid] + child_pids(self.proc.pid)

    def shutdown(self):
        # nginx's fast shutdown is SIGTERM, which procs.stop sends.
        return stop(self.proc) if self.proc else None


# ---- clients -------------------------------------------------------------

def loadgen_trial(args, server, cpus, pipeline):
    cpu_list = ",".join(map(str, cpus))
    argv = ["taskset", "-c", cpu_list, args.loadgen, "--mode", "http", "--host", "127.0.0.1",
            "--port", str(server.port), "--path", "/plaintext",
            "--connections", str(args.connections), "--pipeline", str(pipeline),
            "--shards", str(len(cpus)), "--cpus", cpu_list,
            "--duration", str(args.duration), "--warmup", str(args.warmup),
            "--json", "--quiet"]
    for pid in server.pids():
        argv += ["--server-pid", str(pid)]
    code, out, err, client_cpu = run_client(argv, args.warmup + args.duration + 30)
    if code != 0:
        return {"failed": f"loadgen exited {code}: {err.strip()[-300:]}"}
    r = json.loads(out.strip().splitlines()[-1])
    status = r.get("status", {})
    bad = sum(n for code_text, n in status.items() if code_text != "200")
    return {"requests_per_s": r["requests_per_s"], "requests": r["requests"],
            "p50_us": r["latency_us"]["p50"], "p99_us": r["latency_us"]["p99"],
            "server_cpu_s": r["server_cpu_s"],
            "cpu_us_per_req": r["server_cpu_us_per_request"],
            "client_cpu_us_per_req": (r["client_cpu_s"] * 1e6 / r["requests"]
                                      if r["requests"] else None),
            "errors": r["errors"] + bad}


WRK_PIPELINE = """-- Sends `depth` GETs back to back on every connection (wrk counts each response).
local depth = tonumber(os.getenv("WRK_PIPELINE") or "1")
init = function(args)
    local requests = {}
    for i = 1, depth do requests[i] = wrk.format(nil, "/plaintext") end
    batch = table.concat(requests)
end
request = function() return batch end
"""


def wrk_latency_us(text):
    """wrk prints latencies as 812.00us, 1.23ms, 2.01s or 1.50m."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return None
    return float(match.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[match.group(2)]


def wrk_trial(args, server, cpus, pipeline):
    cpu_list = ",".join(map(str, cpus))
    argv = ["taskset", "-c", cpu_list, args.wrk, "-t", str(len(cpus)),
            "-c", str(args.connections), "-d", f"{args.duration:g}s", "--latency",
            "-s", args.wrk_script, f"http://127.0.0.1:{server.port}/plaintext"]
    os.environ["WRK_PIPELINE"] = str(pipeline)
    before = cpu_seconds(server.pids())
    code, out, err, client_cpu = run_client(argv, args.duration + 30)
    server_cpu = cpu_seconds(server.pids()) - before
    if code != 0:
        return {"failed": f"wrk exited {code}: {err.strip()[-300:]}"}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not rate or not total:
        return {"failed": f"cannot read wrk's output: {out[-300:]}"}
    requests = int(total.group(1))
    # With pipelining wrk times only the first response of each batch, and
    # its percentiles come out as 0.00us: they are not reported.
    timed = pipeline == 1
    return {"requests_per_s": float(rate.group(1)), "requests": requests,
            "p50_us": wrk_latency_us(p50.group(1)) if p50 and timed else None,
            "p99_us": wrk_latency_us(p99.group(1)) if p99 and timed else None,
            "server_cpu_s": server_cpu,
            "cpu_us_per_req": server_cpu * 1e6 / requests if requests else None,
            "client_cpu_us_per_req": client_cpu * 1e6 / requests if requests else None,
            "errors": (sum(int(g) for g in errors.groups()) if errors else 0)
            + (int(non2xx.group(1)) if non2xx else 0)}


# ---- the run -------------------------------------------------------------

def placements(args):
    cpus = sorted(os.sched_getaffinity(0))
    result = {}
    if "one" in args.placements:
        if len(cpus) < 2:
            fail("placement 'one' needs two CPUs")
        result["one"] = ([cpus[0]], [cpus[1]])
    if "all" in args.placements:
        result["all"] = (cpus, cpus)
    return result


def run(args, log_dir):
    trials = []
    clients = [("loadgen", loadgen_trial)] + ([("wrk", wrk_trial)] if args.wrk else [])
    for placement, (server_cpus, client_cpus) in placements(args).items():
        servers = [Httpd(args.httpd, server_cpus, log_dir, shlex.split(args.httpd_args)),
                   Nginx(args.nginx, server_cpus, log_dir)]
        for server in servers:
            server.start()
        try:
            for client_name, trial in clients:
                for pipeline in args.pipeline:
                    for round_index in range(args.rounds):
                        order = servers if round_index % 2 == 0 else servers[::-1]
                        for server in order:
                            result = trial(args, server, client_cpus, pipeline)
                            result.update(placement=placement, client=client_name,
                                          pipeline=pipeline, server=server.name,
                                          round=round_index)
                            trials.append(result)
                            print(progress_line(result), file=sys.stderr)
        finally:
            for server in servers:
                code = server.shutdown()
                if code not in (0, None):
                    print(f"{server.name} exited with status {code}", file=sys.stderr)
    return trials


def progress_line(r):
    head = (f"  {r['placement']:<3} {r['client']:<7} pipeline {r['pipeline']:<3} "
            f"round {r['round']} {r['server']:<5}")
    if "failed" in r:
        return f"{head} FAILED: {r['failed']}"
    return (f"{head} {r['requests_per_s']:>10.0f} req/s  p99 {fmt(r['p99_us'], '.0f')} us  "
            f"server cpu {fmt(r['cpu_us_per_req'], '.2f')} us/req  errors {r['errors']}")


def summarize(trials):
    keys = sorted({(t["placement"], t["client"], t["pipeline"]) for t in trials},
                  key=lambda k: (k[0] != "one", k[1] != "loadgen", k[2]))
    rows = []
    for placement, client, pipeline in keys:
        mine = [t for t in trials if (t["placement"], t["client"], t["pipeline"]) ==
                (placement, client, pipeline) and "failed" not in t]
        by_server = {name: [t for t in mine if t["server"] == name]
                     for name in ("httpd", "nginx")}
        row = {"placement": placement, "client": client, "pipeline": pipeline,
               "failed": sum(1 for t in trials if "failed" in t and
                             (t["placement"], t["client"], t["pipeline"]) ==
                             (placement, client, pipeline))}
        for name, ts in by_server.items():
            for key in ("requests_per_s", "p99_us", "cpu_us_per_req", "client_cpu_us_per_req"):
                row[f"{name}_{key}"] = median([t[key] for t in ts])
            row[f"{name}_errors"] = sum(t["errors"] for t in ts)
        nginx_by_round = {t["round"]: t for t in by_server["nginx"]}
        rps, cpu = [], []
        for t in by_server["httpd"]:
            ref = nginx_by_round.get(t["round"])
            if ref and ref["requests_per_s"]:
                rps.append(t["requests_per_s"] / ref["requests_per_s"])
            if ref and t["cpu_us_per_req"] and ref["cpu_us_per_req"]:
                cpu.append(t["cpu_us_per_req"] / ref["cpu_us_per_req"])
        row["rps_ratio"], row["cpu_ratio"] = median(rps), median(cpu)
        rows.append(row)
    return rows


def print_table(args, rows):
    print(f"\nGET /plaintext, {args.connections} connections, {args.duration:g} s per trial, "
          f"medians of {args.rounds} rounds. cpu/req: server CPU time per request (us).\n"
          "ratio columns: medians of the per-round ratios httpd / nginx "
          "(target: req/s >= 1.2, cpu/req <= 0.8). wrk's latencies with pipelining are not "
          "usable (it times one response per batch): '-'.")
    header = (f"{'placement':<9} {'client':<7} {'pipe':>4} | {'httpd req/s':>11} {'p99us':>7} "
              f"{'cpu/req':>7} | {'nginx req/s':>11} {'p99us':>7} {'cpu/req':>7} | "
              f"{'req/s x':>7} {'cpu x':>6} {'err':>3}")
    print(header)
    print("-" * len(header))
    for r in rows:
        note = f"  ({r['failed']} failed)" if r["failed"] else ""
        label = {"one": "1 core", "all": "all"}[r["placement"]]
        print(f"{label:<9} {r['client']:<7} {r['pipeline']:>4} | "
              f"{fmt(r['httpd_requests_per_s'], '11.0f')} {fmt(r['httpd_p99_us'], '7.0f')} "
              f"{fmt(r['httpd_cpu_us_per_req'], '7.2f')} | "
              f"{fmt(r['nginx_requests_per_s'], '11.0f')} {fmt(r['nginx_p99_us'], '7.0f')} "
              f"{fmt(r['nginx_cpu_us_per_req'], '7.2f')} | "
              f"{fmt(r['rps_ratio'], '7.2f')} {fmt(r['cpu_ratio'], '6.2f')} "
              f"{r['httpd_errors'] + r['nginx_errors']:>3}{note}")


# ---- client check: is the load generator the bottleneck? ----------------

def client_check(args, log_dir):
    """shardloop_loadgen (echo mode, one shard on CPU 1) against bench/echo's
    raw liburing load generator, both driving the raw liburing echo server on
    CPU 0, alternating; 100 connections, 64-byte messages, ping-pong."""
    server_bin = os.path.join(args.echo_dir, "echo_uring_ref")
    raw_bin = os.path.join(args.echo_dir, "echo_loadgen")
    if not (os.access(server_bin, os.X_OK) and os.access(raw_bin, os.X_OK)):
        print(f"client check skipped: no echo_uring_ref/echo_loadgen in {args.echo_dir}",
              file=sys.stderr)
        return None
    with open(os.path.join(log_dir, "echo_uring_ref.log"), "ab") as log:
        server = spawn(["taskset", "-c", "0", server_bin, "--port", "0"],
                       stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    line = read_line(server, 10)
    if line is None or not line.startswith("port="):
        stop(server)
        fail(f"echo_uring_ref did not print port=N (got {line!r})")
    port = line.split("=", 1)[1]
    common = ["--port", port, "--connections", "100", "--duration", str(args.duration),
              "--warmup", str(args.warmup)]
    clients = {
        "shardloop_loadgen": ["taskset", "-c", "1", args.loadgen, "--mode", "echo",
                              "--size", "64", "--shards", "1", "--cpus", "1", "--json",
                              "--quiet"] + common,
        "raw liburing": ["taskset", "-c", "1", raw_bin, "--size", "64"] + common,
    }
    rates = {name: [] for name in clients}
    cpu = {name: [] for name in clients}
    try:
        for round_index in range(args.rounds):
            names = list(clients) if round_index % 2 == 0 else list(clients)[::-1]
            for name in names:
                code, out, err, client_cpu = run_client(clients[name],
                                                        args.warmup + args.duration + 30)
                if code != 0:
                    print(f"  client check: {name} exited {code}: {err.strip()[-200:]}",
                          file=sys.stderr)
                    continue
                r = json.loads(out.strip().splitlines()[-1])
                rates[name].append(r["requests_per_s"])
                cpu[name].append(client_cpu / (r["requests_per_s"] *
                                               (args.duration + args.warmup)) * 1e6)
                print(f"  client check round {round_index} {name:<18} "
                      f"{r['requests_per_s']:>10.0f} req/s", file=sys.stderr)
    finally:
        stop(server)
    result = {name: {"requests_per_s": median(rates[name]),
                     "client_cpu_us_per_req": median(cpu[name])} for name in clients}
    ours, raw = (result[n]["requests_per_s"] for n in clients)
    result["ratio"] = ours / raw if ours and raw else None
    print("\nClient check: the raw liburing echo server (CPU 0) driven by each client (CPU 1), "
          f"100 connections x 64 B ping-pong, medians of {args.rounds} rounds:")
    for name in clients:
        print(f"  {name:<18} {fmt(result[name]['requests_per_s'], '10.0f')} req/s  "
              f"client CPU {fmt(result[name]['client_cpu_us_per_req'], '.2f')} us/req "
              "(including connection set-up)")
    print(f"  shardloop_loadgen / raw liburing: {fmt(result['ratio'], '.3f')}")
    return result


# ---- command line --------------------------------------------------------

def find(path_options):
    for path in path_options:
        if path and os.access(path, os.X_OK):
            return path
    return None


def csv(kind):
    def parse(text):
        try:
            return [kind(x) for x in text.split(",") if x]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return parse


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default=os.path.join(REPO, "build", "release"),
                   help="release build tree with apps/httpd, apps/loadgen, bench/echo")
    p.add_argument("--placements", type=csv(str), default=["one", "all"],
                   help="comma-separated: one (1 shard vs 1 worker), all (every CPU)")
    p.add_argument("--clients", type=csv(str), default=["loadgen", "wrk"],
                   help="loadgen, wrk (wrk only when installed)")
    p.add_argument("--pipeline", type=csv(int), default=[1, 16],
                   help="comma-separated pipelining depths")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per trial")
    p.add_argument("--warmup", type=float, default=0.5,
                   help="unmeasured seconds per loadgen trial (wrk has none)")
    p.add_argument("--httpd-args", default="",
                   help="more options for shardloop_httpd, e.g. '--idle-poll 50'")
    p.add_argument("--client-check", action="store_true",
                   help="also compare shardloop_loadgen with the raw liburing echo client")
    p.add_argument("--json", metavar="FILE", help="also write every trial and the summary here")
    args = p.parse_args()
    for name in args.placements:
        if name not in ("one", "all"):
            fail(f"--placements: unknown placement {name!r}")
    for name in args.clients:
        if name not in ("loadgen", "wrk"):
            fail(f"--clients: unknown client {name!r}")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.connections < 1:
        fail("--rounds and --connections must be >= 1, --duration > 0, --warmup >= 0")
    if any(d < 1 for d in args.pipeline):
        fail("--pipeline: depths must be >= 1")
    build = args.build_dir
    args.httpd = find([os.path.join(build, "apps", "httpd", "shardloop_httpd")])
    args.loadgen = find([os.path.join(build, "apps", "loadgen", "shardloop_loadgen")])
    args.echo_dir = os.path.join(build, "bench", "echo")
    if not args.httpd or not args.loadgen:
        fail(f"shardloop_httpd or shardloop_loadgen not built in {build}")
    args.nginx = find(["/usr/sbin/nginx", "/usr/bin/nginx"])
    if not args.nginx:
        fail("nginx is not installed (Debian: nginx-light)")
    args.wrk = find(["/usr/bin/wrk"]) if "wrk" in args.clients else None
    if "wrk" in args.clients and not args.wrk:
        print("wrk is not installed (Debian: wrk): the loadgen rows only", file=sys.stderr)
    return args


def main():
    args = parse_args()
    start_driver()
    log_dir = tempfile.mkdtemp(prefix="http-bench-")
    if args.wrk:
        args.wrk_script = os.path.join(log_dir, "pipeline.lua")
        with open(args.wrk_script, "w") as f:
            f.write(WRK_PIPELINE)
    output = {}
    try:
        trials = run(args, log_dir)
        rows = summarize(trials)
        print_table(args, rows)
        output.update(trials=trials, summary=rows)
        if args.client_check:
            output["client_check"] = client_check(args, log_dir)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
    print(f"logs: {log_dir}", file=sys.stderr)
    if args.json:
        write_json_report(args.json, output, args)
    failed = sum(r["failed"] for r in output.get("summary", []))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
