// shardloop_httpd: an HTTP/1.1 server on shardloop, one shard per core.
//
// Every shard runs a loop pinned to its core and listens on the port with
// SO_REUSEPORT (ShardedServer); a connection lives on the shard that
// accepted it. Shard 0 also runs the lifecycle below: start the per-shard
// state and the servers, print "port=N", wait for SIGINT or SIGTERM, drain,
// stop. See README.md for the routes, options and metrics.

#include <fcntl.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "http_connection.hpp"
#include "options.hpp"
#include "shard_state.hpp"
#include "shardloop.hpp"
#include "signal_watcher.hpp"
#include "static_files.hpp"

namespace {

using namespace shardloop;
using namespace shardloop::httpd;

// How long the drain waits for the responses in flight before it aborts
// the connections still open.
constexpr double drain_timeout = 5.0;

struct Services {
    explicit Services(Options options_)
        : options(std::move(options_)),
          server(options.spread_by_cpu ? ConnectionSpread::incoming_cpu : ConnectionSpread::hash) {}

    Options options;
    ServerConfig config;
    ShardedPolicy* policy = nullptr;
    Sharded<ShardState> states;
    ShardedServer server;
};

// Stop accepting; let each connection finish its response and close (the
// idle ones at once); abort what is left after drain_timeout, or at a
// second signal.
void drain(Services& services, SignalWatcher& signals) {
    EventLoop& loop = get_running_loop();
    ShardedServer& server = services.server;
    await(services.states.invoke_on_all([&server](ShardState& state) {
        server.local().close();
        state.begin_drain();
    }));
    Future<void> all_closed = services.states.invoke_on_all(
        [&server](ShardState&) { return server.local().wait_closed(); });
    Future<void> give_up = loop.create_future<void>();
    auto end_wait = [give_up](auto&&...) mutable {
        if (!give_up.done()) {
            give_up.set_result();
        }
    };
    TimerHandle deadline = loop.call_later(drain_timeout, end_wait);
    all_closed.add_done_callback(end_wait);
    signals.next().add_done_callback(end_wait);
    await(give_up);
    deadline.cancel();
    if (!all_closed.done()) {
        std::size_t left = await(server.active_count());
        std::fprintf(stderr, "shardloop_httpd: drain: aborting %zu connection(s)\n", left);
        await(services.states.invoke_on_all(
            [&server](ShardState&) { server.local().abort_clients(); }));
    }
}

void serve(Services& services) {
    SignalWatcher signals(get_running_loop(), {SIGINT, SIGTERM});
    await(services.states.start(services.config, services.policy, &services.states));
    Sharded<ShardState>& states = services.states;
    ServerOptions server_options;
    server_options.backlog = 4096;
    await(services.server.start(
        [&states] { return std::make_shared<HttpConnection>(states.local()); },
        services.options.host, services.options.port, server_options));
    std::printf("port=%u\n", services.server.port());
    std::fflush(stdout);

    await(signals.next());
    drain(services, signals);
    await(services.server.stop());
    await(services.states.stop());
    services.policy->stop();
}

}  // namespace

int main(int argc, char** argv) {
    const char* program = "shardloop_httpd";
    CommandLine command_line = parse_command_line(argc, argv);
    if (command_line.help) {
        std::fputs(usage_text(program).c_str(), stdout);
        return 0;
    }
    if (!command_line.error.empty()) {
        std::fprintf(stderr, "%s: %s\n(%s --help lists the options)\n", program,
                     command_line.error.c_str(), program);
        return 2;
    }
    auto services = std::make_unique<Services>(command_line.options);
    const Options& options = services->options;

    UniqueFd root;
    if (!options.root.empty()) {
        root.reset(::open(options.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) {
            std::fprintf(stderr, "%s: --root: cannot open directory '%s': %s\n", program,
                         options.root.c_str(), std::strerror(errno));
            return 2;
        }
    }
    services->config.root_fd = root.get();
    services->config.idle_timeout = options.idle_timeout;
    services->config.limits.parser.max_header_bytes = options.max_header_bytes;
    services->config.limits.parser.max_body_bytes = options.max_body_bytes;

    try {
        // A peer that resets while a file is spliced to it must give EPIPE,
        // not kill the process.
        ::signal(SIGPIPE, SIG_IGN);
        // Before any thread starts, so that every thread inherits the mask
        // and the signals reach shard 0's signalfd only.
        block_signals({SIGINT, SIGTERM});
        std::shared_ptr<ShardedPolicy> policy;
        try {
            policy = std::make_shared<ShardedPolicy>(
                ShardedPolicyOptions{.shards = options.shards,
                                     .cpus = options.cpus,
                                     .idle_poll = std::chrono::microseconds(options.idle_poll_us)});
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "%s: --shards/--cpus: %s\n", program, e.what());
            return 2;
        }
        services->policy = policy.get();
        policy->run([&services] {
            if (this_shard_id() == 0) {
                serve(*services);
            }
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 1;
    }
    return 0;
}
