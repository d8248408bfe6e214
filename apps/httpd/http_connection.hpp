#pragma once

// HttpConnection: the shardloop Protocol that glues an HttpSession to a
// stream transport. The session decides what to answer; this decides when
// to read, write, send a file, wait, and close:
//
//   - data_received() feeds the bytes to the session and writes what it
//     produced once per read, however many pipelined requests it held;
//   - a file body goes out through the loop's sendfile (splice), in chunks
//     that each refresh the connection's deadline; reading is paused
//     meanwhile, so pipelined requests behind it wait their turn;
//   - pause_writing() (the peer is not reading) pauses reading too: no
//     more requests are taken until resume_writing(), so nothing is
//     buffered without bound;
//   - the last response (Connection: close, an error, the drain) is
//     followed by a close; after an error, or when bytes came after it, by
//     a lingering close: the write side is shut down and the input read
//     and dropped until the peer's EOF (or the idle timeout), so that the
//     peer gets the response rather than a reset for bytes it had still in
//     flight.
//
// One instance per connection, on the shard that accepted it.

#include <cstdint>
#include <exception>
#include <memory>
#include <string_view>

#include "http_session.hpp"
#include "shard_state.hpp"
#include "shardloop.hpp"
#include "timeout_list.hpp"

namespace shardloop::httpd {

class HttpConnection final : public Protocol,
                             public TimeoutList::Node,
                             public std::enable_shared_from_this<HttpConnection> {
public:
    explicit HttpConnection(ShardState& shard);

    // Protocol
    void connection_made(std::shared_ptr<BaseTransport> transport) override;
    void data_received(std::string_view data) override;
    bool eof_received() override;
    void connection_lost(std::exception_ptr error) override;
    void pause_writing() override;
    void resume_writing() override;

    // The deadline passed (the shard has unlinked the connection): closes
    // it, or aborts it when a response is under way.
    void timed_out();
    // The server is shutting down: close now when idle, else after the
    // response under way.
    void drain();
    // The shard's state is going away first (only when the shards stop
    // without a drain, after an error): the connection must not touch it.
    void forget_shard() noexcept { _shard_gone = true; }

private:
    void drive(Step step);
    void flush();
    // After the last response when the peer may still be sending: shut
    // down writing, read and drop until EOF.
    void linger();
    void close_now();
    void abort_now();
    void update_reading();
    void send_file_chunk();
    void file_chunk_sent(const Future<std::size_t>& sent);
    void metrics_ready(const Future<std::string>& body);

    ShardState& _shard;
    ServerCounters& _counters;
    HttpSession _session;
    std::shared_ptr<Transport> _transport;
    uint64_t _file_offset = 0;
    uint64_t _requests_seen = 0;  // the session's count when the deadline was last moved
    bool _reading = true;
    bool _writing_paused = false;
    bool _waiting = false;    // a file body or the metrics are on their way
    bool _peer_eof = false;   // the peer shut down its side
    bool _draining = false;   // the server is shutting down
    bool _lingering = false;  // the last response went; discarding input until EOF
    bool _closed = false;     // close() or abort() called, or the connection lost
    bool _lost = false;
    bool _shard_gone = false;
};

}  // namespace shardloop::httpd
