// shardloop_echo: a TCP echo server on shardloop's Protocol API, one shard
// per core: every shard runs a loop pinned to its core and listens on the
// same port with SO_REUSEPORT, so the kernel spreads the connections.
//
//   shardloop_echo [--host 127.0.0.1] [--port 0] [--shards 1] [--spread hash|cpu]
//                  [--reuseport]
//
// Prints "port=N" once every shard listens (N is the chosen port with
// --port 0), and stops cleanly on SIGINT or SIGTERM. Same command line as
// the reference servers in bench/echo, so the echo benchmark drives them
// alike.

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <shardloop.hpp>
#include <string>
#include <string_view>

namespace {

// Echoes every byte back. data_received() gets a view into the loop's
// receive buffer; write() of that view is sent straight from it.
class Echo final : public shardloop::Protocol {
public:
    void connection_made(std::shared_ptr<shardloop::BaseTransport> transport) override {
        _transport = shardloop::transport_cast<shardloop::Transport>(transport);
    }
    void data_received(std::string_view data) override { _transport->write(data); }
    void connection_lost(std::exception_ptr) override { _transport.reset(); }

private:
    std::shared_ptr<shardloop::Transport> _transport;
};

struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 0;
    unsigned shards = 1;  // 0: one per core
    shardloop::ConnectionSpread spread = shardloop::ConnectionSpread::hash;
};

[[noreturn]] void usage(const char* program, int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: %s [--host ADDRESS] [--port N] [--shards N] [--spread hash|cpu]\n"
                 "          [--reuseport]\n"
                 "  --host ADDRESS  address to listen on (default 127.0.0.1)\n"
                 "  --port N        port (default 0: any free port; printed as port=N)\n"
                 "  --shards N      shards, each a loop pinned to its own core (default 1;\n"
                 "                  0: one per core of the process's cpuset)\n"
                 "  --spread hash|cpu  which shard accepts a connection: the kernel's\n"
                 "                  SO_REUSEPORT hash (default), or the shard on the CPU\n"
                 "                  that received the connection (SO_INCOMING_CPU)\n"
                 "  --reuseport     accepted for the benchmark's sake: SO_REUSEPORT is\n"
                 "                  always set, every shard listens on the port\n",
                 program);
    std::exit(status);
}

Options parse(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s: %s needs a value\n", argv[0], argv[i]);
                usage(argv[0], 2);
            }
            return argv[++i];
        };
        // A whole number in [0, max], or the usage message.
        auto number = [&](const char* name, long max) {
            std::string text = value();
            char* end = nullptr;
            long parsed = std::strtol(text.c_str(), &end, 10);
            if (text.empty() || *end != '\0' || parsed < 0 || parsed > max) {
                std::fprintf(stderr, "%s: bad %s '%s'\n", argv[0], name, text.c_str());
                usage(argv[0], 2);
            }
            return parsed;
        };
        if (arg == "--host") {
            options.host = value();
        } else if (arg == "--port") {
            options.port = static_cast<uint16_t>(number("--port", 65535));
        } else if (arg == "--shards") {
            options.shards = static_cast<unsigned>(number("--shards", 4096));
        } else if (arg == "--spread") {
            std::string spread = value();
            if (spread == "hash") {
                options.spread = shardloop::ConnectionSpread::hash;
            } else if (spread == "cpu") {
                options.spread = shardloop::ConnectionSpread::incoming_cpu;
            } else {
                std::fprintf(stderr, "%s: bad --spread '%s' (hash or cpu)\n", argv[0],
                             spread.c_str());
                usage(argv[0], 2);
            }
        } else if (arg == "--reuseport") {
            // always on
        } else if (arg == "--help" || arg == "-h") {
            usage(argv[0], 0);
        } else {
            std::fprintf(stderr, "%s: unknown option '%s'\n", argv[0], argv[i]);
            usage(argv[0], 2);
        }
    }
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    try {
        auto policy = std::make_shared<shardloop::ShardedPolicy>(shardloop::ShardedPolicyOptions{
            .shards = options.shards, .stop_signals = {SIGINT, SIGTERM}});
        shardloop::ShardedServer server(options.spread);
        policy->run([&] {
            if (shardloop::this_shard_id() != 0) {
                return;
            }
            shardloop::await(
                server.start([] { return std::make_shared<Echo>(); }, options.host, options.port));
            std::printf("port=%u\n", server.port());
            std::fflush(stdout);
            // Serves until a signal stops the shards; closing every shard's
            // server and connections is then left to the shutdown, which
            // aborts the transports still open.
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shardloop_echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
