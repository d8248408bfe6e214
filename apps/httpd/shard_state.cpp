// ShardState: the date timer, the deadline sweep, the drain, the metrics.

#include "shard_state.hpp"

#include <time.h>

#include <algorithm>
#include <vector>

#include "http_connection.hpp"

namespace shardloop::httpd {

namespace {

// Expired connections are looked for a little after the front's deadline,
// so that a sweep finds the ones that expire together in one go.
constexpr double sweep_slack = 0.005;

}  // namespace

double coarse_now() noexcept {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

ShardState::ShardState(ServerConfig config, ShardedPolicy* policy, Sharded<ShardState>* all)
    : _config(config),
      _policy(policy),
      _all(all),
      _shard(this_shard_id()),
      _loop(get_running_loop()),
      _handler(StaticFiles(config.root_fd)) {
    tick_date();
}

ShardState::~ShardState() {
    stop();
    // Normally every connection is gone by now (the server stops first).
    // After an error the shard may stop with some still open: they are told
    // to leave this state alone when their transports close.
    _deadlines.for_each([this](TimeoutList::Node& node) {
        _deadlines.remove(node);
        static_cast<HttpConnection&>(node).forget_shard();
    });
}

void ShardState::stop() {
    _stopped = true;
    _date_timer.cancel();
    _sweep_timer.cancel();
    _sweep_armed = false;
}

// The Date header changes once a second: the cache is refreshed just after
// each second boundary of the wall clock (the timer runs on the monotonic
// clock, so the delay is worked out from the wall clock each time).
void ShardState::tick_date() {
    if (_stopped) {
        return;
    }
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    _date.update(now.tv_sec);
    double to_next_second = 1.0 - static_cast<double>(now.tv_nsec) * 1e-9 + 0.0005;
    _date_timer = _loop.call_later(to_next_second, [this] { tick_date(); });
}

void ShardState::add(HttpConnection& connection) {
    ++_counters.connections_accepted;
    ++_counters.connections_open;
    refresh(connection);
}

void ShardState::remove(HttpConnection& connection) noexcept {
    --_counters.connections_open;
    _deadlines.remove(connection);
}

void ShardState::refresh(HttpConnection& connection) {
    _deadlines.push_back(connection, coarse_now() + _config.idle_timeout);
    arm_sweep();
}

void ShardState::arm_sweep() {
    if (_sweep_armed || _stopped || _deadlines.empty()) {
        return;
    }
    double delay = std::max(_deadlines.front()->deadline() - coarse_now(), 0.0) + sweep_slack;
    _sweep_armed = true;
    _sweep_timer = _loop.call_later(delay, [this] {
        _sweep_armed = false;
        sweep();
    });
}

void ShardState::sweep() {
    double now = coarse_now();
    while (!_deadlines.empty() && _deadlines.front()->deadline() <= now) {
        auto& connection = static_cast<HttpConnection&>(*_deadlines.front());
        _deadlines.remove(connection);
        connection.timed_out();
    }
    arm_sweep();
}

void ShardState::begin_drain() {
    _draining = true;
    _deadlines.for_each(
        [](TimeoutList::Node& node) { static_cast<HttpConnection&>(node).drain(); });
}

ShardMetrics ShardState::snapshot() const {
    ShardStats stats = _policy->stats(_shard);
    ShardMetrics metrics;
    metrics.shard = _shard;
    metrics.iterations = stats.iterations;
    metrics.callbacks_run = stats.callbacks_run;
    metrics.task_steps_run = stats.task_steps_run;
    metrics.io_submissions = stats.io_submissions;
    metrics.io_completions = stats.io_completions;
    metrics.kernel_entries = stats.kernel_entries;
    metrics.wakeups = stats.wakeups;
    metrics.messages_sent = stats.messages_sent;
    metrics.messages_received = stats.messages_received;
    metrics.sleep_seconds = static_cast<double>(stats.sleep_ns) * 1e-9;
    metrics.idle_poll_seconds = static_cast<double>(stats.idle_poll_ns) * 1e-9;
    metrics.run_seconds = static_cast<double>(stats.run_ns) * 1e-9;
    metrics.server = _counters;
    return metrics;
}

Task<std::string> ShardState::gather_metrics() {
    Sharded<ShardState>* all = _all;
    return _loop.create_task([all]() -> std::string {
        std::vector<ShardMetrics> shards = await(all->map_reduce(
            [](ShardState& state) { return state.snapshot(); }, std::vector<ShardMetrics>{},
            [](std::vector<ShardMetrics> gathered, ShardMetrics one) {
                gathered.push_back(one);
                return gathered;
            }));
        return format_metrics(shards);
    });
}

}  // namespace shardloop::httpd
