#pragma once

// The end-of-run report: a text summary for people, or one JSON object for
// scripts (whose key names are a contract: benchmark scripts parse them).

#include <optional>
#include <string>

#include "apps/loadgen/cpu_times.hpp"
#include "apps/loadgen/options.hpp"
#include "apps/loadgen/shard_result.hpp"

namespace shardloop::loadgen {

struct Report {
    Options options;
    unsigned shards = 1;
    unsigned connections = 0;  // --connections
    ShardResult total;
    double duration_s = 0;  // of the measured window
    std::optional<CpuTimes> client_cpu;
    std::optional<CpuTimes> server_cpu;
    bool interrupted = false;  // SIGINT ended it early
};

std::string format_text(const Report& report);
std::string format_json(const Report& report);

// "[  3.0s] 123,456 req/s, 0 errors" (with "warm-up" while it lasts).
std::string format_progress(double elapsed_s, double requests_per_s, uint64_t errors, bool warmup);

}  // namespace shardloop::loadgen
