// Register an open socket to wait for data using a protocol: the asyncio
// "Transports and Protocols" documentation's example. create_connection
// takes one end of a socket pair (sock=...); a call_soon callback writes
// to the other end; the protocol prints what arrives and closes.

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <shardloop.hpp>

namespace {

class MyProtocol : public shardloop::Protocol {
public:
    explicit MyProtocol(shardloop::Future<void> on_lost) : _on_lost(std::move(on_lost)) {}

    void connection_made(std::shared_ptr<shardloop::BaseTransport> transport) override {
        _transport = shardloop::transport_cast<shardloop::Transport>(transport);
    }
    void data_received(std::string_view data) override {
        std::printf("Received: '%.*s'\n", static_cast<int>(data.size()), data.data());
        // We are done: close the transport; connection_lost() will be called.
        _transport->close();
    }
    void connection_lost(std::exception_ptr) override {
        // The socket has been closed.
        _on_lost.set_result();
        _transport.reset();
    }

private:
    shardloop::Future<void> _on_lost;
    std::shared_ptr<shardloop::Transport> _transport;
};

}  // namespace

int main() {
    int socks[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, socks) != 0) {
        std::perror("socketpair");
        return 1;
    }
    int rsock = socks[0];
    int wsock = socks[1];
    auto loop = shardloop::new_event_loop();
    int status = 0;
    try {
        loop->run_until_complete([&] {
            shardloop::Future<void> on_lost = loop->create_future<void>();
            // Register the socket to wait for data (the transport owns it now).
            shardloop::await(loop->create_connection(
                [&] { return std::make_shared<MyProtocol>(on_lost); }, "", 0, {.sock = rsock}));
            // Simulate the reception of data from the network.
            loop->call_soon([wsock] { (void)!::send(wsock, "abc", 3, 0); });
            // Wait for the protocol to signal that the connection is closed.
            shardloop::await(on_lost);
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "socketpair_protocol: %s\n", e.what());
        status = 1;
    }
    ::close(wsock);
    loop->close();
    return status;
}
