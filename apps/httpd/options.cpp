// Parsing the command line.

#include "options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>

namespace shardloop::httpd {

namespace {

// A whole decimal number in [min, max], or nothing.
std::optional<uint64_t> parse_whole(std::string_view text, uint64_t min, uint64_t max) {
    if (text.empty() || text.size() > 20) {
        return std::nullopt;
    }
    uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        uint64_t digit = static_cast<uint64_t>(c - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            return std::nullopt;
        }
        value = value * 10 + digit;
    }
    if (value < min || value > max) {
        return std::nullopt;
    }
    return value;
}

// "0,2,4-7": CPU numbers and inclusive ranges.
std::optional<std::vector<unsigned>> parse_cpu_list(std::string_view text) {
    std::vector<unsigned> cpus;
    constexpr uint64_t max_cpu = 65535;
    while (!text.empty()) {
        std::size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        if (comma != std::string_view::npos && text.empty()) {
            return std::nullopt;  // a trailing comma
        }
        std::size_t dash = item.find('-');
        auto first = parse_whole(item.substr(0, dash), 0, max_cpu);
        auto last =
            dash == std::string_view::npos ? first : parse_whole(item.substr(dash + 1), 0, max_cpu);
        if (!first || !last || *last < *first) {
            return std::nullopt;
        }
        for (uint64_t cpu = *first; cpu <= *last; ++cpu) {
            cpus.push_back(static_cast<unsigned>(cpu));
        }
    }
    if (cpus.empty()) {
        return std::nullopt;
    }
    return cpus;
}

std::optional<double> parse_seconds(const std::string& text) {
    if (text.empty()) {
        return std::nullopt;
    }
    char* end = nullptr;
    errno = 0;
    double value = std::strtod(text.c_str(), &end);
    if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(value) || value <= 0 ||
        value > 31536000.0) {
        return std::nullopt;
    }
    return value;
}

}  // namespace

CommandLine parse_command_line(int argc, const char* const* argv) {
    CommandLine result;
    Options& options = result.options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string_view name = arg;
        std::optional<std::string> inline_value;
        if (std::size_t equals = arg.find('='); arg.starts_with("--") && equals != arg.npos) {
            name = arg.substr(0, equals);
            inline_value = std::string(arg.substr(equals + 1));
        }
        if (name == "--help" || name == "-h") {
            result.help = true;
            return result;
        }
        auto fail = [&](std::string message) {
            result.error = std::move(message);
            return result;
        };
        static constexpr std::string_view known[] = {
            "--host",      "--port",         "--shards",           "--cpus",
            "--root",      "--idle-timeout", "--max-header-bytes", "--max-body-bytes",
            "--idle-poll", "--spread"};
        bool is_known = false;
        for (std::string_view option : known) {
            is_known = is_known || name == option;
        }
        if (!is_known) {
            if (!arg.starts_with("-")) {
                return fail("unexpected argument '" + std::string(arg) + "'");
            }
            return fail("unknown option '" + std::string(name) + "'");
        }
        std::string value;
        if (inline_value) {
            value = *inline_value;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return fail(std::string(name) + " needs a value");
        }
        auto bad = [&](std::string_view expected) {
            return fail(std::string(name) + ": expected " + std::string(expected) + ", got '" +
                        value + "'");
        };
        if (name == "--host") {
            if (value.empty()) {
                return bad("an address");
            }
            options.host = value;
        } else if (name == "--port") {
            auto port = parse_whole(value, 0, 65535);
            if (!port) {
                return bad("a port number from 0 to 65535");
            }
            options.port = static_cast<uint16_t>(*port);
        } else if (name == "--shards") {
            auto shards = parse_whole(value, 0, 4096);
            if (!shards) {
                return bad("a shard count from 0 (one per core) to 4096");
            }
            options.shards = static_cast<unsigned>(*shards);
        } else if (name == "--cpus") {
            auto cpus = parse_cpu_list(value);
            if (!cpus) {
                return bad("a CPU list such as 0,2,4-7");
            }
            options.cpus = std::move(*cpus);
        } else if (name == "--root") {
            if (value.empty()) {
                return bad("a directory");
            }
            options.root = value;
        } else if (name == "--idle-timeout") {
            auto seconds = parse_seconds(value);
            if (!seconds) {
                return bad("a number of seconds greater than 0 (fractions allowed)");
            }
            options.idle_timeout = *seconds;
        } else if (name == "--max-header-bytes") {
            auto bytes = parse_whole(value, 16, uint64_t{1} << 26);
            if (!bytes) {
                return bad("a byte count from 16 to 67108864");
            }
            options.max_header_bytes = static_cast<std::size_t>(*bytes);
        } else if (name == "--max-body-bytes") {
            auto bytes = parse_whole(value, 0, uint64_t{1} << 50);
            if (!bytes) {
                return bad("a byte count from 0 to 2^50");
            }
            options.max_body_bytes = static_cast<std::size_t>(*bytes);
        } else if (name == "--idle-poll") {
            auto micros = parse_whole(value, 0, 1'000'000);
            if (!micros) {
                return bad("microseconds from 0 to 1000000");
            }
            options.idle_poll_us = *micros;
        } else if (name == "--spread") {
            if (value != "hash" && value != "cpu") {
                return bad("hash or cpu");
            }
            options.spread_by_cpu = value == "cpu";
        }
    }
    if (!options.cpus.empty() && options.shards != 0 && options.shards != options.cpus.size()) {
        result.error = "--shards: " + std::to_string(options.shards) + " does not match the " +
                       std::to_string(options.cpus.size()) + " CPUs of --cpus";
    }
    return result;
}

