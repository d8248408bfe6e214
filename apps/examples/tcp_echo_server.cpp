// TCP echo server with create_server: the asyncio "Transports and
// Protocols" documentation's example. Each connection's data is echoed
// back, then the connection is closed.
//
//   tcp_echo_server [--forever] [HOST PORT]
//
// By default (so that the example finishes by itself) it serves one demo
// client, made with sock_connect / sock_sendall / sock_recv, and stops;
// with --forever it serves until killed, on 127.0.0.1:8888 unless told.

#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <shardloop.hpp>
#include <string>

namespace {

class EchoServerProtocol : public shardloop::Protocol {
public:
    void connection_made(std::shared_ptr<shardloop::BaseTransport> transport) override {
        auto peer = std::any_cast<shardloop::SocketAddress>(transport->get_extra_info("peername"));
        std::printf("Connection from %s\n", peer.to_string().c_str());
        _transport = shardloop::transport_cast<shardloop::Transport>(transport);
    }
    void data_received(std::string_view data) override {
        std::printf("Data received: '%.*s'\n", static_cast<int>(data.size()), data.data());
        std::printf("Send: '%.*s'\n", static_cast<int>(data.size()), data.data());
        _transport->write(data);
        std::printf("Close the client socket\n");
        _transport->close();
    }
    void connection_lost(std::exception_ptr) override { _transport.reset(); }

private:
    std::shared_ptr<shardloop::Transport> _transport;
};

}  // namespace

int main(int argc, char** argv) {
    bool forever = argc > 1 && std::strcmp(argv[1], "--forever") == 0;
    int first = forever ? 2 : 1;
    std::string host = argc > first + 1 ? argv[first] : "127.0.0.1";
    auto port =
        static_cast<uint16_t>(argc > first + 1 ? std::atoi(argv[first + 1]) : (forever ? 8888 : 0));
    auto loop = shardloop::new_event_loop();
    int status = 0;
    try {
        loop->run_until_complete([&] {
            auto server = shardloop::await(loop->create_server(
                [] { return std::make_shared<EchoServerProtocol>(); }, host, port));
            auto address = shardloop::local_address(server->sockets().front());
            std::printf("Serving on %s\n", address.to_string().c_str());
            if (forever) {
                shardloop::await(server->serve_forever());
                return;
            }
            // The demo client, on the raw socket API.
            int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            shardloop::await(loop->sock_connect(fd, address));
            shardloop::await(loop->sock_sendall(fd, "Hello World!"));
            std::string reply = shardloop::await(loop->sock_recv(fd, 100));
            std::printf("Client got: '%s'\n", reply.c_str());
            ::close(fd);
            server->close();
            shardloop::await(server->wait_closed());
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tcp_echo_server: %s\n", e.what());
        status = 1;
    }
    loop->close();
    return status;
}
