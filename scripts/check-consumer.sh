#!/usr/bin/env bash
# Checks that another CMake project can use shardloop (tests/consumer), both
# ways the README documents:
#   1. find_package: the debug build's library and headers are installed
#      into a temporary prefix with `cmake --install`, and the consumer is
#      built against that prefix;
#   2. add_subdirectory: the consumer builds this source tree as part of
#      itself (-DSHARDLOOP_SOURCE_DIR).
# Debug builds throughout: scripts/test.sh has built the debug library
# already, and the install and the subdirectory work the same in every
# configuration, so the check need not compile the library at -O2 twice.
# Each consumer binary must run and print "hello from shardloop".
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
jobs=${JOBS:-2}

work=$(mktemp -d "${TMPDIR:-/tmp}/shardloop-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT

run_consumer() {
    local build=$1 output
    output=$(timeout 10 "$build/consumer" </dev/null)
    printf '%s\n' "$output"
    if [[ "$output" != *"hello from shardloop"* ]]; then
        echo "check-consumer: $build/consumer did not print its greeting" >&2
        return 1
    fi
}

echo "check-consumer: installing the debug library into $work/prefix"
cmake --preset debug >/dev/null
# Only the library: the install component "shardloop" needs nothing else.
cmake --build --preset debug --target shardloop -j "$jobs"
cmake --install build/debug --component shardloop --prefix "$work/prefix"

echo "check-consumer: find_package(shardloop)"
cmake -S tests/consumer -B "$work/find" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
found=$(sed -n 's/^shardloop_DIR:PATH=//p' "$work/find/CMakeCache.txt")
if [[ "$found" != "$work/prefix/"* ]]; then
    echo "check-consumer: found shardloop in $found, not in the temporary prefix" >&2
    exit 1
fi
cmake --build "$work/find" -j "$jobs"
run_consumer "$work/find"

echo "check-consumer: add_subdirectory(shardloop)"
cmake -S tests/consumer -B "$work/subdir" -DCMAKE_BUILD_TYPE=Debug \
    -DSHARDLOOP_SOURCE_DIR="$root" >/dev/null
cmake --build "$work/subdir" -j "$jobs"
run_consumer "$work/subdir"

echo "check-consumer: OK"
