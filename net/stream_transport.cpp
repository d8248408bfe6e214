#include "net/stream_transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "net/server.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace shardloop::detail {

namespace {

template <class T>
T* operation_of(IoCompletion* completion) {
    return reinterpret_cast<T*>(completion);  // the completion is the Operation's first member
}

std::exception_ptr errno_error(int error, const char* what) {
    return std::make_exception_ptr(std::system_error(error, std::generic_category(), what));
}

// asyncio's _FATAL_ERROR_IGNORE: a peer that resets or goes away is not
// worth the exception handler's attention; the protocol still hears of it.
bool is_peer_gone(std::exception_ptr error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        int code = e.code().value();
        return e.code().category() == std::generic_category() &&
               (code == ECONNRESET || code == EPIPE || code == ECONNABORTED);
    } catch (...) {
        return false;
    }
}

// write(2) on a pipe (or a socket used as one) whose reader is gone raises
// SIGPIPE, which kills a process that does not ignore it (Python ignores it
// at startup; a C++ program need not), and there is no MSG_NOSIGNAL for
// pipes. So the signal is blocked on this thread around the call, and the
// one the call raised is taken off before it is unblocked. Returns the
// count written or -errno.
long write_without_sigpipe(int fd, const char* data, std::size_t size) noexcept {
    sigset_t pipe_signal;
    sigset_t saved;
    sigset_t pending;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    sigemptyset(&pending);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, &saved);
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    ssize_t n = ::write(fd, data, size);
    long result = n >= 0 ? static_cast<long>(n) : -errno;
    if (result == -EPIPE && !was_pending) {
        timespec no_wait{};
        while (sigtimedwait(&pipe_signal, nullptr, &no_wait) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    return result;
}

}  // namespace

std::shared_ptr<StreamTransport> StreamTransport::start(EventLoop& loop, int fd, Kind kind,
                                                        std::shared_ptr<BaseProtocol> protocol,
                                                        Server* server) {
    auto transport = std::make_shared<StreamTransport>(loop, fd, kind, server);
    transport->_self = transport;
    NetState& net = NetState::of(loop);
    if (kind != Kind::write_pipe) {
        transport->_ring = &net.receive_buffers();
    }
    net.register_transport(fd, transport.get(), transport.get());
    transport->set_protocol(std::move(protocol));
    if (kind == Kind::socket) {
        // Best effort: a socket of another family has no TCP options, and an
        // unconnected one no peer.
        transport->_sockname.set_size(SocketAddress::capacity());
        if (::getsockname(fd, transport->_sockname.data(), transport->_sockname.size_ptr()) != 0) {
            transport->_sockname = {};
        }
        transport->_peername.set_size(SocketAddress::capacity());
        if (::getpeername(fd, transport->_peername.data(), transport->_peername.size_ptr()) != 0) {
            transport->_peername = {};
        }
        int family = transport->_sockname.family();
        if (family == AF_INET || family == AF_INET6) {
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
    }
    if (server != nullptr) {
        server->attach(transport.get());
    }
    if (kind == Kind::write_pipe) {
        transport->submit(transport->_hangup, IoRequest::poll(fd, POLLERR | POLLHUP));
    }
    loop.call_soon([transport] { transport->connection_made(); });
    return transport;
}

StreamTransport::StreamTransport(EventLoop& loop, int fd, Kind kind, Server* server)
    : _loop(loop), _fd(fd), _kind(kind), _server(server) {
    _receive.completion.on_complete = &StreamTransport::on_receive_complete;
    _receive.owner = this;
    _send.completion.on_complete = &StreamTransport::on_send_complete;
    _send.owner = this;
    _hangup.completion.on_complete = &StreamTransport::on_hangup_complete;
    _hangup.owner = this;
    _close.completion.on_complete = &StreamTransport::on_close_complete;
    _close.owner = this;
}

StreamTransport::~StreamTransport() = default;

// ---- Operations ----

void StreamTransport::prefetch_hot_lines() const noexcept {
    const auto* start = reinterpret_cast<const char*>(this);
    for (std::size_t offset = 0; offset < hot_bytes; offset += cache_line) {
        __builtin_prefetch(start + offset);
    }
}

void StreamTransport::submit(Operation& op, const IoRequest& request) {
    _loop.reactor().submit(request, &op.completion);
    op.in_flight = true;
    ++_operations;
}

void StreamTransport::retire_operation() noexcept {
    --_operations;
    if (_operations == 0 && _lost) {
        std::shared_ptr<StreamTransport> last = std::move(_self);  // may free this on return
    }
}

// ---- Protocol plumbing ----

void StreamTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    ProtocolKind before = _protocol_kind;
    _protocol = std::move(protocol);
    _buffered = dynamic_cast<BufferedProtocol*>(_protocol.get());
    _plain = _buffered != nullptr ? nullptr : dynamic_cast<Protocol*>(_protocol.get());
    _protocol_kind = _buffered != nullptr ? ProtocolKind::buffered
                     : _plain != nullptr  ? ProtocolKind::plain
                                          : ProtocolKind::none;
    if (before != ProtocolKind::none && before != _protocol_kind && _receive.in_flight) {
        // The receive in flight reads the old way; its completion re-arms.
        cancel_receive();
    }
}

