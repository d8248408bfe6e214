#pragma once

// The load generator's command line: what each option means is in
// usage_text() (printed by --help), which is the reference.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace shardloop::loadgen {

enum class Mode { echo, http };

struct Options {
    Mode mode = Mode::echo;
    std::string host = "127.0.0.1";
    uint16_t port = 0;
    unsigned connections = 64;
    unsigned shards = 0;           // 0: one per core of the process's cpuset
    std::vector<unsigned> cpus{};  // explicit CPUs, one shard each
    // The measured window in seconds; 0 with `requests`: no time limit.
    double duration = 5;
    uint64_t requests = 0;  // 0: no count limit
    double warmup = 0;
    double rate = 0;  // requests per second over all connections; 0: closed loop
    unsigned pipeline = 1;
    std::size_t size = 64;  // echo message bytes
    std::string path = "/plaintext";
    bool json = false;
    bool quiet = false;
    std::vector<int> server_pids{};
    bool help = false;  // --help: print usage_text() and exit 0
};

// A bad command line. what() names the option and says what is wrong.
class OptionError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses the arguments that follow the program name ("--name value" or
// "--name=value"). Throws OptionError for an unknown option, a missing or
// malformed value, a value out of range, or a missing --port (unless
// --help was given). Does not look at the system (--server-pid PIDs are
// checked when the run starts).
Options parse_options(std::span<const std::string_view> args);

// The --help text.
std::string usage_text(std::string_view program);

}  // namespace shardloop::loadgen
