#include "net/listener.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "net/server.hpp"
#include "net/stream_transport.hpp"
#include "runtime/log.hpp"

namespace shardloop::detail {

Listener::Listener(EventLoop& loop, Server& server, int fd)
    : _loop(loop), _server(&server), _fd(fd) {}

Listener::~Listener() {
    if (_fd >= 0) {
        ::close(_fd);
    }
}

void Listener::start() {
    if (_closed || _armed || _paused) {
        return;
    }
    arm();
}

void Listener::arm() {
    _loop.reactor().submit(IoRequest{.opcode = IoOpcode::accept,
                                     .fd = _fd,
                                     .op_flags = SOCK_NONBLOCK | SOCK_CLOEXEC,
                                     .multishot = true},
                           &_accept.completion);
    _armed = true;
    if (_operations++ == 0) {
        _self = shared_from_this();
    }
}

void Listener::retire() noexcept {
    if (--_operations == 0) {
        std::shared_ptr<Listener> last = std::move(_self);  // may free this on return
    }
}

void Listener::on_accept(IoCompletion* self, int result, uint32_t flags) {
    Listener& listener = *reinterpret_cast<Operation*>(self)->owner;
    bool final = (flags & io_flags::more) == 0;
    if (final) {
        listener._armed = false;
    }
    if (result >= 0) {
        if (listener._closed) {
            ::close(result);  // accepted as the listener closed: nobody takes it
        } else {
            listener.accepted(result);
        }
    } else if (result == -EMFILE || result == -ENFILE || result == -ENOBUFS || result == -ENOMEM) {
        listener.pause_after(-result);
    } else if (result != -ECANCELED && result != -EAGAIN && result != -ECONNABORTED &&
               result != -EINTR && !listener._closed) {
        // asyncio logs unexpected accept errors and goes on accepting.
        log(LogLevel::error, std::string("Error on transport accept: ") + std::strerror(-result));
    }
    if (final && !listener._closed && !listener._paused) {
        listener.arm();
    }
    if (final) {
        listener.retire();
    }
}

void Listener::accepted(int fd) {
    std::shared_ptr<BaseProtocol> protocol;
    try {
        protocol = _server->protocol_factory()();
        if (!protocol) {
            throw std::runtime_error("the protocol factory returned null");
        }
    } catch (...) {
        ::close(fd);
        ExceptionContext context;
        context.message = "Error on transport creation for incoming connection";
        context.exception = std::current_exception();
        _loop.call_exception_handler(context);
        return;
    }
    StreamTransport::start(_loop, fd, StreamTransport::Kind::socket, std::move(protocol), _server);
}

void Listener::pause_after(int error) {
    if (_paused) {
        return;
    }
    _paused = true;
    log(LogLevel::error,
        "socket.accept() out of system resource: " + std::string(std::strerror(error)) + " (fd " +
            std::to_string(_fd) + "); accepting again in 1 second");
    if (_armed) {
        _loop.reactor().cancel(&_accept.completion);
    }
    _retry = _loop.call_later(retry_delay, [self = shared_from_this()] {
        self->_paused = false;
        self->start();
    });
}

void Listener::close() noexcept {
    if (_closed) {
        return;
    }
    _closed = true;
    _server = nullptr;
    _retry.cancel();
    if (_armed) {
        _loop.reactor().cancel(&_accept.completion);
    }
    if (_loop.is_closed()) {
        ::close(_fd);
    } else {
        _loop.reactor().submit(IoRequest::close(_fd), &_close.completion);
        if (_operations++ == 0) {
            _self = shared_from_this();
        }
    }
    _fd = -1;
}

void Listener::on_closed(IoCompletion* self, int /*result*/, uint32_t /*flags*/) {
    reinterpret_cast<Operation*>(self)->owner->retire();
}

}  // namespace shardloop::detail
