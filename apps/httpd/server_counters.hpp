#pragma once

// What one shard's HTTP server has done: plain counters, each touched only
// by its shard's thread (the metrics route copies them out by a message to
// that shard, never reads them from another thread).

#include <cstdint>

namespace shardloop::httpd {

struct ServerCounters {
    uint64_t requests = 0;                // complete requests answered
    uint64_t responses_by_class[5] = {};  // 1xx ... 5xx
    uint64_t parse_errors = 0;            // requests refused by the parser (400, 413, 431, 505)
    uint64_t connections_accepted = 0;
    uint64_t connections_open = 0;
    uint64_t bytes_received = 0;
    uint64_t bytes_sent = 0;  // response heads and bodies, files included
    uint64_t timeouts = 0;    // connections closed for idleness or a stalled request

    void count_response(int status) noexcept {
        int status_class = status / 100;
        if (status_class >= 1 && status_class <= 5) {
            ++responses_by_class[status_class - 1];
        }
    }
};

}  // namespace shardloop::httpd
