// Reference echo server on Boost.Asio, written the way an Asio user would:
// one io_context run by one thread, one session object per connection that
// reads with async_read_some and echoes with async_write before reading
// again. Asio's reactor (epoll here) tries each read and write at once and
// waits only on EAGAIN, so this is Asio at its usual best.
//
//   echo_asio_ref [--host 127.0.0.1] [--port 0] [--reuseport]
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including
// <utility>, which breaks under C++20 with libstdc++ 12; include it first
// (clang-format would otherwise sort it after Asio).
// clang-format off
#include <utility>
#include <boost/asio.hpp>
// clang-format on

#include <memory>

#include "echo_common.hpp"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr const char* program_name = "echo_asio_ref";
// The same read size as the other reference servers (64 KiB, one loopback
// segment). `new char[]` leaves it untouched until data arrives, so an idle
// session costs its first page at most.
constexpr size_t buffer_size = size_t{64} * 1024;

class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(tcp::socket socket)
        : _socket(std::move(socket)), _buffer(new char[buffer_size]) {}

    void start() { read(); }

private:
    void read() {
        _socket.async_read_some(
            asio::buffer(_buffer.get(), buffer_size),
            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                if (!ec) {
                    self->write(n);
                }
            });
    }

    // async_write loops until all n bytes are sent, so a short write cannot
    // reorder anything: the next read starts only after it.
    void write(size_t n) {
        asio::async_write(_socket, asio::buffer(_buffer.get(), n),
                          [self = shared_from_this()](boost::system::error_code ec, size_t) {
                              if (!ec) {
                                  self->read();
                              }
                          });
    }

    tcp::socket _socket;
    std::unique_ptr<char[]> _buffer;
};

// An error ends the session: the handler drops the last reference and the
// socket closes with it, so a reset peer cannot leak a descriptor.
void accept(tcp::acceptor& acceptor) {
    acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) {
            return;
        }
        if (ec) {
            std::fprintf(stderr, "%s: accept: %s\n", program_name, ec.message().c_str());
        } else {
            boost::system::error_code opt_ec;
            socket.set_option(tcp::no_delay(true), opt_ec);
            if (opt_ec) {
                echo_bench::die(program_name, "setsockopt(TCP_NODELAY)", opt_ec.value());
            }
            std::make_shared<Session>(std::move(socket))->start();
        }
        accept(acceptor);
    });
}

}  // namespace

int main(int argc, char** argv) {
    echo_bench::ServerOptions options = echo_bench::parse_server_options(program_name, argc, argv);
    echo_bench::raise_fd_limit(program_name);
    int listen_fd = echo_bench::make_listener(program_name, options);

    // The hint 1 tells Asio that only one thread runs the context, so it
    // skips the locking it would otherwise do around its queues.
    asio::io_context io(1);
    tcp::acceptor acceptor(io, tcp::v4(), listen_fd);
    accept(acceptor);

    // stop() abandons the pending handlers; destroying the io_context then
    // destroys them, which releases every session and closes its socket.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&io](boost::system::error_code, int) { io.stop(); });
    io.run();
    return 0;
}
