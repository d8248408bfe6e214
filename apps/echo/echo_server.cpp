// shardloop_echo: a TCP echo server on shardloop's Protocol API, one loop
// on one thread (the sharding work spreads it over cores).
//
//   shardloop_echo [--host 127.0.0.1] [--port 0] [--reuseport]
//
// Prints "port=N" once listening (N is the chosen port with --port 0), and
// stops cleanly on SIGINT or SIGTERM. Same command line as the reference
// servers in bench/echo, so the echo benchmark drives them alike.

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

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
    bool reuse_port = false;
};

[[noreturn]] void usage(const char* program, int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: %s [--host ADDRESS] [--port N] [--reuseport]\n"
                 "  --host ADDRESS  address to listen on (default 127.0.0.1)\n"
                 "  --port N        port (default 0: any free port; printed as port=N)\n"
                 "  --reuseport     set SO_REUSEPORT on the listening socket\n",
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
        if (arg == "--host") {
            options.host = value();
        } else if (arg == "--port") {
            std::string text = value();
            char* end = nullptr;
            long port = std::strtol(text.c_str(), &end, 10);
            if (*end != '\0' || port < 0 || port > 65535) {
                std::fprintf(stderr, "%s: bad --port '%s'\n", argv[0], text.c_str());
                usage(argv[0], 2);
            }
            options.port = static_cast<uint16_t>(port);
        } else if (arg == "--reuseport") {
            options.reuse_port = true;
        } else if (arg == "--help" || arg == "-h") {
            usage(argv[0], 0);
        } else {
            std::fprintf(stderr, "%s: unknown option '%s'\n", argv[0], argv[i]);
            usage(argv[0], 2);
        }
    }
    return options;
}

// SIGINT and SIGTERM arrive on a signalfd the loop watches.
int block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
        std::perror("sigprocmask");
        std::exit(1);
    }
    int fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        std::perror("signalfd");
        std::exit(1);
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    int stop_fd = block_stop_signals();
    auto loop = shardloop::new_event_loop();
    try {
        auto server = loop->run_until_complete(
            loop->create_server([] { return std::make_shared<Echo>(); }, options.host, options.port,
                                {.reuse_port = options.reuse_port}));
        auto address = shardloop::local_address(server->sockets().front());
        std::printf("port=%u\n", address.port());
        std::fflush(stdout);
        loop->add_reader(stop_fd, [&] { loop->stop(); });
        loop->run_forever();
        loop->remove_reader(stop_fd);
        server->close();
        server->abort_clients();
        loop->run_until_complete(server->wait_closed());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shardloop_echo: %s\n", e.what());
        return 1;
    }
    loop->close();
    ::close(stop_fd);
    return 0;
}
