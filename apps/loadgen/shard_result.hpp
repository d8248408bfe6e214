#pragma once

// What a shard counted inside the measured window, sent to shard 0 at the
// end of the run and merged there.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>

#include "apps/loadgen/histogram.hpp"

namespace shardloop::loadgen {

enum class ErrorKind : uint8_t {
    connect,   // a connection attempt failed (after the first connections)
    reset,     // a connection broke (ECONNRESET, EPIPE...)
    closed,    // the server closed a connection it had not said it would close
    protocol,  // a malformed HTTP response, or more echoed bytes than sent
};
inline constexpr std::size_t error_kind_count = 4;
inline constexpr const char* error_kind_names[error_kind_count] = {"connect", "reset", "closed",
                                                                   "protocol"};

struct ShardResult {
    LatencyHistogram latency;  // one value per counted request
    uint64_t requests = 0;
    uint64_t bytes_received = 0;
    uint64_t bytes_sent = 0;
    std::array<uint64_t, error_kind_count> errors{};
    uint64_t reconnects = 0;     // connections opened again during the window
    uint64_t lost_requests = 0;  // counted requests in flight on a connection that went away
    std::map<unsigned, uint64_t> statuses{};  // http: responses per status code
    int64_t last_response_ns = 0;             // when the last counted response came

    uint64_t error_total() const noexcept {
        uint64_t total = 0;
        for (uint64_t n : errors) {
            total += n;
        }
        return total;
    }

    void merge(const ShardResult& other) {
        latency.merge(other.latency);
        requests += other.requests;
        bytes_received += other.bytes_received;
        bytes_sent += other.bytes_sent;
        for (std::size_t i = 0; i < error_kind_count; ++i) {
            errors[i] += other.errors[i];
        }
        reconnects += other.reconnects;
        lost_requests += other.lost_requests;
        for (const auto& [status, count] : other.statuses) {
            statuses[status] += count;
        }
        last_response_ns = std::max(last_response_ns, other.last_response_ns);
    }
};

// For the progress line: totals since the start, warm-up included.
struct Progress {
    uint64_t responses = 0;
    uint64_t errors = 0;
};

}  // namespace shardloop::loadgen
