#pragma once

// The /metrics body: every shard's loop statistics and server counters in
// the Prometheus text exposition format (version 0.0.4), one series per
// shard, labelled shard="N". The values are copied out on each shard; this
// only formats them, so it has no runtime dependency.

#include <cstdint>
#include <span>
#include <string>

#include "server_counters.hpp"

namespace shardloop::httpd {

struct ShardMetrics {
    unsigned shard = 0;
    // The shard's loop (shardloop's LoopStats and ShardStats).
    uint64_t iterations = 0;
    uint64_t callbacks_run = 0;
    uint64_t task_steps_run = 0;
    uint64_t io_submissions = 0;
    uint64_t io_completions = 0;
    uint64_t kernel_entries = 0;
    uint64_t wakeups = 0;
    uint64_t messages_sent = 0;
    uint64_t messages_received = 0;
    double sleep_seconds = 0;
    double idle_poll_seconds = 0;
    double run_seconds = 0;
    // The shard's HTTP server.
    ServerCounters server;
};

// The exposition text: for each metric a # HELP and a # TYPE line, then one
// sample per shard (per shard and status class for the responses).
std::string format_metrics(std::span<const ShardMetrics> shards);

}  // namespace shardloop::httpd
