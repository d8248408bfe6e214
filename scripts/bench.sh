#!/usr/bin/env bash
# Every benchmark (README). As root on a fresh Debian 12 machine:
#   bash scripts/bench.sh
# Installs the dependencies, builds the `release` preset, runs every
# example program in build/release/apps/examples/ (each bounded to 10 s), then
# every micro-benchmark in build/release/bench/ the way BENCHMARKING.md asks
# (5 repetitions, aggregates only; quote the median), then a short echo
# benchmark (shardloop's echo server against the raw liburing, libuv and
# Boost.Asio servers, 100 connections, 64 B and 1 KiB, 3 alternating rounds;
# bench/echo/README.md has the whole matrix), then one shard against two
# (bench/echo/run_shard_scaling.py --quick), then the HTTP benchmark
# (shardloop_httpd against nginx, driven by shardloop_loadgen and wrk, at 1
# core and at every core, with the load generator check; bench/http/README.md),
# and prints a summary.
# Each benchmark's JSON report is kept in build/release/bench-results/.
# Exits non-zero when the build, an example or a benchmark fails.
# Environment: JOBS (default 2) for the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${JOBS:-2}
build=build/release

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j "$jobs"

failed=0
examples=()
shopt -s nullglob
for program in "$build"/apps/examples/*; do
    [[ -f $program && -x $program ]] || continue
    name=${program##*/}
    printf '\n==== example %s\n' "$name"
    status=0
    timeout 10 "$program" </dev/null || status=$?
    case $status in
        0) examples+=("PASS     $name") ;;
        124) examples+=("TIMEOUT  $name (still running after 10 s)") failed=1 ;;
        *) examples+=("FAIL     $name (exit status $status)") failed=1 ;;
    esac
done

results=$build/bench-results
mkdir -p "$results"
benchmarks=()
medians=()
for program in "$build"/bench/shardloop_bench* "$build"/bench/bench_*; do
    [[ -f $program && -x $program ]] || continue
    name=${program##*/}
    printf '\n==== benchmark %s\n' "$name"
    log=$results/$name.txt
    if "$program" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
        --benchmark_out="$results/$name.json" --benchmark_out_format=json | tee "$log"; then
        benchmarks+=("PASS     $name")
        while IFS= read -r line; do
            medians+=("$line")
        done < <(grep '_median ' "$log" || true)
    else
        benchmarks+=("FAIL     $name")
        failed=1
    fi
done

printf '\n==== echo benchmark (bench/echo/run_echo_bench.py --quick)\n'
echo_table=$results/echo-quick.txt
if timeout 600 python3 bench/echo/run_echo_bench.py --build-dir "$build/bench/echo" --quick \
    --rounds 3 --duration 2 --warmup 1 --json "$results/echo-quick.json" | tee "$echo_table"; then
    benchmarks+=("PASS     echo benchmark")
else
    benchmarks+=("FAIL     echo benchmark")
    failed=1
fi

printf '\n==== shard scaling (bench/echo/run_shard_scaling.py --quick)\n'
scaling_table=$results/shard-scaling.txt
if timeout 600 python3 bench/echo/run_shard_scaling.py --build-dir "$build" --quick --rounds 3 \
    --duration 2 --json "$results/shard-scaling.json" | tee "$scaling_table"; then
    benchmarks+=("PASS     shard scaling")
else
    benchmarks+=("FAIL     shard scaling")
    failed=1
fi

printf '\n==== HTTP benchmark (bench/http/run_http_bench.py)\n'
http_table=$results/http.txt
if timeout 1200 python3 bench/http/run_http_bench.py --build-dir "$build" --rounds 3 \
    --duration 3 --client-check --json "$results/http.json" | tee "$http_table"; then
    benchmarks+=("PASS     HTTP benchmark")
else
    benchmarks+=("FAIL     HTTP benchmark")
    failed=1
fi

printf '\n==== summary\n'
echo "examples ($build/apps/examples):"
if ((${#examples[@]})); then
    printf '  %s\n' "${examples[@]}"
else
    echo "  none built yet"
fi
echo "benchmarks ($build/bench):"
if ((${#benchmarks[@]})); then
    printf '  %s\n' "${benchmarks[@]}"
else
    echo "  none built yet"
fi
if ((${#medians[@]})); then
    echo "benchmark medians of 5 runs: name, wall time, CPU time (JSON in $results):"
    printf '  %s\n' "${medians[@]}"
fi
if [[ -s $echo_table ]]; then
    echo "echo benchmark, medians of 3 rounds (server CPU per request against the raw liburing server):"
    awk '/^conns/ { table = 1 } table && /^(server logs|wrote|WARNING)/ { table = 0 } table' \
        "$echo_table" | sed 's/^/  /'
fi
if [[ -s $scaling_table ]]; then
    echo "shard scaling, 1 shard vs 2 (server CPU per request; medians of 3 rounds):"
    sed 's/^/  /' "$scaling_table"
fi
if [[ -s $http_table ]]; then
    echo "HTTP benchmark (httpd against nginx; medians of 3 rounds):"
    sed 's/^/  /' "$http_table"
fi
if ((failed)); then
    echo "scripts/bench.sh: FAILED"
fi
exit "$failed"
