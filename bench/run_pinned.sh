#!/usr/bin/env bash
# Runs the micro-benchmarks the way BENCHMARKING.md asks (5 repetitions,
# aggregates only; quote the median), each single-threaded benchmark pinned
# to one CPU, and the two-thread benchmarks (call_soon_threadsafe,
# cross-shard messages) on two CPUs (they pin their own threads, one per CPU).
#   bash bench/run_pinned.sh [BUILD_DIR]     (default: build/release)
# Extra Google Benchmark flags may follow the build directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build/release}
shift || true
cpu=${BENCH_CPU:-1}
flags=(--benchmark_repetitions=5 --benchmark_report_aggregates_only=true "$@")
for name in bench_callbacks bench_timers bench_tasks; do
    taskset -c "$cpu" "$build/bench/$name" "${flags[@]}"
done
for name in bench_threadsafe bench_cross_shard; do
    taskset -c "${BENCH_CPUS:-0,1}" "$build/bench/$name" "${flags[@]}"
done
