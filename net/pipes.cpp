// EventLoop::connect_read_pipe and connect_write_pipe: a pipe (or socket,
// or character device, as asyncio allows) end wrapped in a StreamTransport.

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

#include "net/stream_transport.hpp"
#include "runtime/event_loop.hpp"

namespace shardloop {

namespace {

// asyncio: "Pipe transport is for pipes/sockets only."; the fd is made
// non-blocking, as the transport needs.
void prepare_pipe(int fd, const char* what) {
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        throw std::system_error(errno, std::generic_category(), std::string(what) + ": fstat");
    }
    if (!S_ISFIFO(info.st_mode) && !S_ISSOCK(info.st_mode) && !S_ISCHR(info.st_mode)) {
        throw std::invalid_argument(std::string(what) +
                                    ": Pipe transport is for pipes/sockets only.");
    }
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        throw std::system_error(errno, std::generic_category(), std::string(what) + ": fcntl");
    }
}

template <class T>
Future<Connection<T>> connect_pipe(EventLoop& loop, ProtocolFactory factory, int fd,
                                   detail::StreamTransport::Kind kind) {
    return loop.create_task([&loop, factory = std::move(factory), fd, kind] {
        std::shared_ptr<BaseProtocol> protocol = factory();
        if (!protocol) {
            throw std::invalid_argument("the protocol factory returned null");
        }
        auto transport = detail::StreamTransport::start(loop, fd, kind, protocol);
        // connection_made was queued first: this completes after it.
        Future<void> made = loop.create_future<void>();
        loop.call_soon([made]() mutable { made.set_result(); });
        await(made);
        return Connection<T>{transport, protocol};
    });
}

}  // namespace

Future<Connection<ReadTransport>> EventLoop::connect_read_pipe(ProtocolFactory factory, int fd) {
    check_closed();
    prepare_pipe(fd, "connect_read_pipe");
    return connect_pipe<ReadTransport>(*this, std::move(factory), fd,
                                       detail::StreamTransport::Kind::read_pipe);
}

Future<Connection<WriteTransport>> EventLoop::connect_write_pipe(ProtocolFactory factory, int fd) {
    check_closed();
    prepare_pipe(fd, "connect_write_pipe");
    return connect_pipe<WriteTransport>(*this, std::move(factory), fd,
                                        detail::StreamTransport::Kind::write_pipe);
}

}  // namespace shardloop
