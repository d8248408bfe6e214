#!/usr/bin/env bash
# Style checks, kept out of the test command because clang-format and
# clang-tidy are not build dependencies (apt-get install clang-format clang-tidy):
#   1. clang-format (.clang-format) on every .cpp/.hpp in the repository,
#      committed or not (untracked files that .gitignore ignores are skipped);
#   2. clang-tidy (.clang-tidy) on the library's .cpp files, using the compile commands of
#      build/debug (`cmake --preset debug` makes them); skipped without them.
# Any finding fails the script.
#   bash scripts/lint.sh [--format-only]   (scripts/test.sh uses --format-only)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

format_only=0
if [[ ${1:-} == --format-only ]]; then
    format_only=1
fi

# tool NAME: the installed clang tool, plain or Debian's versioned name.
tool() {
    command -v "$1" || command -v "$1-14" || {
        echo "lint: $1 is not installed (apt-get install $1)" >&2
        return 1
    }
}

sources=()
while IFS= read -r file; do
    [[ -f $file ]] && sources+=("$file")
done < <(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.hpp')

clang_format=$(tool clang-format)
echo "lint: $clang_format on ${#sources[@]} files"
if ((${#sources[@]})); then
    "$clang_format" --dry-run --Werror "${sources[@]}"
fi

if ((format_only)); then
    exit 0
fi
if [[ ! -f build/debug/compile_commands.json ]]; then
    echo "lint: no build/debug/compile_commands.json (run cmake --preset debug); clang-tidy skipped"
    exit 0
fi
clang_tidy=$(tool clang-tidy)
shopt -s nullglob
units=(runtime/*.cpp net/*.cpp process/*.cpp policy/*.cpp)
echo "lint: $clang_tidy on ${#units[@]} files"
if ((${#units[@]})); then
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    # One file per run: clang-tidy 14 has been seen to crash when given the
    # whole list at once, and a crash must not pass for "no findings".
    for unit in "${units[@]}"; do
        if ! "$clang_tidy" -p build/debug --quiet "$unit" 2>/dev/null | tee -a "$log"; then
            echo "lint: clang-tidy failed on $unit" | tee -a "$log" >&2
            echo "error: clang-tidy failed" >>"$log"
        fi
    done
    if grep -q -E '(warning|error): ' "$log"; then
        echo "lint: clang-tidy found problems" >&2
        exit 1
    fi
fi
echo "lint: OK"
