#pragma once

// ShardState: what one shard of the HTTP server shares between its
// connections. One instance per shard (a Sharded<ShardState>), touched
// only by its shard's thread:
//
//   - the request handler and the limits (read-only copies);
//   - the cached Date, refreshed by a timer at every second boundary;
//   - the server counters;
//   - every open connection, in the deadline list, and the one timer that
//     closes those that stay idle or stall mid-request (see timeout_list.hpp);
//   - the drain: telling every connection the server is shutting down.
//
// /metrics is answered by gathering every shard's snapshot with
// Sharded::map_reduce: each shard copies its own counters on its own thread.

#include <memory>
#include <string>

#include "http_date.hpp"
#include "http_session.hpp"
#include "metrics.hpp"
#include "request_handler.hpp"
#include "server_counters.hpp"
#include "shardloop.hpp"
#include "timeout_list.hpp"

namespace shardloop::httpd {

class HttpConnection;

struct ServerConfig {
    SessionLimits limits;
    double idle_timeout = 10.0;  // seconds
    int root_fd = -1;            // the --root directory (O_PATH), or -1
};

// The clock the deadlines use: CLOCK_MONOTONIC_COARSE, read from the vDSO
// without a system call and cheaper than the precise clock; its
// resolution (a jiffy, 1-4 ms) is plenty for timeouts in seconds.
double coarse_now() noexcept;

class ShardState {
public:
    // On a shard, from Sharded::start. `policy` and `all` outlive it.
    ShardState(ServerConfig config, ShardedPolicy* policy, Sharded<ShardState>* all);
    ~ShardState();
    ShardState(const ShardState&) = delete;
    ShardState& operator=(const ShardState&) = delete;

    // Cancels the timers (Sharded::stop calls it before destroying).
    void stop();

    const ServerConfig& config() const noexcept { return _config; }
    const RequestHandler& handler() const noexcept { return _handler; }
    const DateCache& date() const noexcept { return _date; }
    ServerCounters& counters() noexcept { return _counters; }

    // A connection opened / closed. A connection is in the deadline list
    // from add() until remove() or until its deadline passes.
    void add(HttpConnection& connection);
    void remove(HttpConnection& connection) noexcept;
    // Moves the connection's deadline to now + the idle timeout.
    void refresh(HttpConnection& connection);

    // Tells every connection that the server is shutting down: idle ones
    // close now, busy ones after their current response.
    void begin_drain();
    bool draining() const noexcept { return _draining; }

    // Every shard's metrics, as the /metrics body. A task (it awaits the
    // other shards); loop thread.
    Task<std::string> gather_metrics();
    // This shard's part.
    ShardMetrics snapshot() const;

private:
    void arm_sweep();
    void sweep();
    void tick_date();

    ServerConfig _config;
    ShardedPolicy* _policy;
    Sharded<ShardState>* _all;
    unsigned _shard;
    EventLoop& _loop;
    RequestHandler _handler;
    DateCache _date;
    ServerCounters _counters;
    TimeoutList _deadlines;
    TimerHandle _sweep_timer;
    bool _sweep_armed = false;
    TimerHandle _date_timer;
    bool _draining = false;
    bool _stopped = false;
};

}  // namespace shardloop::httpd