void StreamTransport::connection_made() {
    if (_lost) {
        return;
    }
    _connection_made = true;
    try {
        _protocol->connection_made(shared_from_this());
    } catch (...) {
        fatal_error(std::current_exception(),
                    "Fatal error: protocol.connection_made() call failed.");
        return;
    }
    arm_receive();
}

void StreamTransport::fatal_error(std::exception_ptr error, const char* message) {
    if (!is_peer_gone(error)) {
        report(message, error);
    }
    force_close(std::move(error));
}

void StreamTransport::report(const char* message, std::exception_ptr error) noexcept {
    ExceptionContext context;
    context.message = message;
    context.exception = std::move(error);
    context.transport = this;
    context.protocol = _protocol.get();
    _loop.call_exception_handler(context);
}

// ---- Reading ----

bool StreamTransport::is_reading() const {
    return _kind != Kind::write_pipe && !_reading_paused && !_closing;
}

void StreamTransport::arm_receive() {
    if (_receive.in_flight || _closing || _reading_paused || _eof || _lost || !_connection_made ||
        _kind == Kind::write_pipe) {
        return;
    }
    if (_protocol_kind == ProtocolKind::buffered) {
        std::span<char> target;
        try {
            target = _buffered->get_buffer(0);
            if (target.empty()) {
                throw RuntimeError("get_buffer() returned an empty buffer");
            }
        } catch (...) {
            fatal_error(std::current_exception(),
                        "Fatal error: protocol.get_buffer() call failed.");
            return;
        }
        _buffered_target = target;
        _receive_target_owner = _protocol;
        auto length = static_cast<uint32_t>(std::min<std::size_t>(target.size(), UINT32_MAX));
        IoRequest request = is_socket() ? IoRequest{.opcode = IoOpcode::recv,
                                                    .fd = _fd,
                                                    .addr = target.data(),
                                                    .len = length}
                                        : IoRequest::read(_fd, target.data(), length);
        submit(_receive, request);
        return;
    }
    IoRequest request{.fd = _fd, .select_buffer = true, .buffer_group = _ring->group()};
    if (is_socket()) {
        request.opcode = IoOpcode::recv;
        request.multishot = true;
    } else {
        request.opcode = IoOpcode::read;
        request.len = _ring->buffer_size();
        request.offset = UINT64_MAX;
    }
    submit(_receive, request);
}

void StreamTransport::cancel_receive() noexcept {
    if (_receive.in_flight) {
        _loop.reactor().cancel(&_receive.completion);
    }
}

void StreamTransport::on_receive_complete(IoCompletion* self, int result, uint32_t flags) {
    Operation& op = *operation_of<Operation>(self);
    StreamTransport& transport = *op.owner;
    transport.prefetch_hot_lines();
    if (transport._plain != nullptr) {
        __builtin_prefetch(transport._plain);  // data_received() is called through its vtable
    }
    bool final = (flags & io_flags::more) == 0;
    // The protocol whose buffer this receive wrote into: alive until its
    // bytes have been handled, even if set_protocol() or connection_lost()
    // let go of it meanwhile.
    std::shared_ptr<BaseProtocol> target_owner;
    if (final) {
        op.in_flight = false;  // so that the handling may re-arm it
        target_owner = std::move(transport._receive_target_owner);
    }
    transport.handle_receive(result, flags);
    if (final) {
        transport.retire_operation();
    }
}

