#pragma once

// Worker: one shard's part of a run (a Sharded<Worker> has one per shard).
// It owns that shard's connections (Client, one Protocol each), opens them
// and opens them again when they break, paces the open-loop schedule, and
// counts what happens in the shard's own variables: nothing on the hot
// path is shared with another shard. Shard 0 drives the run through
// messages: connect(), start(), done(), finish(), result(), stop().
//
// Every member runs on the Worker's shard.

#include <time.h>

#include <array>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "apps/loadgen/run_config.hpp"
#include "apps/loadgen/shard_result.hpp"
#include "shardloop.hpp"

namespace shardloop::loadgen {

class Client;

// CLOCK_MONOTONIC in nanoseconds: the clock of the loop (EventLoop::time())
// and of every Window.
inline int64_t monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

class Worker {
public:
    // Builds this shard's clients (none connected yet).
    explicit Worker(std::shared_ptr<const RunConfig> config);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // A task that opens this shard's connections, a few dozen at a time.
    // Fails with the first connection's error (the ones made stay open
    // until stop()), or with CancelledError when finish() came first.
    Future<void> connect();

    // Starts sending. Closed loop: every connection sends `pipeline`
    // requests and one more for each response. Open loop: requests fall
    // due on the shard's schedule from window.start_ns.
    void start(Window window);

    // Done once the shard has finished: window.end_ns passed, its share of
    // the request count was answered (or lost), or finish() was called.
    Future<void> done() const { return _done; }

    // Stops sending and counting now (SIGINT); cancels connection attempts.
    void finish();

    // What the shard counted.
    ShardResult result() const;
    Progress progress() const noexcept { return _progress; }

    // Closes every connection (dropping what they had not sent); done when
    // all are gone. Sharded<Worker>::stop() calls it.
    Future<void> stop();

    // ---- For the clients (hot path first) ----

    const RunConfig& config() const noexcept { return *_config; }
    unsigned pipeline() const noexcept { return _config->pipeline; }
    bool open_loop() const noexcept { return _interval_ns > 0; }
    bool sending() const noexcept { return _sending; }

    // The requests a connection may send at `now`, at most `wanted`.
    unsigned take(unsigned wanted, int64_t now) noexcept {
        if (!_sending) {
            return 0;
        }
        if (!_quota_limited || now < _window.measure_ns) {
            return wanted;
        }
        uint64_t left = _quota - _counted_issued;
        unsigned n = left < wanted ? static_cast<unsigned>(left) : wanted;
        _counted_issued += n;
        return n;
    }

    // A response to a request sent (or, open loop, due) at `sent_ns` arrived
    // at `now`.
    void count_response(int64_t sent_ns, int64_t now, unsigned status) {
        ++_progress.responses;
        if (sent_ns < _window.measure_ns) {
            return;
        }
        if (now <= _window.end_ns && !_finished) {
            _result.latency.record(static_cast<uint64_t>(now - sent_ns));
            ++_result.requests;
            ++_statuses[status < _statuses.size() ? status : 0];
            _result.last_response_ns = now;
        }
        count_finished_request();
    }

    void count_received(std::size_t bytes, int64_t now) {
        if (in_window(now)) {
            _result.bytes_received += bytes;
        } else if (now > _window.end_ns) {
            finish();  // in case the end timer is late (a long loop iteration)
        }
    }
    void count_sent(std::size_t bytes, int64_t now) noexcept {
        if (in_window(now)) {
            _result.bytes_sent += bytes;
        }
    }

    // A request sent at `sent_ns` was in flight on a connection that went away.
    void count_lost(int64_t sent_ns) {
        if (sent_ns >= _window.measure_ns) {
            if (!_finished) {
                ++_result.lost_requests;
            }
            count_finished_request();
        }
    }

    void count_error(ErrorKind kind) noexcept;

    // Open loop: when a connection's request number `j` is due.
    int64_t due_ns(uint64_t j, unsigned client) const noexcept {
        double k = static_cast<double>(j) * static_cast<double>(_clients.size()) + client;
        return _window.start_ns + static_cast<int64_t>(k * _interval_ns);
    }

    // The bytes of `count` requests, back to back.
    std::string_view requests(unsigned count) const noexcept {
        return {_requests.data(), count * _config->request.size()};
    }

    // Has `client` send() once this iteration's completions are handled
    // (a callback of the ready batch). The requests that one batch of
    // completions makes room for go out together, after the batch, and the
    // server gets them as a batch too; sent at once, each would cost the
    // client a send(2) in the middle of the batch and the server a wake-up
    // of its own.
    void want_send(Client& client);

    // A connection made by connect_client() is up (connection_made ran).
    void client_opened() noexcept { ++_open; }
    // A connection of a client is gone; `error` is what broke it (null for
    // an EOF), `expected` when the client closed it on purpose.
    void client_lost(Client& client, std::exception_ptr error, bool expected);
    // The client's connection attempt ended.
    void connect_done(Client& client, const Future<Connection<Transport>>& attempt);
    // Its retry timer fired.
    void retry_connect(Client& client);

private:
    bool in_window(int64_t now) const noexcept {
        return now >= _window.measure_ns && now <= _window.end_ns && !_finished;
    }
    void count_finished_request() {
        ++_counted_finished;
        if (_quota_limited && _counted_finished >= _quota) {
            finish();
        }
    }
    void connect_client(Client& client);
    void tick();
    void list_for_send(Client& client);
    // Lets every listed client send.
    void flush();
    void arm_tick();
    void closed_one() noexcept;

    std::shared_ptr<const RunConfig> _config;
    EventLoop& _loop;
    ShardShare _share;
    std::string _requests;  // `pipeline` requests back to back
    std::vector<std::shared_ptr<Client>> _clients;

    // ---- Hot: touched by every response ----
    bool _sending = false;   // started and not finished
    bool _finished = false;  // finish() ran: nothing more is counted
    bool _quota_limited = false;
    Window _window{};
    uint64_t _quota = 0;             // this shard's share of --requests
    uint64_t _counted_issued = 0;    // requests sent (or due) in the window
    uint64_t _counted_finished = 0;  // of those, answered or lost
    Progress _progress{};
    ShardResult _result{};
    std::array<uint64_t, 1000> _statuses{};  // http: by status code (0: out of range)

    // ---- Open loop ----
    double _interval_ns = 0;  // between two requests of this shard
    uint64_t _scheduled = 0;  // the shard's next request number
    TimerHandle _tick;

    // Clients with requests to send at the end of the iteration.
    std::vector<Client*> _to_send;
    bool _flush_scheduled = false;
    Handle _flush;

    // ---- Connections ----
    bool _connect_phase = false;
    bool _stopping = false;
    unsigned _connecting = 0;  // attempts in flight during connect()
    std::exception_ptr _connect_error;
    Future<void> _connect_progress;
    // Connections up, attempts in flight and retries pending: stop() is
    // done when none is left.
    std::size_t _open = 0;
    TimerHandle _end_timer;
    Future<void> _done;
    Future<void> _stopped;
};

}  // namespace shardloop::loadgen
