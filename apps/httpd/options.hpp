#pragma once

// The command line of shardloop_httpd, parsed without side effects (no
// printing, no exit), so that tests can check every message.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shardloop::httpd {

struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 8080;        // 0: any free port
    unsigned shards = 0;         // 0: one per core
    std::vector<unsigned> cpus;  // empty: the policy's default placement
    std::string root;            // empty: no static files
    double idle_timeout = 10.0;  // seconds
    std::size_t max_header_bytes = 8192;
    std::size_t max_body_bytes = std::size_t{1} << 20;
    uint64_t idle_poll_us = 0;  // spin this long before a shard sleeps (0: never)
    // --spread cpu: a connection goes to the shard on the CPU that received
    // it (ConnectionSpread::incoming_cpu) instead of the reuseport hash.
    bool spread_by_cpu = false;
};

struct CommandLine {
    Options options;
    bool help = false;  // --help: print usage_text() and exit 0
    std::string error;  // non-empty: print it and exit 2 (it names the option)
};

// Parses argv[1..argc). Options take their value as the next argument or
// after '=' ("--port 80", "--port=80").
CommandLine parse_command_line(int argc, const char* const* argv);

// The --help text.
std::string usage_text(std::string_view program);

}  // namespace shardloop::httpd