void StreamTransport::handle_receive(int result, uint32_t flags) {
    int buffer_id = (flags & io_flags::buffer) != 0 ? io_flags::buffer_id(flags) : -1;
    if (_lost) {
        release_buffer(buffer_id);
        return;
    }
    if (result > 0) {
        if (buffer_id >= 0) {
            deliver(std::string_view(_ring->buffer(static_cast<uint16_t>(buffer_id)),
                                     static_cast<std::size_t>(result)),
                    buffer_id);
        } else {
            deliver_buffered(static_cast<std::size_t>(result));
        }
    } else if (result == 0) {
        release_buffer(buffer_id);
        handle_eof();
        return;
    } else if (result == -ENOBUFS) {
        // The ring ran dry: other connections hold every buffer for now.
        // Try again next iteration rather than spin inside this one.
        _loop.call_soon([self = shared_from_this()] { self->arm_receive(); });
        return;
    } else if (result != -ECANCELED) {
        release_buffer(buffer_id);
        fatal_error(errno_error(-result, is_socket() ? "recv" : "read"),
                    "Fatal read error on socket transport");
        return;
    }
    if ((flags & io_flags::more) == 0) {
        arm_receive();
    }
}

void StreamTransport::release_buffer(int buffer_id) noexcept {
    if (buffer_id >= 0) {
        _ring->recycle(static_cast<uint16_t>(buffer_id));
    }
}

void StreamTransport::deliver(std::string_view data, int buffer_id) {
    if (_closing || _reading_paused || _held_while_paused != nullptr) {
        // Received before the cancel took effect: closing drops it (asyncio
        // stops reading at close); a pause keeps it for resume_reading(). So
        // do bytes arriving after a resume_reading() whose held bytes are not
        // delivered yet: they must come behind those.
        if (!_closing) {
            hold(data);
        }
        release_buffer(buffer_id);
        return;
    }
    _delivering_id = buffer_id;
    _delivering_pinned = false;
    try {
        if (_protocol_kind == ProtocolKind::plain) {
            _plain->data_received(data);
        } else if (_protocol_kind == ProtocolKind::buffered) {
            // A switch to a BufferedProtocol while a ring receive was in flight.
            while (!data.empty() && !_lost) {
                std::span<char> target = _buffered->get_buffer(data.size());
                if (target.empty()) {
                    throw RuntimeError("get_buffer() returned an empty buffer");
                }
                std::size_t n = std::min(target.size(), data.size());
                std::memcpy(target.data(), data.data(), n);
                _buffered->buffer_updated(n);
                data.remove_prefix(n);
            }
        }
    } catch (...) {
        _delivering_id = -1;
        if (!_delivering_pinned) {
            release_buffer(buffer_id);
        }
        fatal_error(std::current_exception(), "Fatal error: protocol.data_received() call failed.");
        return;
    }
    _delivering_id = -1;
    if (!_delivering_pinned) {
        release_buffer(buffer_id);  // else the send that took it gives it back
    }
}

void StreamTransport::deliver_buffered(std::size_t nbytes) {
    std::string_view data(_buffered_target.data(), nbytes);
    if (_closing) {
        return;
    }
    if (_reading_paused || _held_while_paused != nullptr) {
        hold(data);
        return;
    }
    try {
        if (_protocol_kind == ProtocolKind::buffered) {
            _buffered->buffer_updated(nbytes);
        } else if (_protocol_kind == ProtocolKind::plain) {
            _plain->data_received(data);  // switched while the recv was in flight
        }
    } catch (...) {
        fatal_error(std::current_exception(),
                    "Fatal error: protocol.buffer_updated() call failed.");
    }
}

