// shardloop_loadgen: a load generator on shardloop, sharded the Seastar
// way: one pinned event loop per shard, the connections divided among
// them, each connection a Protocol. Echo or HTTP/1.1, closed loop with
// pipelining or open loop at a fixed rate; a latency histogram per shard,
// merged on shard 0 at the end. See --help, and README.md beside this file.

#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "apps/loadgen/cpu_times.hpp"
#include "apps/loadgen/options.hpp"
#include "apps/loadgen/report.hpp"
#include "apps/loadgen/run.hpp"
#include "shardloop.hpp"

namespace {

using namespace shardloop::loadgen;

constexpr const char* program = "shardloop_loadgen";

[[noreturn]] void exit_with(int status, const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", program, message.c_str());
    std::exit(status);
}

// The numeric address of `host`, resolved once here so that no shard waits
// for a resolver.
std::string resolve(const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
        exit_with(1, "--host " + host + ": " + ::gai_strerror(rc));
    }
    char numeric[NI_MAXHOST];
    int rc = ::getnameinfo(found->ai_addr, found->ai_addrlen, numeric, sizeof numeric, nullptr, 0,
                           NI_NUMERICHOST);
    ::freeaddrinfo(found);
    if (rc != 0) {
        exit_with(1, "--host " + host + ": " + ::gai_strerror(rc));
    }
    return numeric;
}

// One descriptor per connection, plus the rings, eventfds and stdio.
void raise_fd_limit(unsigned connections) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return;
    }
    rlim_t wanted = static_cast<rlim_t>(connections) + 256;
    if (limit.rlim_cur < wanted) {
        limit.rlim_cur = std::min(wanted, limit.rlim_max);
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur < wanted) {
        exit_with(2, "--connections " + std::to_string(connections) +
                         ": more than the open file limit allows (ulimit -n " +
                         std::to_string(limit.rlim_max) + ")");
    }
}

std::string build_request(const Options& options) {
    if (options.mode == Mode::echo) {
        // One byte value throughout: any run of echoed bytes of a message's
        // length is a message, so the client may send echoed bytes again.
        return std::string(options.size, 'x');
    }
    std::string host =
        options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
    return "GET " + options.path + " HTTP/1.1\r\nHost: " + host + ":" +
           std::to_string(options.port) + "\r\n\r\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    Options options;
    try {
        options = parse_options(args);
    } catch (const OptionError& e) {
        exit_with(2, std::string(e.what()) + " (see --help)");
    }
    if (options.help) {
        std::fputs(usage_text(program).c_str(), stdout);
        return 0;
    }
    for (int pid : options.server_pids) {
        std::string error;
        if (!process_cpu_times(std::span<const int>(&pid, 1), &error)) {
            exit_with(2, "--server-pid " + std::to_string(pid) + ": " + error);
        }
    }
    raise_fd_limit(options.connections);

    try {
        auto config = std::make_shared<RunConfig>();
        config->mode = options.mode;
        config->host = resolve(options.host);
        config->port = options.port;
        config->connections = options.connections;
        config->pipeline = options.pipeline;
        config->rate = options.rate;
        config->requests = options.requests;
        config->request = build_request(options);
        config->response_size = options.size;
        // One shard per core (or per listed CPU), never more than there
        // are connections to give them.
        std::vector<unsigned> cpus = options.cpus;
        unsigned shards = options.shards;
        if (shards == 0) {
            shards = cpus.empty()
                         ? static_cast<unsigned>(shardloop::Topology::discover().cores().size())
                         : static_cast<unsigned>(cpus.size());
        }
        shards = std::min(shards, options.connections);
        if (cpus.size() > shards) {
            cpus.resize(shards);
        }
        config->shards = shards;

        Report report = run_load(options, config, std::move(cpus));
        std::string text = options.json ? format_json(report) + "\n" : format_text(report);
        std::fputs(text.c_str(), stdout);
        std::fflush(stdout);
    } catch (const ConnectError& e) {
        exit_with(1, e.what());
    } catch (const std::invalid_argument& e) {
        // The sharding layer's word on the CPUs.
        exit_with(2, std::string(options.cpus.empty() ? "--shards: " : "--cpus: ") + e.what());
    } catch (const std::exception& e) {
        exit_with(1, e.what());
    }
    return 0;
}
