// call_soon: the cost of scheduling a plain callback and running it.

#include <benchmark/benchmark.h>

#include <cstdint>

#include "bench_support.hpp"
#include "runtime/event_loop.hpp"

namespace {

using shardloop::EventLoop;

constexpr int callbacks_per_iteration = 1000;

// One iteration: call_soon() N=1000 callbacks, then one loop iteration that
// runs them (call_soon(stop) + run_forever). Per callback that is: a handle
// taken from the thread's block cache (no malloc in steady state), the
// callable moved into it inline, a ready-queue push and pop, the indirect
// call, and the handle's release back to the cache. The loop iteration adds
// no system call (nothing is in flight, so the reactor skips the kernel) and
// its fixed cost is spread over the 1000 callbacks. "per_callback" is the
// CPU time per callback.
void BM_CallSoonRun(benchmark::State& state) {
    EventLoop loop;
    uint64_t ran = 0;
    auto schedule_batch = [&] {
        for (int i = 0; i < callbacks_per_iteration; ++i) {
            loop.call_soon([&ran] { ++ran; });
        }
        shardloop::bench::run_one_iteration(loop);
    };
    schedule_batch();  // warm-up: the ready queue grows to its working size
    ran = 0;
    for (auto _ : state) {
        schedule_batch();
    }
    if (ran != static_cast<uint64_t>(callbacks_per_iteration) * state.iterations()) {
        state.SkipWithError("not every callback ran");
    }
    shardloop::bench::report_per_item(state, "per_callback", callbacks_per_iteration);
}
BENCHMARK(BM_CallSoonRun);

// The loop iteration alone: call_soon(stop) + run_forever with nothing else
// ready. One handle, one iteration of run_once, no system call.
void BM_EmptyIteration(benchmark::State& state) {
    EventLoop loop;
    shardloop::bench::run_one_iteration(loop);
    for (auto _ : state) {
        shardloop::bench::run_one_iteration(loop);
    }
}
BENCHMARK(BM_EmptyIteration);

}  // namespace
