#pragma once

// What every shard of a run needs to know, decided once by main() and
// shared read-only, and how the load is divided among the shards.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "apps/loadgen/options.hpp"

namespace shardloop::loadgen {

struct RunConfig {
    Mode mode = Mode::echo;
    std::string host;  // numeric: resolved once, before the shards start
    uint16_t port = 0;
    unsigned connections = 1;  // over all shards
    unsigned shards = 1;
    unsigned pipeline = 1;
    double rate = 0;        // requests per second over all shards; 0: closed loop
    uint64_t requests = 0;  // over all shards; 0: no limit
    // The bytes of one request: an echo message, or a GET with its headers.
    std::string request;
    std::size_t response_size = 0;  // echo: the bytes that answer a request
};

// One shard's part of the run.
struct ShardShare {
    unsigned connections = 0;
    uint64_t requests = 0;  // when the run has a request count
    double rate = 0;        // when it has a rate
};

// Splits connections as evenly as they go (the first shards take one more),
// and the request count and the rate in proportion to the connections, so
// that the shards' counts add up to exactly the total.
inline ShardShare share_of(const RunConfig& config, unsigned shard) {
    unsigned base = config.connections / config.shards;
    unsigned extra = config.connections % config.shards;
    ShardShare share;
    share.connections = base + (shard < extra ? 1 : 0);
    uint64_t before = static_cast<uint64_t>(shard) * base + std::min(shard, extra);
    auto part = [&](uint64_t connections) {
        // floor(requests * connections / total) without overflow for any sane count.
        return static_cast<uint64_t>(static_cast<unsigned __int128>(config.requests) * connections /
                                     config.connections);
    };
    share.requests = part(before + share.connections) - part(before);
    share.rate = config.rate * share.connections / config.connections;
    return share;
}

// The instants of a run on CLOCK_MONOTONIC, in nanoseconds: sending starts
// at `start_ns`; requests sent from `measure_ns` on and answered until
// `end_ns` are counted.
struct Window {
    int64_t start_ns = 0;
    int64_t measure_ns = 0;
    int64_t end_ns = std::numeric_limits<int64_t>::max();  // max: until the count is reached
};

}  // namespace shardloop::loadgen
