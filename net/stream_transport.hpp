#pragma once

// StreamTransport: asyncio's socket transport (_SelectorSocketTransport)
// and its pipe transports (_UnixReadPipeTransport, _UnixWritePipeTransport),
// on io_uring.
//
// Reading. A socket with a Protocol has one multishot recv armed, taking
// buffers from the loop's provided buffer ring: each completion is handed
// to data_received() as a view into the ring buffer, which goes back to the
// kernel when the call returns. A BufferedProtocol gets one recv at a time
// straight into the span its get_buffer() returned (which must stay valid
// until buffer_updated() or connection_lost()). A pipe reads one buffer at
// a time from the ring. ENOBUFS (the ring ran dry) re-arms the receive on
// the next iteration; it never closes a healthy connection. Bytes that
// were already on their way when pause_reading() cancelled the receive are
// kept and delivered by resume_reading(): none arrive while paused.
//
// Writing. A write() on an idle transport goes out at once with send(2)
// (MSG_DONTWAIT): nothing is copied when the socket takes it all. Only
// what it does not take is copied into the write buffer, which one io_uring
// send at a time drains. A write() of bytes that data_received() is being
// handed (an echo) is sent from the ring buffer itself by io_uring, which
// keeps that buffer until the send completes. A pipe has no MSG_NOSIGNAL:
// there an io_uring poll waits for room and write(2) runs with SIGPIPE
// blocked, so that a reader going away is an EPIPE, never a signal.
// pause_writing() / resume_writing() follow the buffer across the high /
// low water marks.
//
// Lifetime. The loop holds each transport (a shared_ptr) while it is open
// and while any of its operations is in the kernel: the operations' buffers
// are the transport's, and they must outlive the final completion.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/address.hpp"
#include "net/net_state.hpp"
#include "net/protocols.hpp"
#include "net/transports.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/reactor.hpp"

namespace shardloop {
class Server;
}

namespace shardloop::detail {

class alignas(64) StreamTransport final : public Transport,
                                          public ClosableAtLoopClose,
                                          public std::enable_shared_from_this<StreamTransport> {
public:
    enum class Kind : uint8_t { socket, read_pipe, write_pipe };

    static constexpr std::size_t default_high_water = 64 * 1024;
    static constexpr std::size_t cache_line = 64;

    // Takes ownership of `fd` (non-blocking). connection_made() is called
    // soon, then reading starts. `server` (may be null) is told when the
    // connection is gone.
    static std::shared_ptr<StreamTransport> start(EventLoop& loop, int fd, Kind kind,
                                                  std::shared_ptr<BaseProtocol> protocol,
                                                  Server* server = nullptr);

    StreamTransport(EventLoop& loop, int fd, Kind kind, Server* server);
    ~StreamTransport() override;

    // BaseTransport
    void close() override;
    bool is_closing() const override { return _closing; }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override { return _protocol; }
    std::string repr() const override;

    // ReadTransport
    bool is_reading() const override;
    void pause_reading() override;
    void resume_reading() override;

    // WriteTransport
    void write(std::string_view data) override;
    bool can_write_eof() const override { return _kind != Kind::read_pipe; }
    void write_eof() override;
    void abort() override;
    std::size_t get_write_buffer_size() const override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return {_low_water, _high_water};
    }
    void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                 std::optional<std::size_t> low = {}) override;

    // ClosableAtLoopClose
    void abort_at_loop_close() noexcept override;

    // The server is going away before this connection.
    void forget_server() noexcept { _server = nullptr; }

    // ---- For sendfile (net/sendfile.cpp) ----
    int fd() const noexcept { return _fd; }
    EventLoop& loop() const noexcept { return _loop; }
    // While set, write() throws RuntimeError (asyncio refuses writes during
    // sendfile); the transport's own buffer must be empty to start.
    void set_sendfile_running(bool running) noexcept { _sendfile_running = running; }
    // Done when the write buffer is empty (at once when it is).
    Future<void> drained();
    // Done once connection_lost() has been called (at once if it has), so
    // that sendfile stops waiting on a socket the transport has given up.
    // Cancel it when no longer interested.
    Future<void> when_lost();

protected:
    std::any extra_info(std::string_view name) const override;

