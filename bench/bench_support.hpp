#pragma once

// Helpers shared by the micro-benchmarks.

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>

#include <cstdint>

#include "runtime/event_loop.hpp"

namespace shardloop::bench {

// Reports the time of one item (callback, timer, task, switch) next to the
// time of a whole iteration: `items_per_iteration` items happen in each
// iteration, and the counter shows seconds per item (e.g. "12.3n" = 12.3 ns).
// It divides the time the benchmark reports: CPU time by default, real time
// with UseRealTime(), manual time with UseManualTime().
inline void report_per_item(benchmark::State& state, const char* name, double items_per_iteration) {
    state.counters[name] =
        benchmark::Counter(items_per_iteration, benchmark::Counter::kIsIterationInvariantRate |
                                                    benchmark::Counter::kInvert);
    state.SetItemsProcessed(
        static_cast<int64_t>(items_per_iteration * static_cast<double>(state.iterations())));
}

// Runs exactly one iteration of `loop`: the callbacks already ready, then
// stop (asyncio's `loop.call_soon(loop.stop); loop.run_forever()`).
inline void run_one_iteration(EventLoop& loop) {
    loop.call_soon([&loop] { loop.stop(); });
    loop.run_forever();
}

// Pins the calling thread to `cpu`; a negative cpu leaves it alone.
inline void pin_this_thread(int cpu) {
    if (cpu < 0) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

}  // namespace shardloop::bench
