// call_later / call_at: inserting, cancelling and firing timers, and what a
// large timer heap costs a loop iteration.

#include <benchmark/benchmark.h>
#include <time.h>

#include <cstdint>

#include "bench_support.hpp"
#include "runtime/event_loop.hpp"

namespace {

using shardloop::EventLoop;

constexpr int ops_per_iteration = 1000;

// One iteration: 1000 x (call_later(3600, fn) then handle.cancel()), then one
// loop iteration, in which the heap drops the cancelled timers (more than
// half of it is cancelled, so it is rebuilt without them, as asyncio does).
// Per op: a clock read (call_later is relative to loop.time(): one vDSO
// clock_gettime, no system call), a timer handle from the block cache, a
// heap push (sift-up; it stays at the bottom, its deadline being the
// latest), the cancel (drops the callable) and, amortised, its removal from
// the heap and release back to the cache. "per_op" is CPU time per
// insert+cancel pair.
void BM_CallLaterCancel(benchmark::State& state) {
    EventLoop loop;
    uint64_t ran = 0;
    auto batch = [&] {
        for (int i = 0; i < ops_per_iteration; ++i) {
            shardloop::TimerHandle handle = loop.call_later(3600.0, [&ran] { ++ran; });
            handle.cancel();
        }
        shardloop::bench::run_one_iteration(loop);
    };
    batch();  // warm-up: the heap's vector reaches its working capacity
    for (auto _ : state) {
        batch();
    }
    if (ran != 0) {
        state.SkipWithError("a cancelled timer ran");
    }
    shardloop::bench::report_per_item(state, "per_op", ops_per_iteration);
}
BENCHMARK(BM_CallLaterCancel);

// One iteration: call_later(0, fn) N=1000 times (due at once), then one loop
// iteration that moves them from the heap to the ready queue and runs them.
// Per timer: clock read, handle from the cache, heap push and pop
// (O(log N) with N up to 1000), ready-queue trip, the call and the release.
// No system call. "per_timer" is CPU time per timer.
void BM_TimerFire(benchmark::State& state) {
    EventLoop loop;
    uint64_t ran = 0;
    auto batch = [&] {
        for (int i = 0; i < ops_per_iteration; ++i) {
            loop.call_later(0.0, [&ran] { ++ran; });
        }
        shardloop::bench::run_one_iteration(loop);
    };
    batch();
    ran = 0;
    for (auto _ : state) {
        batch();
    }
    if (ran != static_cast<uint64_t>(ops_per_iteration) * state.iterations()) {
        state.SkipWithError("not every timer fired in its iteration");
    }
    shardloop::bench::report_per_item(state, "per_timer", ops_per_iteration);
}
BENCHMARK(BM_TimerFire);

// One iteration: call_soon(stop) + run_forever, with state.range(0) timers
// pending an hour ahead (none due). Includes one handle and, when the heap
// is not empty, one clock read to find the due timers; no system call. The
// time must not grow with the number of pending timers: compare /1 with
// /1000000 (/0 shows what the clock read costs, see BM_MonotonicClockRead).
void BM_IterationWithPendingTimers(benchmark::State& state) {
    EventLoop loop;
    auto pending = static_cast<std::size_t>(state.range(0));
    for (std::size_t i = 0; i < pending; ++i) {
        loop.call_later(3600.0, [] {});
    }
    shardloop::bench::run_one_iteration(loop);
    for (auto _ : state) {
        shardloop::bench::run_one_iteration(loop);
    }
    state.counters["pending_timers"] = static_cast<double>(pending);
}
BENCHMARK(BM_IterationWithPendingTimers)->Arg(0)->Arg(1)->Arg(1'000'000);

// Baseline: one clock_gettime(CLOCK_MONOTONIC), what loop.time() and every
// call_later pay (through the vDSO: no system call, but its cost depends on
// the clock source; under kvm-clock it is far from free).
void BM_MonotonicClockRead(benchmark::State& state) {
    for (auto _ : state) {
        timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        benchmark::DoNotOptimize(ts);
    }
}
BENCHMARK(BM_MonotonicClockRead);

}  // namespace
