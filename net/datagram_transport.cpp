#include "net/datagram_transport.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace shardloop::detail {

namespace {
// Datagrams one read callback takes before it lets the other callbacks of
// the iteration run; the rest are read on the next one.
constexpr int datagrams_per_read = 32;
// asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int connlost_writes_before_warning = 5;
}  // namespace

std::shared_ptr<SocketDatagramTransport> SocketDatagramTransport::start(
    EventLoop& loop, UniqueFd fd, std::shared_ptr<BaseProtocol> protocol,
    const std::optional<SocketAddress>& address, std::optional<Future<void>> waiter) {
    auto transport = std::make_shared<SocketDatagramTransport>(loop, std::move(fd), address);
    transport->set_protocol(std::move(protocol));
    // asyncio's order: the protocol hears of the transport before any
    // datagram, and the waiter completes only after both.
    loop.call_soon([transport] {
        if (transport->_protocol) {
            transport->_protocol->connection_made(transport);
        }
    });
    loop.call_soon([transport] {
        if (transport->reading() && !transport->_read_op.armed) {
            transport->arm_read();
        }
    });
    if (waiter) {
        loop.call_soon([waiter = *waiter]() mutable {
            if (!waiter.done()) {
                waiter.set_result();
            }
        });
    }
    transport->_net.register_transport(transport->_fd.get(), transport.get(), transport.get());
    transport->_self = transport;
    return transport;
}

SocketDatagramTransport::SocketDatagramTransport(EventLoop& loop, UniqueFd fd,
                                                 const std::optional<SocketAddress>& address)
    : _loop(loop),
      _net(NetState::of(loop)),
      _fd(std::move(fd)),
      _sock_fd(_fd.get()),
      _address(address) {
    _read_op.on_complete = &on_read_poll;
    _read_op.owner = this;
    _write_op.on_complete = &on_write_poll;
    _write_op.owner = this;
    // Like asyncio, both names are taken once, now; an unconnected socket
    // has no peer name.
    try {
        _sockname = local_address(_sock_fd);
    } catch (const std::system_error&) {
    }
    try {
        _peername = peer_address(_sock_fd);
    } catch (const std::system_error&) {
    }
}

void SocketDatagramTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    auto* datagram = dynamic_cast<DatagramProtocol*>(protocol.get());
    if (datagram == nullptr) {
        throw std::invalid_argument("a datagram transport needs a DatagramProtocol");
    }
    _protocol = std::move(protocol);
    _datagram_protocol = datagram;
}

std::string SocketDatagramTransport::repr() const {
    std::string text = "<SocketDatagramTransport";
    if (!_fd) {
        text += " closed";
    } else if (_closing) {
        text += " closing";
    }
    text += " fd=" + std::to_string(_sock_fd);
    if (_fd && !_loop_closed) {
        text += _read_op.armed && reading() ? " read=polling" : " read=idle";
        text += _write_op.armed && !_buffer.empty() ? " write=<polling" : " write=<idle";
        text += ", bufsize=" + std::to_string(_buffer_size) + ">";
    }
    return text + ">";
}

std::any SocketDatagramTransport::extra_info(std::string_view name) const {
    if (name == "peername" && _peername) {
        return *_peername;
    }
    if (name == "sockname" && _sockname) {
        return *_sockname;
    }
    if (name == "socket" && _fd) {
        return _fd.get();
    }
    return {};
}

// ---- Receiving ----

void SocketDatagramTransport::arm_read() {
    _loop.reactor().submit(IoRequest::poll(_fd.get(), POLLIN, /*multishot=*/true), &_read_op);
    _read_op.armed = true;
}

void SocketDatagramTransport::on_read_poll(IoCompletion* self, int result, uint32_t flags) {
    static_cast<Operation*>(self)->owner->read_polled(result, flags);
}

void SocketDatagramTransport::read_polled(int result, uint32_t flags) {
    bool final = (flags & io_flags::more) == 0;
    if (final) {
        _read_op.armed = false;
        _read_op.cancelling = false;
    }
    if (!reading()) {
        if (final) {
            release_if_idle();
        }
        return;
    }
    if (result == -ECANCELED) {
        if (final) {
            arm_read();  // not our cancel (a ring-wide one): keep reading
        }
        return;
    }
    if (result < 0) {
        _read_poll_error = -result;
        _read_poll_failed = true;
    }
    // A multishot poll the kernel ended (final, result >= 0) is re-armed by
    // read_ready() once the socket is drained.
    schedule_read();
}

void SocketDatagramTransport::schedule_read() {
    if (_read_scheduled) {
        return;
    }
    _read_scheduled = true;
    _loop.call_soon([self = shared_from_this()] { self->read_ready(); });
}

