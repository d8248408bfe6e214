#include "apps/loadgen/options.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

namespace shardloop::loadgen {

namespace {

// Pipelined echo messages are one buffer per connection: keep it sane.
constexpr std::size_t max_request_buffer = std::size_t{64} << 20;

[[noreturn]] void fail(std::string_view option, const std::string& what) {
    throw OptionError(std::string(option) + ": " + what);
}

uint64_t whole_number(std::string_view option, std::string_view text, uint64_t min, uint64_t max) {
    uint64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size()) {
        fail(option, "expected a whole number, got '" + std::string(text) + "'");
    }
    if (value < min || value > max) {
        fail(option, std::to_string(value) + " is out of range [" + std::to_string(min) + ", " +
                         std::to_string(max) + "]");
    }
    return value;
}

// A number of seconds (fractions allowed) above `min` (or equal to it,
// when `min_allowed`), at most a year.
double seconds(std::string_view option, std::string_view text, double min, bool min_allowed) {
    double value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size() ||
        !std::isfinite(value)) {
        fail(option, "expected a number, got '" + std::string(text) + "'");
    }
    if (value < min || (value == min && !min_allowed) || value > 365.0 * 86400) {
        fail(option, std::string(min_allowed ? "must be at least " : "must be more than ") +
                         (min == 0 ? "0" : std::to_string(min)) + ", got '" + std::string(text) +
                         "'");
    }
    return value;
}

// "0,2,4-7": CPU numbers and inclusive ranges, each CPU once.
std::vector<unsigned> cpu_list(std::string_view option, std::string_view text) {
    std::vector<unsigned> cpus;
    if (text.empty()) {
        fail(option, "expected a CPU list such as 0,2-3");
    }
    while (!text.empty()) {
        std::size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        if (comma != std::string_view::npos && text.empty()) {
            fail(option, "trailing ',' in the CPU list");
        }
        std::size_t dash = item.find('-');
        std::string_view first_text = item.substr(0, dash);
        std::string_view last_text =
            dash == std::string_view::npos ? first_text : item.substr(dash + 1);
        auto first = static_cast<unsigned>(whole_number(option, first_text, 0, 65535));
        auto last = static_cast<unsigned>(whole_number(option, last_text, 0, 65535));
        if (last < first) {
            fail(option, "bad CPU range '" + std::string(item) + "'");
        }
        for (unsigned cpu = first; cpu <= last; ++cpu) {
            for (unsigned seen : cpus) {
                if (seen == cpu) {
                    fail(option, "CPU " + std::to_string(cpu) + " is listed twice");
                }
            }
            cpus.push_back(cpu);
        }
    }
    return cpus;
}

}  // namespace

Options parse_options(std::span<const std::string_view> args) {
    Options options;
    bool duration_given = false;
    bool port_given = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        std::string_view name = arg;
        std::optional<std::string_view> inline_value;
        if (std::size_t equals = arg.find('='); arg.starts_with("--") && equals != arg.npos) {
            name = arg.substr(0, equals);
            inline_value = arg.substr(equals + 1);
        }
        auto value = [&]() -> std::string_view {
            if (inline_value) {
                return *inline_value;
            }
            if (i + 1 >= args.size()) {
                fail(name, "needs a value");
            }
            return args[++i];
        };
        auto flag = [&] {
            if (inline_value) {
                fail(name, "takes no value");
            }
        };
        if (name == "--help" || name == "-h") {
            flag();
            options.help = true;
        } else if (name == "--mode") {
            std::string_view mode = value();
            if (mode == "echo") {
                options.mode = Mode::echo;
            } else if (mode == "http") {
                options.mode = Mode::http;
            } else {
                fail(name, "expected 'echo' or 'http', got '" + std::string(mode) + "'");
            }
        } else if (name == "--host") {
            options.host = value();
            if (options.host.empty()) {
                fail(name, "must not be empty");
            }
        } else if (name == "--port") {
            options.port = static_cast<uint16_t>(whole_number(name, value(), 1, 65535));
            port_given = true;
        } else if (name == "--connections") {
            options.connections = static_cast<unsigned>(whole_number(name, value(), 1, 1'000'000));
        } else if (name == "--shards") {
            options.shards = static_cast<unsigned>(whole_number(name, value(), 0, 4096));
        } else if (name == "--cpus") {
            options.cpus = cpu_list(name, value());
        } else if (name == "--duration") {
            options.duration = seconds(name, value(), 0, false);
            duration_given = true;
        } else if (name == "--requests") {
            options.requests = whole_number(name, value(), 1, uint64_t{1} << 50);
        } else if (name == "--warmup") {
            options.warmup = seconds(name, value(), 0, true);
        } else if (name == "--rate") {
            options.rate = seconds(name, value(), 0, false);
            if (options.rate > 1e9) {
                fail(name, "at most 1e9 requests per second");
            }
        } else if (name == "--pipeline") {
            options.pipeline = static_cast<unsigned>(whole_number(name, value(), 1, 4096));
        } else if (name == "--size") {
            options.size = static_cast<std::size_t>(whole_number(name, value(), 1, 16 << 20));
        } else if (name == "--path") {
            options.path = value();
            if (!options.path.starts_with('/')) {
                fail(name, "must start with '/', got '" + options.path + "'");
            }
            if (options.path.find_first_of(" \t\r\n") != std::string::npos) {
                fail(name, "must not contain spaces or line breaks");
            }
        } else if (name == "--json") {
            flag();
            options.json = true;
        } else if (name == "--quiet") {
            flag();
            options.quiet = true;
        } else if (name == "--server-pid") {
            options.server_pids.push_back(static_cast<int>(
                whole_number(name, value(), 1, std::numeric_limits<int32_t>::max())));
        } else {
            fail(name, "unknown option");
        }
    }
    if (options.help) {
        return options;
    }
    if (!port_given) {
        fail("--port", "is required");
    }
    if (options.requests != 0 && !duration_given) {
        options.duration = 0;  // stop at the count alone
    }
    if (!options.cpus.empty() && options.shards != 0 && options.shards != options.cpus.size()) {
        fail("--shards", std::to_string(options.shards) + " does not match the " +
                             std::to_string(options.cpus.size()) + " CPUs of --cpus");
    }
    if (options.mode == Mode::echo && options.size * options.pipeline > max_request_buffer) {
        fail("--pipeline", "--size times --pipeline must be at most 64 MiB");
    }
    return options;
}

