#!/usr/bin/env bash
# Builds the libFuzzer target fuzz_request (the request path: the core's
# sources and llhttp's C sources, compiled with clang, no shardloop) and
# runs it.
#
#   apps/httpd/fuzz/run_fuzz.sh [SECONDS]     # default 30
#
# Exits non-zero when the fuzzer finds a crash (the input is left in the
# work directory, printed at the end), 0 otherwise. Skips (exit 0, with a
# message) when clang++ or libFuzzer (Debian: libclang-rt-14-dev) or the
# llhttp sources (node-llhttp) are missing. Environment: CXX_FUZZ (clang++
# by default), FUZZ_WORKDIR (a temporary directory by default; the corpus
# it grows is kept there, the seeds in corpus/ are only read).
set -euo pipefail

seconds="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
repo="$(cd "$src/../.." && pwd)"  # for net/unique_fd.hpp
cxx="${CXX_FUZZ:-clang++}"
cc="${cxx/clang++/clang}"
llhttp_src=/usr/share/llhttp
llhttp_include=/usr/share/include/llhttp

skip() {
    echo "run_fuzz.sh: skipped: $*"
    exit 0
}

command -v "$cxx" > /dev/null 2>&1 || skip "$cxx not found"
command -v "$cc" > /dev/null 2>&1 || skip "$cc not found"
[ -f "$llhttp_src/llhttp.c" ] && [ -f "$llhttp_include/llhttp.h" ] ||
    skip "llhttp sources not found (Debian: node-llhttp)"

work="${FUZZ_WORKDIR:-$(mktemp -d /tmp/httpd-fuzz-XXXXXX)}"
mkdir -p "$work/corpus" "$work/obj"

echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    > "$work/probe.cpp"
"$cxx" -fsanitize=fuzzer "$work/probe.cpp" -o "$work/probe" > /dev/null 2>&1 ||
    skip "libFuzzer is not available to $cxx (Debian: libclang-rt-14-dev)"

sanitize="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
objects=()
for c in llhttp api http; do
    "$cc" -O2 -g $sanitize -I"$llhttp_include" -w -c "$llhttp_src/$c.c" -o "$work/obj/llhttp_$c.o"
    objects+=("$work/obj/llhttp_$c.o")
done
for source in http_date http_parser http_session request_handler response_writer static_files; do
    "$cxx" -std=c++20 -O1 -g $sanitize -fno-omit-frame-pointer -I"$src" -I"$repo" -I"$llhttp_include" \
        -c "$src/$source.cpp" -o "$work/obj/$source.o"
    objects+=("$work/obj/$source.o")
done
"$cxx" -std=c++20 -O1 -g $sanitize -fno-omit-frame-pointer -I"$src" -I"$repo" -I"$llhttp_include" \
    -c "$here/fuzz_request.cpp" -o "$work/obj/fuzz_request.o"
"$cxx" -fsanitize=fuzzer,address,undefined "$work/obj/fuzz_request.o" "${objects[@]}" \
    -o "$work/fuzz_request"

echo "run_fuzz.sh: fuzzing for ${seconds}s in $work"
status=0
# Sanitizer runtimes can fail to start under a randomized layout that
# clashes with their shadow memory ("unexpected memory mapping"); setarch
# -R turns randomization off for the run.
runner=()
if command -v setarch > /dev/null 2>&1; then
    runner=(setarch "$(uname -m)" -R)
fi
"${runner[@]}" "$work/fuzz_request" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/" -max_len=16384 "$work/corpus" "$here/corpus" || status=$?
if [ "$status" -ne 0 ]; then
    echo "run_fuzz.sh: the fuzzer failed (status $status); crash inputs:" >&2
    ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* >&2 2> /dev/null || true
    exit "$status"
fi
echo "run_fuzz.sh: no crash in ${seconds}s"