void StreamTransport::handle_eof() {
    _eof = true;
    if (_closing) {
        return;
    }
    if (_reading_paused || _held_while_paused != nullptr) {
        _held_eof = true;  // after the held bytes
        return;
    }
    if (_kind == Kind::read_pipe) {
        _closing = true;  // asyncio's read pipe: eof_received, then the connection is lost
    }
    bool keep_open = false;
    try {
        keep_open = _plain != nullptr      ? _plain->eof_received()
                    : _buffered != nullptr ? _buffered->eof_received()
                                           : false;
    } catch (...) {
        fatal_error(std::current_exception(), "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    if (_kind == Kind::read_pipe) {
        _loop.call_soon([self = shared_from_this()] { self->call_connection_lost(nullptr); });
    } else if (!keep_open) {
        close();
    }
}

void StreamTransport::pause_reading() {
    if (_closing || _reading_paused) {
        return;
    }
    _reading_paused = true;
    cancel_receive();
}

void StreamTransport::resume_reading() {
    if (_closing || !_reading_paused) {
        return;
    }
    _reading_paused = false;
    if (_held_while_paused != nullptr || _held_eof) {
        // Delivered on the next iteration, as a fresh read would be.
        _loop.call_soon([self = shared_from_this()] {
            if (self->_reading_paused || self->_closing) {
                return;
            }
            std::unique_ptr<std::string> held = std::move(self->_held_while_paused);
            if (held != nullptr) {
                self->deliver_copy(*held);
            }
            if (self->_held_eof && !self->_closing && !self->_reading_paused) {
                self->_held_eof = false;
                self->handle_eof();
            }
        });
    }
    arm_receive();
}

void StreamTransport::deliver_copy(std::string_view data) { deliver(data, -1); }

void StreamTransport::hold(std::string_view data) {
    if (_held_while_paused == nullptr) {
        _held_while_paused = std::make_unique<std::string>();
    }
    _held_while_paused->append(data);
}

// ---- Writing ----

std::size_t StreamTransport::get_write_buffer_size() const {
    return (_sending.size() - _sending_offset) + _pending.size() + _pinned_send.size();
}

void StreamTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                              std::optional<std::size_t> low) {
    std::size_t h = 0;
    std::size_t l = 0;
    if (!high) {
        h = low ? 4 * *low : default_high_water;
    } else {
        h = *high;
    }
    l = low ? *low : h / 4;
    if (h < l) {
        throw std::invalid_argument("high (" + std::to_string(h) + ") must be >= low (" +
                                    std::to_string(l) + ") must be >= 0");
    }
    _high_water = h;
    _low_water = l;
    maybe_pause_protocol();
}

void StreamTransport::maybe_pause_protocol() {
    if (_protocol_paused || get_write_buffer_size() <= _high_water || _lost) {
        return;
    }
    _protocol_paused = true;
    try {
        _protocol->pause_writing();
    } catch (...) {
        report("protocol.pause_writing() failed", std::current_exception());
    }
}

void StreamTransport::maybe_resume_protocol() {
    if (!_protocol_paused || get_write_buffer_size() > _low_water || _lost) {
        return;
    }
    _protocol_paused = false;
    try {
        _protocol->resume_writing();
    } catch (...) {
        report("protocol.resume_writing() failed", std::current_exception());
    }
}

void StreamTransport::write(std::string_view data) {
    if (_kind == Kind::read_pipe) {
        throw RuntimeError("write() on a read pipe transport");
    }
    if (_eof_written) {
        throw RuntimeError("Cannot call write() after write_eof()");
    }
    if (_sendfile_running) {
        throw RuntimeError("unable to write; sendfile is in progress");
    }
    if (data.empty()) {
        return;
    }
    if (_lost_scheduled) {
        // asyncio counts these and logs past a threshold; the bytes go nowhere.
        if (++_writes_after_lost == 5) {
            log(LogLevel::warning, "socket.send() raised exception.");
        }
        return;
    }
    // Only a send in flight has bytes behind it (see _sending), so the
    // write buffer need not be looked at: it is empty otherwise.
    assert(_send.in_flight || get_write_buffer_size() == 0);
    if (_send.in_flight) {
        _pending.append(data);
        maybe_pause_protocol();
        return;
    }
    if (is_socket() && !_delivering_pinned && is_in_delivered_buffer(data)) {
        // An echo of what data_received() is being handed: send it from the
        // ring buffer, which the send gives back when it completes.
        _delivering_pinned = true;
        _pinned_buffer = _delivering_id;
        _pinned_send = data;
        submit(_send, IoRequest{.opcode = IoOpcode::send,
                                .fd = _fd,
                                .addr = const_cast<char*>(data.data()),
                                .len = static_cast<uint32_t>(data.size()),
                                .op_flags = MSG_NOSIGNAL});
        // The buffer was empty: these bytes are all of it now.
        if (data.size() > _high_water) {
            maybe_pause_protocol();
        }
        return;
    }
    write_now(data);
}

