"""Process helpers the benchmark drivers share (bench/echo/run_echo_bench.py,
bench/http/run_http_bench.py): starting servers and clients, stopping them
on every way out, reading their first lines, and their CPU time from /proc."""

import json
import os
import platform
import resource
import shlex
import sys
import select
import signal
import statistics
import subprocess
import time

# Every process a driver starts, so that any exit path can stop them.
_children = []
_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit():
    """Raises the soft fd limit to the hard one, for the driver and, by
    inheritance, every server under test: they need one fd per connection,
    and not all of them raise the limit themselves."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_driver():
    """What every driver does first: raises the fd limit, and makes SIGTERM
    take Ctrl-C's way out (SystemExit, through the driver's cleanup, which
    stops what it started)."""
    raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def spawn(argv, **kwargs):
    proc = subprocess.Popen(argv, **kwargs)
    _children.append(proc)
    return proc


def forget(proc):
    if proc in _children:
        _children.remove(proc)


def stop(proc, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    forget(proc)
    return proc.returncode


def stop_all():
    for proc in list(_children):
        stop(proc, grace=2.0)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def read_line(proc, timeout):
    """The next stdout line of proc, or None on timeout or end of file."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return None
    line = proc.stdout.readline()
    return line.decode().strip() if line else None


def copy_stream(stream, path):
    with open(path, "ab") as log:
        for line in stream:
            log.write(line)
            log.flush()


def cpu_seconds(pids):
    """User + system CPU time of the processes (all their threads), summed;
    a process that has gone counts as 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # The command name may hold spaces: the fields after it start
                # past the last ')'. utime and stime are fields 14 and 15.
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def child_pids(pid):
    """The direct children of pid (nginx's workers, say)."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass
    return children


def run_client(argv, timeout):
    """Runs a client to completion: (returncode, stdout, stderr, CPU seconds
    it used). returncode is None when it timed out. The CPU time is the
    growth of RUSAGE_CHILDREN: the client is the only child reaped meanwhile
    (servers run until the end; taskset execs the client in its process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return None, "", "timed out", None
    forget(proc)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.returncode, out.decode(), err.decode(), cpu


def fmt(value, spec):
    """A table cell: `value` formatted, or "-" when there is none."""
    return "-" if value is None else format(value, spec)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def write_json_report(path, output, args):
    """Writes a driver's results with its settings and the machine's facts."""
    output["settings"] = {k: v for k, v in vars(args).items()}
    output["machine"] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                         "command": " ".join(shlex.quote(a) for a in sys.argv)}
    with open(path, "w") as out:
        json.dump(output, out, indent=1)
    print(f"wrote {path}", file=sys.stderr)
