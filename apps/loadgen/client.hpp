#pragma once

// Client: one connection of the load generator, a shardloop Protocol.
// data_received() gets a view into the loop's receive buffer and never
// copies it: an echo response is only counted in bytes, an HTTP response
// is scanned once by llhttp. Each batch of bytes completes some requests
// and records their latencies; their successors go out in one write() per
// connection, after the loop has handled the iteration's completions (see
// Worker::want_send), from the Worker's precomputed request bytes, or in
// echo mode from the echoed bytes themselves. Nothing is allocated per
// request.
// The Client outlives its connections: when one breaks, the Worker opens
// another for the same Client, whose open-loop schedule carries on.
//
// Loop thread only; no fibers: every method is a plain callback.

#include <cstdint>
#include <exception>
#include <memory>
#include <string_view>

#include "apps/loadgen/http_response_parser.hpp"
#include "apps/loadgen/worker.hpp"
#include "shardloop.hpp"

namespace shardloop::loadgen {

class Client final : public Protocol, public std::enable_shared_from_this<Client> {
public:
    Client(Worker& worker, unsigned index);

    // ---- Protocol ----
    void connection_made(std::shared_ptr<BaseTransport> transport) override;
    void data_received(std::string_view data) override;
    bool eof_received() override;
    void connection_lost(std::exception_ptr error) override;

    // ---- For the Worker ----

    // Sends what may go now: closed loop, a request for every free slot of
    // the pipeline; open loop, the requests that are due, as far as the
    // pipeline has room. `now` is the send time of a closed-loop request.
    void send(int64_t now);
    // Open loop: one more of this connection's requests is due.
    void make_due() noexcept { ++_due; }
    bool connected() const noexcept { return _transport != nullptr; }
    // Drops the connection now (connection_lost follows).
    void abort();
    // The Worker is going away: callbacks from now on do nothing.
    void detach() noexcept { _worker = nullptr; }
    Worker* worker() const noexcept { return _worker; }
    unsigned index() const noexcept { return _index; }

    // The connection attempt in flight, if any, and the retry timer.
    Future<Connection<Transport>> attempt{};
    bool connecting = false;
    TimerHandle retry{};
    bool retry_pending = false;
    bool send_listed = false;  // in the Worker's list of clients to send()

private:
    static void on_http_response(void* self, unsigned status);
    // The oldest request in flight got its response.
    void complete(unsigned status) {
        int64_t sent = _sent_at[_head];
        _head = _head + 1 == _capacity ? 0 : _head + 1;
        --_in_flight;
        _worker->count_response(sent, _now, status);
    }
    void push(int64_t sent_ns) noexcept {
        unsigned tail = _head + _in_flight;
        _sent_at[tail >= _capacity ? tail - _capacity : tail] = sent_ns;
        ++_in_flight;
    }
    void write(unsigned count, int64_t now);
    void echo_back(std::string_view data, int64_t now);
    // Counts the error and drops the connection.
    void fail(ErrorKind kind);

    Worker* _worker;
    Transport* _writer = nullptr;  // _transport, for the hot path
    int64_t _now = 0;              // the batch data_received() is handling
    // Send times of the requests in flight, oldest at _head: a ring of
    // `pipeline` entries (responses come back in order).
    std::unique_ptr<int64_t[]> _sent_at;
    unsigned _capacity;
    unsigned _head = 0;
    unsigned _in_flight = 0;
    uint64_t _partial = 0;  // echo: bytes received of the oldest request
    uint64_t _due = 0;      // open loop: this connection's requests due so far
    uint64_t _next = 0;     // open loop: the next one to send
    unsigned _index;
    bool _echo;
    bool _overrun = false;  // a response came with no request in flight
    bool _closing = false;  // we closed it (a Connection: close, an error counted already)
    std::shared_ptr<Transport> _transport;
    HttpResponseParser _parser;
};

}  // namespace shardloop::loadgen
