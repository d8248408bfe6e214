#pragma once

// SocketDatagramTransport: asyncio's _SelectorDatagramTransport (UDP over
// IPv4/IPv6, and Unix datagram sockets), on the reactor.
//
// Receiving. One multishot io_uring poll for POLLIN stays armed while the
// endpoint reads. A readiness completion schedules one callback (never two
// at once) that calls recvfrom() until EAGAIN, into one 256 KiB buffer per
// transport, handing each datagram to datagram_received(). A multishot poll
// reports a wake-up, not a level, so the callback drains the socket; to
// stay fair to other callbacks it stops after a batch and reschedules
// itself when more may be waiting. Protocol callbacks always run from the
// ready queue, never inside the reactor's completion dispatch.
//
// Sending. sendto() sends at once when the socket takes the datagram; else
// it queues a copy and a one-shot POLLOUT poll drains the queue. Queued
// bytes count towards the write buffer size with asyncio's 8-byte header
// per datagram, against the 64 KiB / 16 KiB watermarks. Errors of either
// direction (ICMP's ECONNREFUSED, EMSGSIZE...) go to error_received() and
// the endpoint stays open.
//
// Lifetime. The transport holds itself (a shared_ptr) from start() until
// its fd is closed and its last poll's final completion has arrived: an
// open endpoint lives on while the loop reads for it, and the kernel never
// reports to freed memory. All methods are for the loop's thread.

#include <any>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "net/address.hpp"
#include "net/net_state.hpp"
#include "net/protocols.hpp"
#include "net/socket_util.hpp"
#include "net/transports.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/reactor.hpp"

namespace shardloop::detail {

class SocketDatagramTransport final : public DatagramTransport,
                                      public ClosableAtLoopClose,
                                      public std::enable_shared_from_this<SocketDatagramTransport> {
public:
    static constexpr std::size_t max_datagram_size = std::size_t{256} * 1024;  // asyncio's max_size
    static constexpr std::size_t header_size = 8;  // what asyncio counts per queued datagram

    // Wraps `fd`, a non-blocking datagram socket it owns from now on.
    // `address` is asyncio's remote address (remote_addr given): sendto()
    // then refuses any other. Schedules, in this order and each with
    // call_soon: connection_made(), the start of reading, and the waiter's
    // result (unless it was cancelled). Throws std::invalid_argument unless
    // the protocol is a DatagramProtocol.
    static std::shared_ptr<SocketDatagramTransport> start(
        EventLoop& loop, UniqueFd fd, std::shared_ptr<BaseProtocol> protocol,
        const std::optional<SocketAddress>& address, std::optional<Future<void>> waiter);

    SocketDatagramTransport(EventLoop& loop, UniqueFd fd,
                            const std::optional<SocketAddress>& address);
    ~SocketDatagramTransport() override = default;
    SocketDatagramTransport(const SocketDatagramTransport&) = delete;
    SocketDatagramTransport& operator=(const SocketDatagramTransport&) = delete;

    // BaseTransport
    void close() override;
    bool is_closing() const override { return _closing; }
    // Throws std::invalid_argument unless `protocol` is a DatagramProtocol.
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override { return _protocol; }
    // "<SocketDatagramTransport fd=7 read=polling write=<idle, bufsize=0>>".
    std::string repr() const override;

    // DatagramTransport. sendto() throws std::invalid_argument("Invalid
    // address: must be None or <remote>") on an endpoint with a remote
    // address when `to` differs from it.
    void sendto(std::string_view data, const std::optional<SocketAddress>& to = {}) override;
    void abort() override;
    std::size_t get_write_buffer_size() const override { return _buffer_size; }

    // asyncio's flow-control mixin, which its datagram transport has too.
    // (low, high). set_write_buffer_limits throws std::invalid_argument
    // unless high >= low.
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const {
        return {_low_water, _high_water};
    }
    void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                 std::optional<std::size_t> low = {});

    // ClosableAtLoopClose
    void abort_at_loop_close() noexcept override;

protected:
    std::any extra_info(std::string_view name) const override;

private:
    // One kernel operation of this transport. armed: its final completion
    // has not arrived yet.
    struct Operation : IoCompletion {
        SocketDatagramTransport* owner = nullptr;
        bool armed = false;
        bool cancelling = false;
    };
    struct Pending {
        std::string data;
        std::optional<SocketAddress> to;  // sendto(2)'s; none: send(2), the socket is connected
    };

    static void on_read_poll(IoCompletion* self, int result, uint32_t flags);
    static void on_write_poll(IoCompletion* self, int result, uint32_t flags);
    void read_polled(int result, uint32_t flags);
    void write_polled(int result);

    bool reading() const noexcept { return !_closing && _fd; }
    void arm_read();
    void schedule_read();
    void read_ready();
    void arm_write();
    void schedule_write();
    void sendto_ready();
    void cancel(Operation& operation) noexcept;

    // One send(2)/sendto(2): 0 or -errno.
    int send_now(std::string_view data, const std::optional<SocketAddress>& to) noexcept;
    void report_error(int error, const char* what);
    void maybe_pause_protocol();
    void maybe_resume_protocol();
    void report_protocol_failure(const char* message, std::exception_ptr error) noexcept;

    void force_close(std::exception_ptr error);
    void call_connection_lost(std::exception_ptr error);
    void close_fd() noexcept;
    // Drops the self-reference once nothing is left in the kernel. It may
    // destroy this transport: callers touch no member after it.
    void release_if_idle() noexcept;

    EventLoop& _loop;
    NetState& _net;
    UniqueFd _fd;
    int _sock_fd;                           // the fd number, kept for repr() after close
    std::optional<SocketAddress> _address;  // asyncio's remote address
    std::optional<SocketAddress> _sockname;
    std::optional<SocketAddress> _peername;  // set when the socket is connected
    std::shared_ptr<BaseProtocol> _protocol;
    DatagramProtocol* _datagram_protocol = nullptr;
    std::shared_ptr<SocketDatagramTransport> _self;

    Operation _read_op;
    Operation _write_op;
    bool _read_scheduled = false;
    bool _write_scheduled = false;
    int _read_poll_error = 0;        // errno of a failed poll, for read_ready() to report
    bool _read_poll_failed = false;  // never re-armed then: a broken fd would spin
    std::unique_ptr<char[]> _receive_buffer;

    std::deque<Pending> _buffer;
    std::size_t _buffer_size = 0;
    std::size_t _high_water = std::size_t{64} * 1024;
    std::size_t _low_water = std::size_t{16} * 1024;
    bool _protocol_paused = false;

    bool _closing = false;
    int _conn_lost = 0;  // connection_lost scheduled (counts writes after it, as asyncio)
    bool _loop_closed = false;
};

}  // namespace shardloop::detail
