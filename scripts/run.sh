#!/usr/bin/env bash
# The main job (README). As root on a fresh Debian 12 machine:
#   bash scripts/run.sh
# 1. installs the dependencies (scripts/install-deps.sh) and builds the
#    `release` preset;
# 2. starts shardloop_httpd (apps/httpd) on every CPU, one pinned shard each,
#    drives it with shardloop_loadgen (apps/loadgen) for a few seconds per
#    workload (plaintext with and without pipelining, JSON, a static file;
#    then plaintext and JSON on a server started with --spread cpu),
#    prints a table of what it achieved and stops it (bench/http/main_job.py);
# 3. a short side-by-side run against nginx, alternating, 1 core and every
#    core (bench/http/run_http_bench.py; scripts/bench.sh runs the longer one).
# Exits non-zero when the build, a request or a step fails.
# Environment: JOBS (default 2) for the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${JOBS:-2}
build=build/release

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j "$jobs" --target shardloop_httpd shardloop_loadgen

printf '\n==== shardloop_httpd on every core, driven by shardloop_loadgen\n'
status=0
python3 bench/http/main_job.py --build-dir "$build" || status=1

printf '\n==== shardloop_httpd against nginx (short: 3 rounds of 2 s per cell)\n'
python3 bench/http/run_http_bench.py --build-dir "$build" --clients loadgen --rounds 3 \
    --duration 2 || status=1

if ((status)); then
    echo "scripts/run.sh: FAILED"
fi
exit "$status"