std::string usage_text(std::string_view program) {
    std::string text = "usage: " + std::string(program) +
                       " --port N [--mode echo|http] [options]\n"
                       "\n";
    text += R"(A load generator on shardloop: one pinned event loop per shard, the
connections spread over the shards, each connection a Protocol that keeps
--pipeline requests in flight (closed loop), or sends at a fixed --rate.

Target:
  --mode echo|http     echo: send --size byte messages and wait for the whole
                       echo; http: keep-alive GET --path requests (default echo)
  --host ADDRESS       server address or name (default 127.0.0.1)
  --port N             server port (required)
  --path PATH          http: the request path (default /plaintext); the
                       request carries a Host: header
  --size BYTES         echo: message size (default 64)

Load:
  --connections N      connections, divided among the shards (default 64)
  --shards N           shards, each an event loop pinned to a core (default 0:
                       one per core of the process's cpuset; never more than
                       the connections)
  --cpus LIST          pin the shards to these CPUs, e.g. 0,2-3 (one shard each)
  --pipeline D         requests in flight per connection (default 1: ping-pong);
                       with --rate, the most a connection may have in flight
  --rate R             open loop: R requests per second in total, scheduled at
                       fixed intervals spread over the connections; latency is
                       measured from each request's scheduled time, so a slow
                       server is not hidden by requests that were never sent
                       (coordinated omission). Default: closed loop

Length of the run:
  --duration SECONDS   measured window (default 5; fractions allowed)
  --requests N         stop after N requests in total (then no time limit
                       unless --duration is given too)
  --warmup SECONDS     load before the measured window; those requests are not
                       counted (default 0)

Output:
  --json               print one JSON object instead of the text report
  --quiet              no progress line on stderr
  --server-pid PID     sample the CPU time of this process (all its threads,
                       /proc/PID/stat) at the start and end of the measured
                       window and report server CPU seconds and CPU per
                       request; repeat it for servers of several processes
                       (nginx workers): their times are summed
  --help               this text

While running, a line on stderr each second: elapsed time, requests per second
over that second, errors. At the end, on stdout: requests, duration,
requests/s, bytes/s received and sent, latency percentiles (p50, p90, p99,
p99.9, max, in microseconds), errors, responses per HTTP status, and the CPU
time of the load generator (and of the server, with --server-pid) over the
window. Only requests sent inside the measured window and answered before it
closed are counted. SIGINT (Ctrl-C) ends the run early and still reports what
was measured; a second one kills the program.

JSON keys: mode, connections, shards, pipeline, rate, duration_s, requests,
requests_per_s, bytes_received_per_s, bytes_sent_per_s, errors, error_kinds,
latency_us {p50, p90, p99, p99_9, max, mean}, status {"200": N, ...},
client_cpu_s, server_cpu_s and server_cpu_us_per_request (null without
--server-pid), and more.

Errors (failed reconnects, resets, unexpected closes, malformed responses) are
counted and the connection is opened again; the run goes on. A server that
answers with Connection: close gets its response counted, then a new
connection.

Exit status: 0 after a run (errors or not), 1 when the first connections
cannot be made (or another fatal error), 2 for a bad command line.
)";
    return text;
}

}  // namespace shardloop::loadgen
