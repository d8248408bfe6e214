// Prometheus text exposition.

#include "metrics.hpp"

#include <charconv>
#include <cstdio>
#include <string_view>

namespace shardloop::httpd {

namespace {

struct Family {
    std::string_view name;
    std::string_view type;  // counter or gauge
    std::string_view help;
};

void append_header(std::string& out, const Family& family) {
    out.append("# HELP ").append(family.name).append(" ").append(family.help).append("\n");
    out.append("# TYPE ").append(family.name).append(" ").append(family.type).append("\n");
}

void append_value(std::string& out, uint64_t value) {
    char digits[24];
    auto [end, error] = std::to_chars(digits, digits + sizeof digits, value);
    (void)error;
    out.append(digits, static_cast<std::size_t>(end - digits));
}

void append_value(std::string& out, double value) {
    char digits[32];
    int n = std::snprintf(digits, sizeof digits, "%.9f", value);
    out.append(digits, n > 0 ? static_cast<std::size_t>(n) : 0);
}

template <class T>
void append_sample(std::string& out, std::string_view name, unsigned shard,
                   std::string_view extra_label, T value) {
    out.append(name).append("{shard=\"");
    append_value(out, static_cast<uint64_t>(shard));
    out.append("\"").append(extra_label).append("} ");
    append_value(out, value);
    out.append("\n");
}

template <class Get>
void append_family(std::string& out, const Family& family, std::span<const ShardMetrics> shards,
                   Get get) {
    append_header(out, family);
    for (const ShardMetrics& shard : shards) {
        append_sample(out, family.name, shard.shard, {}, get(shard));
    }
}

}  // namespace

std::string format_metrics(std::span<const ShardMetrics> shards) {
    std::string out;
    out.reserve(4096 + shards.size() * 2048);
    // The loop's statistics.
    append_family(out, {"shardloop_loop_iterations_total", "counter", "Event loop iterations run."},
                  shards, [](const ShardMetrics& s) { return s.iterations; });
    append_family(out,
                  {"shardloop_loop_callbacks_total", "counter",
                   "Callbacks run (call_soon, timers, fd watchers, thread-safe posts)."},
                  shards, [](const ShardMetrics& s) { return s.callbacks_run; });
    append_family(out, {"shardloop_loop_task_steps_total", "counter", "Times a task was resumed."},
                  shards, [](const ShardMetrics& s) { return s.task_steps_run; });
    append_family(out,
                  {"shardloop_io_uring_submissions_total", "counter",
                   "io_uring submission queue entries filled."},
                  shards, [](const ShardMetrics& s) { return s.io_submissions; });
    append_family(out,
                  {"shardloop_io_uring_completions_total", "counter",
                   "io_uring completions dispatched to their operations."},
                  shards, [](const ShardMetrics& s) { return s.io_completions; });
    append_family(out,
                  {"shardloop_io_uring_enters_total", "counter",
                   "io_uring_enter system calls (kernel entries)."},
                  shards, [](const ShardMetrics& s) { return s.kernel_entries; });
    append_family(out,
                  {"shardloop_loop_wakeups_total", "counter",
                   "Times another thread woke the loop from its sleep."},
                  shards, [](const ShardMetrics& s) { return s.wakeups; });
    append_family(out,
                  {"shardloop_cross_shard_messages_sent_total", "counter",
                   "Messages this shard sent to other shards."},
                  shards, [](const ShardMetrics& s) { return s.messages_sent; });
    append_family(out,
                  {"shardloop_cross_shard_messages_received_total", "counter",
                   "Messages this shard received from other shards."},
                  shards, [](const ShardMetrics& s) { return s.messages_received; });
    append_family(out,
                  {"shardloop_loop_sleep_seconds_total", "counter",
                   "Time the loop spent blocked in the kernel waiting for work."},
                  shards, [](const ShardMetrics& s) { return s.sleep_seconds; });
    append_family(out,
                  {"shardloop_loop_idle_poll_seconds_total", "counter",
                   "Time the loop spent spinning idle before sleeping (--idle-poll)."},
                  shards, [](const ShardMetrics& s) { return s.idle_poll_seconds; });
    append_family(out,
                  {"shardloop_loop_run_seconds_total", "counter",
                   "Time the loop spent in run_forever (busy time is run minus sleep and idle "
                   "polling)."},
                  shards, [](const ShardMetrics& s) { return s.run_seconds; });
    // The HTTP server's counters.
    append_family(out, {"httpd_requests_total", "counter", "Complete HTTP requests answered."},
                  shards, [](const ShardMetrics& s) { return s.server.requests; });
    append_header(out, {"httpd_responses_total", "counter", "HTTP responses by status class."});
    static constexpr std::string_view classes[] = {
        ",class=\"1xx\"", ",class=\"2xx\"", ",class=\"3xx\"", ",class=\"4xx\"", ",class=\"5xx\""};
    for (const ShardMetrics& shard : shards) {
        for (std::size_t c = 0; c < 5; ++c) {
            append_sample(out, "httpd_responses_total", shard.shard, classes[c],
                          shard.server.responses_by_class[c]);
        }
    }
    append_family(out, {"httpd_connections_accepted_total", "counter", "Connections accepted."},
                  shards, [](const ShardMetrics& s) { return s.server.connections_accepted; });
    append_family(out, {"httpd_open_connections", "gauge", "Connections open now."}, shards,
                  [](const ShardMetrics& s) { return s.server.connections_open; });
    append_family(out, {"httpd_received_bytes_total", "counter", "Bytes received from clients."},
                  shards, [](const ShardMetrics& s) { return s.server.bytes_received; });
    append_family(out,
                  {"httpd_sent_bytes_total", "counter",
                   "Bytes sent to clients (heads and bodies, files included)."},
                  shards, [](const ShardMetrics& s) { return s.server.bytes_sent; });
    append_family(out,
                  {"httpd_parse_errors_total", "counter",
                   "Requests refused as malformed or over a limit (400, 413, 431, 505)."},
                  shards, [](const ShardMetrics& s) { return s.server.parse_errors; });
    append_family(out,
                  {"httpd_timeouts_total", "counter",
                   "Connections closed for idleness or a request stalled mid-way."},
                  shards, [](const ShardMetrics& s) { return s.server.timeouts; });
    return out;
}

}  // namespace shardloop::httpd
