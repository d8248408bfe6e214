#pragma once

// What a loop has done since it was created. The loop counts in plain
// variables and publishes them once per iteration, so any thread can read
// them (EventLoop::stats()) at the cost of one relaxed store per counter
// per iteration; a reading is at most one iteration old.

#include <atomic>
#include <cstdint>

namespace shardloop {

struct LoopStats {
    uint64_t iterations = 0;
    uint64_t callbacks_run = 0;   // handles: call_soon, call_later, fd watchers, threadsafe posts
    uint64_t task_steps_run = 0;  // times a task was resumed
    uint64_t io_submissions = 0;  // io_uring SQEs filled
    uint64_t io_completions = 0;  // io_uring CQEs dispatched to their operations
    uint64_t kernel_entries = 0;  // io_uring_enter calls
    uint64_t wakeups = 0;         // times another thread woke the loop from its sleep
    int64_t sleep_ns = 0;         // time spent blocked in the kernel waiting for work
    int64_t idle_poll_ns = 0;     // time spent spinning before sleeping (idle polling)
    int64_t run_ns = 0;  // time spent in run_forever (busy: run_ns - sleep_ns - idle_poll_ns)
};

namespace detail {

// The published copy of a loop's LoopStats.
struct LoopCounters {
    std::atomic<uint64_t> iterations{0};
    std::atomic<uint64_t> runnables_run{0};  // callbacks and task steps
    std::atomic<uint64_t> task_steps_run{0};
    std::atomic<uint64_t> io_submissions{0};
    std::atomic<uint64_t> io_completions{0};
    std::atomic<uint64_t> kernel_entries{0};
    std::atomic<int64_t> sleep_ns{0};
    std::atomic<int64_t> idle_poll_ns{0};
    // Time of the runs that have ended, and when the current run began (0: not running).
    std::atomic<int64_t> finished_runs_ns{0};
    std::atomic<int64_t> run_started_ns{0};
};

}  // namespace detail
}  // namespace shardloop