private:
    // One kernel operation of the transport; its completion finds the
    // transport through `owner`.
    struct Operation {
        IoCompletion completion;
        StreamTransport* owner = nullptr;
        bool in_flight = false;
    };

    enum class ProtocolKind : uint8_t { none, plain, buffered };

    // What only sendfile waits for (drained(), when_lost()): allocated by
    // the first wait, so that a transport without one carries a null.
    struct Waiters {
        std::vector<Future<void>> drained;
        std::vector<Future<void>> lost;
    };

    static void on_receive_complete(IoCompletion* self, int result, uint32_t flags);
    static void on_send_complete(IoCompletion* self, int result, uint32_t flags);
    static void on_hangup_complete(IoCompletion* self, int result, uint32_t flags);
    static void on_close_complete(IoCompletion* self, int result, uint32_t flags);

    // Asks for the cache lines of the first member group (see below) at
    // once, when a completion arrives: the handling reads each of them, and
    // their misses then overlap instead of coming one after another.
    void prefetch_hot_lines() const noexcept;
    void connection_made();
    void submit(Operation& op, const IoRequest& request);
    // An operation's final completion was handled: once none is left and
    // the connection is lost, the loop lets go of the transport.
    void retire_operation() noexcept;
    void arm_receive();
    void cancel_receive() noexcept;
    void handle_receive(int result, uint32_t flags);
    void deliver(std::string_view data, int buffer_id);
    void deliver_buffered(std::size_t nbytes);
    void deliver_copy(std::string_view data);
    // Keeps bytes for resume_reading() to deliver: they arrived while paused,
    // or behind bytes kept so.
    void hold(std::string_view data);
    void handle_eof();
    // Whether `data` lies in the ring buffer data_received() is being handed.
    bool is_in_delivered_buffer(std::string_view data) const noexcept;
    void write_now(std::string_view data);
    void queue_write(std::string_view data);
    void start_send();
    void handle_send(int result);
    void after_write_progress();
    void shutdown_write();
    void maybe_pause_protocol();
    void maybe_resume_protocol();
    void fatal_error(std::exception_ptr error, const char* message);
    // Tells the loop's exception handler, naming this transport and protocol.
    void report(const char* message, std::exception_ptr error) noexcept;
    void force_close(std::exception_ptr error);
    void call_connection_lost(std::exception_ptr error);
    Waiters& waiters();  // created on first use
    void release_buffer(int buffer_id) noexcept;
    void release_fd() noexcept;
    void finish_closed_drain();
    bool is_socket() const noexcept { return _kind == Kind::socket; }

    // The members come in two groups. With a thousand connections, the
    // kernel's work for the other sockets evicts a transport from the cache
    // between two of its messages, so every cache line that a message
    // touches costs a miss. The first group is what receiving a message,
    // handing it to data_received() and sending the echo touch; it starts
    // on a cache line of its own (the class is aligned to one) and fills
    // hot_bytes, the bases' 40 bytes included. What is rarely there (held
    // bytes, waiters) is behind a pointer that is null while it is absent.
    static constexpr std::size_t hot_bytes = 4 * cache_line;

    // ---- Touched by every message ----
    EventLoop& _loop;
    int _fd;
    Kind _kind;
    ProtocolKind _protocol_kind = ProtocolKind::none;
    bool _closing = false;
    bool _lost_scheduled = false;  // connection_lost() is on its way: writes go nowhere
    bool _lost = false;            // connection_lost() was called (or the loop closed)
    bool _reading_paused = false;
    bool _protocol_paused = false;
    bool _eof_written = false;  // write_eof() was called
    bool _sendfile_running = false;
    bool _delivering_pinned = false;  // an io_uring send took the buffer being delivered

    Protocol* _plain = nullptr;  // _protocol as a Protocol, when it is one
    BufferRing* _ring = nullptr;
    Operation _receive;
    Operation _send;

    std::size_t _operations = 0;  // in the kernel
    // The ring buffer data_received() is being handed (-1: none), for the
    // echo path.
    int _delivering_id = -1;
    int _pinned_buffer = -1;
    std::string_view _pinned_send;  // a send straight from ring buffer _pinned_buffer
    std::size_t _sending_offset = 0;
    std::size_t _high_water = default_high_water;
    // Bytes that arrived after pause_reading(); null when there are none.
    std::unique_ptr<std::string> _held_while_paused;
    std::unique_ptr<Waiters> _waiters;

    // Writing state: `_sending` is what the send in flight reads (stable
    // while it runs); `_pending` collects the writes behind it. Until the
    // connection is given up (_lost_scheduled), neither holds anything to
    // send while no send is in flight: each send's completion starts the
    // next, so the write buffer is empty then.
    std::string _sending;
    std::string _pending;

    // ---- The rest ----
    std::size_t _low_water = default_high_water / 4;
    Server* _server;
    std::shared_ptr<BaseProtocol> _protocol;
    BufferedProtocol* _buffered = nullptr;  // _protocol as a BufferedProtocol
    // Held while open and while operations are in the kernel.
    std::shared_ptr<StreamTransport> _self;
    Operation _hangup;  // write pipes: a poll that sees the reader go away
    Operation _close;
    std::span<char> _buffered_target;  // where the buffered recv in flight writes
    // The protocol that owns _buffered_target, held until that recv's final
    // completion: the kernel may write into the span until then.
    std::shared_ptr<BaseProtocol> _receive_target_owner;
    bool _eof = false;
    bool _connection_made = false;
    bool _held_eof = false;
    int _writes_after_lost = 0;
    SocketAddress _sockname;
    SocketAddress _peername;
};

}  // namespace shardloop::detail
