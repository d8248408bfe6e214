#!/usr/bin/env bash
# Installs the Debian 12 packages that shardloop needs to build, test and
# benchmark. Only what is missing is installed, and `apt-get update` runs only
# then, so a second run is silent and touches nothing. Works as root (CI) or
# through sudo. Safe to run (`bash scripts/install-deps.sh`) or to source:
# the work happens in a subshell, so no shell option or variable leaks out.
#
# clang-format and clang-tidy are deliberately not here: scripts/lint.sh and
# the format step of scripts/test.sh use them only when they are installed.

shardloop_install_deps() (
    set -euo pipefail

    local packages=(
        g++ cmake make pkg-config
        liburing-dev          # reactor (io_uring)
        libhwloc-dev          # topology and pinning
        libboost-context-dev  # fibers
        libssl-dev            # TLS
        libgtest-dev libgmock-dev
        libbenchmark-dev
        libuv1-dev            # the libuv echo server the echo benchmark compares with
        node-llhttp           # llhttp's C sources, built into apps/httpd and apps/loadgen
        curl                  # the HTTP server's end-to-end tests talk to it with curl too
        nginx-light wrk       # the HTTP benchmark's reference server and second client
        clang libclang-rt-14-dev  # the HTTP request path's libFuzzer target (scripts/test.sh)
    )

    local missing=() pkg
    for pkg in "${packages[@]}"; do
        # db:Status-Abbrev is "ii " only for a fully installed package; a
        # removed-but-configured ("rc") or half-installed one counts as missing.
        if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" != "ii "* ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi

    local sudo=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null; then
            echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
            return 1
        fi
        sudo=(sudo)
    fi

    echo "install-deps: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "install-deps: done"
)

shardloop_install_deps "$@"
