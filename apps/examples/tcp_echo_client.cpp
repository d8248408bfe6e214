// TCP echo client with create_connection: the asyncio "Transports and
// Protocols" documentation's example. The client sends a message, prints
// the echo and closes; connection_lost() resolves a future that the main
// program waits for.
//
//   tcp_echo_client [HOST PORT]
//
// Without arguments it starts a small echo server of its own on a free
// loopback port first, so that the example runs anywhere.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <shardloop.hpp>
#include <string>

namespace {

class EchoClient : public shardloop::Protocol {
public:
    EchoClient(std::string message, shardloop::Future<void> on_lost)
        : _message(std::move(message)), _on_lost(std::move(on_lost)) {}

    void connection_made(std::shared_ptr<shardloop::BaseTransport> transport) override {
        _transport = shardloop::transport_cast<shardloop::Transport>(transport);
        _transport->write(_message);
        std::printf("Data sent: '%s'\n", _message.c_str());
    }
    void data_received(std::string_view data) override {
        std::printf("Data received: '%.*s'\n", static_cast<int>(data.size()), data.data());
        _transport->close();
    }
    void connection_lost(std::exception_ptr) override {
        std::printf("The server closed the connection\n");
        _on_lost.set_result();
        _transport.reset();
    }

private:
    std::string _message;
    shardloop::Future<void> _on_lost;
    std::shared_ptr<shardloop::Transport> _transport;
};

// The stand-in server: echoes and closes, like the documentation's server.
class EchoServer : public shardloop::Protocol {
public:
    void connection_made(std::shared_ptr<shardloop::BaseTransport> transport) override {
        _transport = shardloop::transport_cast<shardloop::Transport>(transport);
    }
    void data_received(std::string_view data) override {
        _transport->write(data);
        _transport->close();
    }
    void connection_lost(std::exception_ptr) override { _transport.reset(); }

private:
    std::shared_ptr<shardloop::Transport> _transport;
};

}  // namespace

int main(int argc, char** argv) {
    auto loop = shardloop::new_event_loop();
    int status = 0;
    try {
        loop->run_until_complete([&] {
            std::string host = argc > 2 ? argv[1] : "127.0.0.1";
            auto port = static_cast<uint16_t>(argc > 2 ? std::atoi(argv[2]) : 0);
            std::shared_ptr<shardloop::Server> server;
            if (argc <= 2) {
                server = shardloop::await(
                    loop->create_server([] { return std::make_shared<EchoServer>(); }, host, 0));
                port = shardloop::local_address(server->sockets().front()).port();
            }
            shardloop::Future<void> on_lost = loop->create_future<void>();
            shardloop::await(loop->create_connection(
                [&] { return std::make_shared<EchoClient>("Hello World!", on_lost); }, host, port));
            // Wait until the protocol signals that the connection is lost.
            shardloop::await(on_lost);
            if (server) {
                server->close();
                shardloop::await(server->wait_closed());
            }
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tcp_echo_client: %s\n", e.what());
        status = 1;
    }
    loop->close();
    return status;
}