void SocketDatagramTransport::read_ready() {
    _read_scheduled = false;
    if (!reading()) {
        return;
    }
    if (_read_poll_error != 0) {
        report_error(std::exchange(_read_poll_error, 0), "poll");
        return;
    }
    if (!_receive_buffer) {
        _receive_buffer = std::make_unique_for_overwrite<char[]>(max_datagram_size);
    }
    try {
        for (int i = 0; i < datagrams_per_read; ++i) {
            SocketAddress from;
            from.set_size(SocketAddress::capacity());
            ssize_t n = ::recvfrom(_fd.get(), _receive_buffer.get(), max_datagram_size, 0,
                                   from.data(), from.size_ptr());
            if (n >= 0) {
                _datagram_protocol->datagram_received(
                    std::string_view(_receive_buffer.get(), static_cast<std::size_t>(n)), from);
            } else if (int error = errno; error == EAGAIN || error == EWOULDBLOCK) {
                // Drained: the next datagram wakes the poll (re-armed here
                // when the kernel had ended it).
                if (!_read_op.armed && !_read_poll_failed) {
                    arm_read();
                }
                return;
            } else if (error != EINTR) {
                report_error(error, "recvfrom");
            }
            if (!reading()) {
                return;  // the protocol closed the endpoint
            }
        }
    } catch (...) {
        // The exception goes to the loop's handler, as any callback's does;
        // what the socket still holds is read on the next iteration, since
        // no new wake-up would tell of it.
        if (reading()) {
            schedule_read();
        }
        throw;
    }
    schedule_read();
}

// ---- Sending ----

void SocketDatagramTransport::sendto(std::string_view data,
                                     const std::optional<SocketAddress>& to) {
    // Where sendto(2) sends; none means send(2) on the connected socket.
    std::optional<SocketAddress> destination;
    if (_address) {
        if (to && !(*to == *_address)) {
            throw std::invalid_argument("Invalid address: must be None or " +
                                        _address->to_string());
        }
        if (!_peername) {
            destination = _address;  // allow_broadcast: remote_addr without connect()
        }
    } else if (to && !(_peername && *to == *_peername)) {
        destination = to;
    }
    // asyncio drops what is sent on a lost connected endpoint; a closed fd
    // drops it on any endpoint (asyncio would fail on the closed socket).
    if ((_conn_lost != 0 && _address) || !_fd) {
        if (_conn_lost >= connlost_writes_before_warning) {
            shardloop::log(LogLevel::warning, "socket.send() raised exception.");
        }
        ++_conn_lost;
        return;
    }
    if (_buffer.empty()) {
        int result = send_now(data, destination);
        if (result == 0) {
            return;
        }
        if (result != -EAGAIN && result != -EWOULDBLOCK) {
            report_error(-result, "sendto");
            return;
        }
        arm_write();
    }
    _buffer.push_back(Pending{std::string(data), destination});
    _buffer_size += data.size() + header_size;
    maybe_pause_protocol();
}