bool StreamTransport::is_in_delivered_buffer(std::string_view data) const noexcept {
    if (_delivering_id < 0) {
        return false;
    }
    const char* buffer = _ring->buffer(static_cast<uint16_t>(_delivering_id));
    return data.data() >= buffer && data.data() + data.size() <= buffer + _ring->buffer_size();
}

void StreamTransport::write_now(std::string_view data) {
    long n = 0;
    if (is_socket()) {
        n = ::send(_fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        n = n >= 0 ? n : -errno;
    } else {
        n = write_without_sigpipe(_fd, data.data(), data.size());
    }
    if (n < 0) {
        if (n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR) {
            fatal_error(errno_error(static_cast<int>(-n), is_socket() ? "send" : "write"),
                        "Fatal write error on socket transport");
            return;
        }
        n = 0;
    }
    if (static_cast<std::size_t>(n) == data.size()) {
        return;
    }
    _sending.assign(data.substr(static_cast<std::size_t>(n)));
    _sending_offset = 0;
    start_send();
    maybe_pause_protocol();
}

void StreamTransport::start_send() {
    if (_send.in_flight || _lost_scheduled) {
        return;
    }
    if (_sending_offset == _sending.size()) {
        _sending.clear();
        _sending_offset = 0;
        std::swap(_sending, _pending);
    }
    if (_sending.empty()) {
        return;
    }
    if (!is_socket()) {
        // A pipe: wait for room, then write(2) from handle_send() with
        // SIGPIPE held off (an io_uring write would raise it on this thread).
        submit(_send, IoRequest::poll(_fd, POLLOUT));
        return;
    }
    std::size_t left = _sending.size() - _sending_offset;
    auto length = static_cast<uint32_t>(std::min<std::size_t>(left, UINT32_MAX));
    char* from = _sending.data() + _sending_offset;
    submit(_send, IoRequest{.opcode = IoOpcode::send,
                            .fd = _fd,
                            .addr = from,
                            .len = length,
                            .op_flags = MSG_NOSIGNAL});
}

void StreamTransport::on_send_complete(IoCompletion* self, int result, uint32_t /*flags*/) {
    Operation& op = *operation_of<Operation>(self);
    StreamTransport& transport = *op.owner;
    transport.prefetch_hot_lines();
    op.in_flight = false;
    transport.handle_send(result);
    transport.retire_operation();
}

void StreamTransport::handle_send(int result) {
    if (!is_socket() && result >= 0 && !_lost_scheduled) {
        // The pipe has room (or its reader is gone, which the write tells).
        long n = write_without_sigpipe(_fd, _sending.data() + _sending_offset,
                                       _sending.size() - _sending_offset);
        result = n == -EAGAIN || n == -EINTR ? 0 : static_cast<int>(n);
    }
    if (_pinned_buffer >= 0) {
        std::string_view pinned = _pinned_send;
        _pinned_send = {};
        if (result >= 0 && static_cast<std::size_t>(result) < pinned.size() && !_lost_scheduled) {
            // A short send: the rest goes ahead of the writes queued since.
            _sending.assign(pinned.substr(static_cast<std::size_t>(result)));
            _sending_offset = 0;
        }
        release_buffer(std::exchange(_pinned_buffer, -1));
    } else if (result > 0 && !_lost_scheduled) {
        _sending_offset += static_cast<std::size_t>(result);
    }
    if (_lost_scheduled || result == -ECANCELED) {
        return;
    }
    if (result < 0) {
        fatal_error(errno_error(-result, is_socket() ? "send" : "write"),
                    "Fatal write error on socket transport");
        return;
    }
    after_write_progress();
}

void StreamTransport::after_write_progress() {
    start_send();
    maybe_resume_protocol();
    assert(_send.in_flight || _lost_scheduled || get_write_buffer_size() == 0);
    if (_send.in_flight) {
        return;
    }
    if (_waiters != nullptr) {
        for (Future<void>& waiter : std::exchange(_waiters->drained, {})) {
            if (!waiter.done()) {
                waiter.set_result();
            }
        }
    }
    if (_closing) {
        _loop.call_soon([self = shared_from_this()] { self->call_connection_lost(nullptr); });
    } else if (_eof_written) {
        shutdown_write();
    }
}

void StreamTransport::shutdown_write() {
    if (_kind == Kind::write_pipe) {
        close();  // a pipe has no half-close: its EOF is the close
        return;
    }
    if (::shutdown(_fd, SHUT_WR) != 0 && errno != ENOTCONN) {
        fatal_error(errno_error(errno, "shutdown"), "Fatal error on write_eof()");
    }
}

void StreamTransport::write_eof() {
    if (_closing || _eof_written || _kind == Kind::read_pipe) {
        return;
    }
    _eof_written = true;
    if (_kind == Kind::write_pipe) {
        // A pipe's EOF is its close (asyncio's _UnixWritePipeTransport:
        // closing at once, connection_lost once the buffer is written).
        close();
        return;
    }
    if (get_write_buffer_size() == 0 && !_send.in_flight) {
        shutdown_write();
    }
}

Future<void> StreamTransport::drained() {
    Future<void> done = _loop.create_future<void>();
    if (get_write_buffer_size() == 0 && !_send.in_flight) {
        done.set_result();
    } else {
        waiters().drained.push_back(done);
    }
    return done;
}

Future<void> StreamTransport::when_lost() {
    Future<void> lost = _loop.create_future<void>();
    if (_lost) {
        lost.set_result();
    } else {
        std::vector<Future<void>>& waiting = waiters().lost;
        std::erase_if(waiting, [](const Future<void>& waiter) { return waiter.done(); });
        waiting.push_back(lost);
    }
    return lost;
}

StreamTransport::Waiters& StreamTransport::waiters() {
    if (_waiters == nullptr) {
        _waiters = std::make_unique<Waiters>();
    }
    return *_waiters;
}

void StreamTransport::on_hangup_complete(IoCompletion* self, int result, uint32_t /*flags*/) {
    Operation& op = *operation_of<Operation>(self);
    StreamTransport& transport = *op.owner;
    op.in_flight = false;
    if (!transport._lost_scheduled && result != -ECANCELED) {
        // The pipe's reader went away (asyncio: "Pipe was closed by peer").
        bool had_data = transport.get_write_buffer_size() != 0;
        transport.force_close(had_data ? errno_error(EPIPE, "write") : nullptr);
    }
    transport.retire_operation();
}

// ---- Closing ----

void StreamTransport::close() {
    if (_closing) {
        return;
    }
    _closing = true;
    cancel_receive();
    if (get_write_buffer_size() == 0 && !_send.in_flight) {
        _lost_scheduled = true;
        _loop.call_soon([self = shared_from_this()] { self->call_connection_lost(nullptr); });
    }
}

void StreamTransport::abort() { force_close(nullptr); }

void StreamTransport::force_close(std::exception_ptr error) {
    if (_lost_scheduled) {
        return;
    }
    _lost_scheduled = true;
    _pending.clear();
    // A send in flight may still be reading its bytes (from _sending or a
    // ring buffer) until its completion: they are left alone, only no
    // longer counted as buffered.
    _pinned_send = {};
    if (_send.in_flight) {
        _sending_offset = _sending.size();
        _loop.reactor().cancel(&_send.completion);
    } else {
        _sending.clear();
        _sending_offset = 0;
    }
    if (!_closing) {
        _closing = true;
        cancel_receive();
    }
    _loop.call_soon([self = shared_from_this(), error] { self->call_connection_lost(error); });
}

void StreamTransport::call_connection_lost(std::exception_ptr error) {
    if (_lost) {
        return;
    }
    _lost_scheduled = true;
    _lost = true;
    if (_connection_made) {
        try {
            _protocol->connection_lost(error);
        } catch (...) {
            report("protocol.connection_lost() failed", std::current_exception());
        }
    }
    cancel_receive();
    if (_hangup.in_flight) {
        _loop.reactor().cancel(&_hangup.completion);
    }
    if (_waiters != nullptr) {
        for (Future<void>& waiter : std::exchange(_waiters->drained, {})) {
            if (!waiter.done()) {
                waiter.set_exception(error != nullptr ? error
                                                      : std::make_exception_ptr(RuntimeError(
                                                            "Connection lost before the write "
                                                            "buffer was drained")));
            }
        }
        for (Future<void>& waiter : std::exchange(_waiters->lost, {})) {
            if (!waiter.done()) {
                waiter.set_result();
            }
        }
    }
    release_fd();
    _protocol.reset();
    _plain = nullptr;
    _buffered = nullptr;
    if (_server != nullptr) {
        std::exchange(_server, nullptr)->detach(this);
    }
    if (_operations == 0) {
        std::shared_ptr<StreamTransport> last = std::move(_self);  // may free this on return
    }
}

void StreamTransport::release_fd() noexcept {
    if (_fd < 0) {
        return;
    }
    if (NetState* net = NetState::find(_loop)) {
        net->unregister_transport(_fd);
    }
    // Closed through the ring, behind the operations already queued for
    // this fd: a queued operation must not meet a reused fd number.
    if (!_loop.is_closed()) {
        submit(_close, IoRequest::close(_fd));
    } else {
        ::close(_fd);
    }
    _fd = -1;
}

void StreamTransport::on_close_complete(IoCompletion* self, int /*result*/, uint32_t /*flags*/) {
    Operation& op = *operation_of<Operation>(self);
    op.in_flight = false;
    op.owner->retire_operation();
}

void StreamTransport::abort_at_loop_close() noexcept {
    if (_lost) {
        return;
    }
    _lost = true;
    _lost_scheduled = true;
    _closing = true;
    cancel_receive();
    if (_send.in_flight) {
        _loop.reactor().cancel(&_send.completion);
    }
    if (_hangup.in_flight) {
        _loop.reactor().cancel(&_hangup.completion);
    }
    if (NetState* net = NetState::find(_loop)) {
        net->unregister_transport(_fd);
    }
    ::close(_fd);
    _fd = -1;
    _protocol.reset();
    _plain = nullptr;
    _buffered = nullptr;
    if (_server != nullptr) {
        std::exchange(_server, nullptr)->detach(this);
    }
    if (_operations == 0) {
        std::shared_ptr<StreamTransport> last = std::move(_self);
    }
}

// ---- Introspection ----

std::any StreamTransport::extra_info(std::string_view name) const {
    if (name == "socket" && is_socket() && _fd >= 0) {
        return _fd;
    }
    if (name == "pipe" && !is_socket() && _fd >= 0) {
        return _fd;
    }
    if (name == "peername" && !_peername.empty()) {
        return _peername;
    }
    if (name == "sockname" && !_sockname.empty()) {
        return _sockname;
    }
    return {};
}

std::string StreamTransport::repr() const {
    const char* kind = _kind == Kind::socket      ? "SocketTransport"
                       : _kind == Kind::read_pipe ? "ReadPipeTransport"
                                                  : "WritePipeTransport";
    std::string text = std::string("<") + kind;
    if (_lost) {
        text += " closed";
    } else if (_closing) {
        text += " closing";
    }
    text += " fd=" + std::to_string(_fd);
    if (_kind != Kind::write_pipe && !_lost) {
        text += is_reading() ? " read=polling" : " read=idle";
    }
    if (_kind != Kind::read_pipe && !_lost) {
        std::size_t size = get_write_buffer_size();
        text += std::string(" write=<") + (size != 0 ? "polling" : "idle") +
                ", bufsize=" + std::to_string(size) + ">";
    }
    return text + ">";
}

}  // namespace shardloop::detail
