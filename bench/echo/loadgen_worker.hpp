// One load-generator thread: its own ring and its share of the connections,
// driven in a closed loop until the measured window ends. Per iteration one
// submit-and-wait; messages go out with sendmsg and echoes come back through
// a multishot recv into provided buffers, so the client costs about what
// the server does per request.
#pragma once

#include <time.h>

#include <cstdint>
#include <vector>

#include "latency_histogram.hpp"

namespace echo_bench {

inline uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

struct WorkerConfig {
    uint32_t size;             // bytes per message
    uint64_t window_start_ns;  // CLOCK_MONOTONIC; round trips ending before are warm-up
    uint64_t window_end_ns;    // the worker stops here
};

// What one worker thread counted inside the measured window.
struct WorkerResults {
    LatencyHistogram latency;
    uint64_t lost_connections = 0;  // recv or send failed, or the peer closed
    uint64_t mismatches = 0;        // echoed bytes differ from what was sent
    uint64_t stalled = 0;           // an echo stayed incomplete (see stall_ns)
};

// Drives the connections `fds` (connected sockets, closed on return) until
// config.window_end_ns and returns what happened inside the window. Exits
// the process, with a message, if the ring cannot be set up.
WorkerResults run_worker(const WorkerConfig& config, const std::vector<int>& fds);

}  // namespace echo_bench