int SocketDatagramTransport::send_now(std::string_view data,
                                      const std::optional<SocketAddress>& to) noexcept {
    const sockaddr* address = to ? to->data() : nullptr;
    socklen_t length = to ? to->size() : 0;
    for (;;) {
        // MSG_NOSIGNAL: a Unix datagram peer that went away must not raise SIGPIPE.
        if (::sendto(_fd.get(), data.data(), data.size(), MSG_NOSIGNAL, address, length) >= 0) {
            return 0;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

void SocketDatagramTransport::arm_write() {
    if (!_write_op.armed) {
        _loop.reactor().submit(IoRequest::poll(_fd.get(), POLLOUT), &_write_op);
        _write_op.armed = true;
    }
}

void SocketDatagramTransport::on_write_poll(IoCompletion* self, int result, uint32_t /*flags*/) {
    static_cast<Operation*>(self)->owner->write_polled(result);
}

void SocketDatagramTransport::write_polled(int result) {
    _write_op.armed = false;
    _write_op.cancelling = false;
    if (_conn_lost != 0 || !_fd) {
        release_if_idle();
        return;
    }
    if (result == -ECANCELED) {
        arm_write();  // not our cancel: ours come only once connection_lost is on its way
        return;
    }
    schedule_write();
}

void SocketDatagramTransport::schedule_write() {
    if (_write_scheduled) {
        return;
    }
    _write_scheduled = true;
    _loop.call_soon([self = shared_from_this()] { self->sendto_ready(); });
}

void SocketDatagramTransport::sendto_ready() {
    _write_scheduled = false;
    if (_conn_lost != 0 || !_fd) {
        return;
    }
    while (!_buffer.empty()) {
        Pending& front = _buffer.front();
        int result = send_now(front.data, front.to);
        if (result == -EAGAIN || result == -EWOULDBLOCK) {
            arm_write();
            return;
        }
        _buffer_size -= front.data.size() + header_size;
        _buffer.pop_front();
        if (result < 0) {
            // As asyncio: one error per wake-up, then come back, even with
            // the queue empty, to resume the protocol or finish a close.
            arm_write();
            report_error(-result, "sendto");
            return;
        }
    }
    maybe_resume_protocol();  // resume_writing() may queue more
    if (_buffer.empty() && _closing && _conn_lost == 0) {
        ++_conn_lost;
        call_connection_lost(nullptr);
    }
}

void SocketDatagramTransport::report_error(int error, const char* what) {
    std::system_error failure(error, std::generic_category(), what);
    if (_datagram_protocol != nullptr) {
        _datagram_protocol->error_received(failure);
    }
}

// ---- Flow control (asyncio's _FlowControlMixin) ----

void SocketDatagramTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                                      std::optional<std::size_t> low) {
    std::size_t new_high = high ? *high : (low ? 4 * *low : std::size_t{64} * 1024);
    std::size_t new_low = low ? *low : new_high / 4;
    if (new_high < new_low) {
        throw std::invalid_argument("high (" + std::to_string(new_high) + ") must be >= low (" +
                                    std::to_string(new_low) + ") must be >= 0");
    }
    _high_water = new_high;
    _low_water = new_low;
    maybe_pause_protocol();
}

void SocketDatagramTransport::maybe_pause_protocol() {
    if (_buffer_size <= _high_water || _protocol_paused) {
        return;
    }
    _protocol_paused = true;
    if (!_protocol) {
        return;
    }
    try {
        _protocol->pause_writing();
    } catch (...) {
        report_protocol_failure("protocol.pause_writing() failed", std::current_exception());
    }
}

void SocketDatagramTransport::maybe_resume_protocol() {
    if (!_protocol_paused || _buffer_size > _low_water) {
        return;
    }
    _protocol_paused = false;
    if (!_protocol) {
        return;
    }
    try {
        _protocol->resume_writing();
    } catch (...) {
        report_protocol_failure("protocol.resume_writing() failed", std::current_exception());
    }
}

void SocketDatagramTransport::report_protocol_failure(const char* message,
                                                      std::exception_ptr error) noexcept {
    ExceptionContext context;
    context.message = message;
    context.exception = std::move(error);
    context.protocol = _protocol.get();
    context.socket = _fd.get();
    context.transport = this;
    _loop.call_exception_handler(context);
}

// ---- Closing ----

void SocketDatagramTransport::cancel(Operation& operation) noexcept {
    if (operation.armed && !operation.cancelling) {
        _loop.reactor().cancel(&operation);
        operation.cancelling = true;
    }
}

void SocketDatagramTransport::close() {
    if (_closing) {
        return;
    }
    _closing = true;
    cancel(_read_op);
    if (_buffer.empty()) {
        ++_conn_lost;
        cancel(_write_op);
        _loop.call_soon([self = shared_from_this()] { self->call_connection_lost(nullptr); });
    }
    // Otherwise sendto_ready() calls connection_lost once the queue is sent.
}

void SocketDatagramTransport::abort() { force_close(nullptr); }

void SocketDatagramTransport::force_close(std::exception_ptr error) {
    if (_conn_lost != 0) {
        return;
    }
    _buffer.clear();
    _buffer_size = 0;
    cancel(_write_op);
    if (!_closing) {
        _closing = true;
        cancel(_read_op);
    }
    ++_conn_lost;
    _loop.call_soon([self = shared_from_this(), error = std::move(error)] {
        self->call_connection_lost(error);
    });
}

void SocketDatagramTransport::call_connection_lost(std::exception_ptr error) {
    // The fd is closed and the protocol let go of even when connection_lost throws.
    struct Finish {
        SocketDatagramTransport& transport;
        ~Finish() {
            transport.close_fd();
            transport._protocol.reset();
            transport._datagram_protocol = nullptr;
            transport.release_if_idle();  // the caller holds a reference too
        }
    } finish{*this};
    if (_protocol) {
        _protocol->connection_lost(std::move(error));
    }
}

void SocketDatagramTransport::close_fd() noexcept {
    if (!_fd) {
        return;
    }
    cancel(_read_op);
    cancel(_write_op);
    // Unregistered first: once closed, the number may be reused at once.
    _net.unregister_transport(_fd.get());
    _fd.reset();
}

void SocketDatagramTransport::abort_at_loop_close() noexcept {
    _loop_closed = true;
    _closing = true;
    ++_conn_lost;
    _buffer.clear();
    _buffer_size = 0;
    close_fd();
    _protocol.reset();
    _datagram_protocol = nullptr;
    release_if_idle();
}

void SocketDatagramTransport::release_if_idle() noexcept {
    if (!_fd && !_read_op.armed && !_write_op.armed && _self) {
        std::shared_ptr<SocketDatagramTransport> last = std::move(_self);
    }
}

}  // namespace shardloop::detail