std::string usage_text(std::string_view program) {
    std::string text = "usage: ";
    text.append(program);
    text.append(
        " [--host ADDR] [--port N] [--shards N] [--cpus LIST] [--root DIR]\n"
        "       [--idle-timeout SECONDS] [--max-header-bytes N] [--max-body-bytes N]\n"
        "       [--idle-poll MICROSECONDS] [--spread hash|cpu] [--help]\n"
        "\n"
        "An HTTP/1.1 server on shardloop: one shard (a loop pinned to its core) per core,\n"
        "each listening on the port with SO_REUSEPORT. Routes: GET /plaintext, GET /json,\n"
        "GET /metrics (Prometheus), static files under --root; HEAD for each.\n"
        "\n"
        "  --host ADDR             address to listen on (default 127.0.0.1)\n"
        "  --port N                port (default 8080; 0: any free port). Once every shard\n"
        "                          listens, the port is printed as one line: port=N\n"
        "  --shards N              shards (default 0: one per core of the process's cpuset)\n"
        "  --cpus LIST             pin the shards to these CPUs, one shard each, e.g. 0,2,4-7\n"
        "  --root DIR              serve the files under DIR for any other path (default: none,\n"
        "                          every other path is 404)\n"
        "  --idle-timeout SECONDS  close a connection that completes no request for this long,\n"
        "                          idle or stalled mid-request (default 10; fractions allowed)\n"
        "  --max-header-bytes N    largest request line + header section, in bytes; larger\n"
        "                          requests get 431 (default 8192)\n"
        "  --max-body-bytes N      largest request body; larger ones get 413 (default 1048576)\n"
        "  --idle-poll MICROSECONDS  a shard with nothing to do spins this long before it\n"
        "                          sleeps, so that a request arriving meanwhile needs no\n"
        "                          wake-up; costs CPU while it spins (default 0: sleep at once)\n"
        "  --spread hash|cpu       which shard accepts a connection: the kernel's SO_REUSEPORT\n"
        "                          hash (default), or the shard on the CPU that received the\n"
        "                          connection (SO_INCOMING_CPU: no wake-up crosses cores, but\n"
        "                          shards on CPUs that receive no packets get no connections)\n"
        "  --help                  this text\n"
        "\n"
        "SIGINT or SIGTERM drains: the server stops accepting, finishes the responses in\n"
        "flight, closes idle connections and exits 0 (aborting what is left after 5 s; a\n"
        "second signal aborts at once). Bad option values exit 2.\n");
    return text;
}

}  // namespace shardloop::httpd
