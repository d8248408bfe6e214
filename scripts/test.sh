#!/usr/bin/env bash
# The test command (README, .ci/run). As root on a fresh Debian 12 machine:
#   bash scripts/test.sh
# 1. installs the build dependencies (scripts/install-deps.sh);
# 2. checks formatting, when clang-format is installed;
# 3. builds the `debug` preset and runs the whole ctest suite;
# 4. the same with the `asan` preset (AddressSanitizer + UBSan, leaks on);
# 5. runs the libFuzzer target of the HTTP request path for 30 seconds;
# 6. builds a program against the installed and the vendored library
#    (scripts/check-consumer.sh);
# 7. the same with the `tsan` preset (ThreadSanitizer), which covers the
#    cross-shard tests (label `crossshard`) and the fiber switch annotations.
# A failed step does not stop the independent ones after it; the summary at
# the end lists every step, and the exit status is non-zero if any failed.
# Environment: JOBS (default 2) for builds and ctest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
jobs=${JOBS:-2}

summary=()
failed=0

# step NAME COMMAND...: runs COMMAND as one step of the summary; returns its status.
step() {
    local name=$1 start=$SECONDS status=PASS
    shift
    printf '\n==== %s\n' "$name"
    "$@" || status=FAIL
    summary+=("$(printf '%-4s  %-38s %5ds' "$status" "$name" $((SECONDS - start)))")
    if [[ $status == FAIL ]]; then
        failed=1
        return 1
    fi
}

# skip NAME REASON: records a step that did not run.
skip() {
    printf '\n==== %s: skipped, %s\n' "$1" "$2"
    summary+=("$(printf '%-4s  %-38s %s' SKIP "$1" "$2")")
}

finish() {
    printf '\n==== summary (%ds)\n' "$SECONDS"
    printf '%s\n' "${summary[@]}"
    if ((failed)); then
        echo "scripts/test.sh: FAILED"
    else
        echo "scripts/test.sh: all steps passed"
    fi
    exit "$failed"
}

# The sanitizers in GCC 12 cannot place their shadow memory when the kernel
# randomises mmap addresses with more than 28 bits (vm.mmap_rnd_bits, raised
# on some newer kernels): the tests then die with "unexpected memory mapping"
# before running. Without address randomisation they work.
sanitizer_env=()
if (($(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28) > 28)) &&
    setarch "$(uname -m)" -R true 2>/dev/null; then
    echo "test.sh: vm.mmap_rnd_bits > 28, running sanitizer builds without ASLR"
    sanitizer_env=(setarch "$(uname -m)" -R)
fi

# suite PRESET [CTEST ARGS...]: configure, build and test one preset.
suite() {
    local preset=$1 wrap=()
    shift
    if [[ $preset == asan || $preset == tsan ]]; then
        wrap=("${sanitizer_env[@]}")
    fi
    if ! step "$preset: configure" cmake --preset "$preset"; then
        skip "$preset: build, ctest" "configure failed"
        return 1
    fi
    # The build runs test binaries too (gtest_discover_tests lists their tests).
    if ! step "$preset: build" "${wrap[@]}" cmake --build --preset "$preset" -j "$jobs"; then
        skip "$preset: ctest" "build failed"
        return 1
    fi
    step "$preset: ctest${*:+ $*}" "${wrap[@]}" ctest --preset "$preset" -j "$jobs" "$@"
}

if ! step "install dependencies" bash scripts/install-deps.sh; then
    finish
fi

if command -v clang-format >/dev/null || command -v clang-format-14 >/dev/null; then
    step "clang-format" bash scripts/lint.sh --format-only
else
    skip "clang-format" "clang-format is not installed"
fi

suite debug
suite asan

# libFuzzer (clang, AddressSanitizer + UBSan) on the HTTP request path of
# apps/httpd; the script skips, with a message, when clang's libFuzzer is
# missing.
step "fuzz: HTTP request path (30 s)" bash apps/httpd/fuzz/run_fuzz.sh 30

step "consumer (install, add_subdirectory)" bash scripts/check-consumer.sh

# ThreadSanitizer: the whole suite, which also proves the fiber switch
# annotations (__tsan_switch_to_fiber) hold; the cross-shard tests (label
# `crossshard`) are the ones it exists for.
suite tsan

finish
