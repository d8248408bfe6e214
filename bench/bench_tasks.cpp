// Tasks on fibers: the cost of a switch, of a task's whole life, and of
// waking a task through a future.

#include <benchmark/benchmark.h>

#include <boost/context/detail/fcontext.hpp>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench_support.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/fiber.hpp"
#include "runtime/sleep.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/task.hpp"

namespace {

using shardloop::EventLoop;
namespace fctx = boost::context::detail;

// Baseline: two bare Boost.Context contexts ping-ponging with
// jump_fcontext. One iteration = two switches (there and back); nothing
// else. "per_switch" is CPU time per switch.
void BM_FcontextSwitch(benchmark::State& state) {
    shardloop::detail::StackPool stacks(64 * 1024);
    shardloop::detail::FiberStack stack = stacks.acquire();
    fctx::fcontext_t context =
        fctx::make_fcontext(stack.top(), stack.usable(), [](fctx::transfer_t from) {
            for (;;) {
                from = fctx::jump_fcontext(from.fctx, nullptr);
            }
        });
    fctx::transfer_t to = fctx::jump_fcontext(context, nullptr);  // first entry
    for (auto _ : state) {
        to = fctx::jump_fcontext(to.fctx, nullptr);
    }
    // The context never returns; its stack is simply given back.
    stacks.release(stack);
    shardloop::bench::report_per_item(state, "per_switch", 2);
}
BENCHMARK(BM_FcontextSwitch);

// Baseline for the many-task case: N bare contexts passing the CPU round a
// ring (the main context starts the round, the last context ends it), each
// jump carrying the address where the landing side saves the context it
// left. One iteration = N + 1 switches; with N = 64 the contexts' stacks
// no longer fit the L1 cache together, as with 64 tasks. "per_switch" is
// CPU time per switch: the floor for a switch between many tasks.
void BM_FcontextRing(benchmark::State& state) {
    const auto count = static_cast<std::size_t>(state.range(0));
    shardloop::detail::StackPool stacks(64 * 1024);
    struct Ring {
        std::vector<fctx::fcontext_t> contexts;  // [count] is the main context
        std::vector<shardloop::detail::FiberStack> stacks;
    } ring;
    ring.contexts.resize(count + 1);
    struct Hop {
        Ring* ring;
        std::size_t from;
    };
    for (std::size_t i = 0; i < count; ++i) {
        ring.stacks.push_back(stacks.acquire());
        ring.contexts[i] = fctx::make_fcontext(
            ring.stacks[i].top(), ring.stacks[i].usable(), [](fctx::transfer_t from) {
                auto hop = *static_cast<Hop*>(from.data);
                std::size_t self = hop.from == hop.ring->contexts.size() - 1 ? 0 : hop.from + 1;
                for (;;) {
                    hop.ring->contexts[hop.from] = from.fctx;
                    Hop next{hop.ring, self};
                    std::size_t to = self + 1;  // the main context after the last
                    from = fctx::jump_fcontext(hop.ring->contexts[to], &next);
                    hop = *static_cast<Hop*>(from.data);
                }
            });
    }
    auto round = [&ring, count] {
        Hop start{&ring, count};
        fctx::transfer_t back = fctx::jump_fcontext(ring.contexts[0], &start);
        ring.contexts[static_cast<Hop*>(back.data)->from] = back.fctx;
    };
    // The first round only enters each context: every context starts at 0.
    round();
    for (auto _ : state) {
        round();
    }
    // The contexts never return; their stacks are simply given back.
    for (auto& stack : ring.stacks) {
        stacks.release(stack);
    }
    shardloop::bench::report_per_item(state, "per_switch", static_cast<double>(count + 1));
}
BENCHMARK(BM_FcontextRing)->Arg(8)->Arg(64);

// The runtime's Fiber, without the loop: resume() + suspend(). Adds to the
// bare switch what Fiber does at each one (saving and restoring the C++
// exception globals via __cxa_get_globals). One iteration = two switches.
void BM_FiberResumeSuspend(benchmark::State& state) {
    shardloop::detail::StackPool stacks(64 * 1024);
    shardloop::detail::Fiber fiber;
    bool stop = false;
    struct Arg {
        shardloop::detail::Fiber* fiber;
        bool* stop;
    } arg{&fiber, &stop};
    fiber.start(
        stacks.acquire(),
        [](void* p) {
            auto* a = static_cast<Arg*>(p);
            while (!*a->stop) {
                a->fiber->suspend();
            }
        },
        &arg);
    (void)fiber.resume();
    for (auto _ : state) {
        (void)fiber.resume();
    }
    stop = true;
    (void)fiber.resume();
    stacks.release(fiber.take_stack());
    shardloop::bench::report_per_item(state, "per_switch", 2);
}
BENCHMARK(BM_FiberResumeSuspend);

// One task calling yield_now() in a loop; the benchmark's own iteration
// loop runs inside the task. One iteration = one yield = switch out to the
// loop + one loop iteration (no other work, no system call: nothing is in
// flight) + a ready-queue trip + switch back in. "per_switch" = CPU time
// per yield / 2.
void BM_YieldThroughLoop(benchmark::State& state) {
    EventLoop loop;
    loop.run_until_complete([&state] {
        shardloop::yield_now();  // warm-up
        for (auto _ : state) {
            shardloop::yield_now();
        }
    });
    shardloop::bench::report_per_item(state, "per_switch", 2);
}
BENCHMARK(BM_YieldThroughLoop);

// The same with N tasks yielding in turn, as in a loop with work to do: one
// iteration of the measuring task lets all N run once. Each yield hands the
// CPU straight to the next ready task (one switch), and the last returns
// to the loop: N + 1 switches and one loop iteration per round, against
// the N + 1 switches of BM_FcontextRing/N. "per_yield" is CPU time from
// one task yielding to the next one running.
void BM_YieldThroughLoopManyTasks(benchmark::State& state) {
    const auto tasks = static_cast<int>(state.range(0));
    EventLoop loop;
    bool stop = false;
    std::vector<shardloop::Task<void>> others;
    for (int i = 1; i < tasks; ++i) {
        others.push_back(loop.create_task([&stop] {
            while (!stop) {
                shardloop::yield_now();
            }
        }));
    }
    loop.run_until_complete([&state, &stop] {
        shardloop::yield_now();  // warm-up: every task has started
        for (auto _ : state) {
            shardloop::yield_now();
        }
        stop = true;
    });
    for (auto& task : others) {
        loop.run_until_complete(task);
    }
    shardloop::bench::report_per_item(state, "per_yield", tasks);
}
BENCHMARK(BM_YieldThroughLoopManyTasks)->Arg(8)->Arg(64);

constexpr int tasks_per_iteration = 1000;

// One iteration: create_task() 1000 times with a function that returns at
// once, then one loop iteration that runs them all to completion. Per task:
// the task object (one malloc and free: tasks are not pooled), its name
// ("Task-N"), registration with the loop, a ready-queue trip, a stack from
// the loop's pool (no mmap in steady state: each task gives its stack back
// before the next starts), the context set-up, two switches, and the
// completion (future finished, unregistered, freed). "per_task" is CPU time
// per task.
//
// The 1000 task objects of a batch are all alive at once and all freed by
// its end. With glibc's default M_TRIM_THRESHOLD (128 KiB) the freed space
// at the top of the heap is given back to the kernel (brk) at the end of
// every batch and faulted in again by the next, which is counted here: run
// with GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456 to see the cost
// without that.
void BM_CreateTaskRun(benchmark::State& state) {
    EventLoop loop;
    uint64_t ran = 0;
    auto batch = [&] {
        for (int i = 0; i < tasks_per_iteration; ++i) {
            loop.create_task([&ran] { ++ran; });
        }
        shardloop::bench::run_one_iteration(loop);
    };
    batch();  // warm-up: one stack mapped, the ready queue at size
    ran = 0;
    for (auto _ : state) {
        batch();
    }
    if (ran != static_cast<uint64_t>(tasks_per_iteration) * state.iterations() ||
        loop.live_task_count() != 0) {
        state.SkipWithError("not every task completed in its iteration");
    }
    shardloop::bench::report_per_item(state, "per_task", tasks_per_iteration);
}
BENCHMARK(BM_CreateTaskRun);

// One round trip, inside a task: create_future(); call_soon(a callback
// that sets its result); await(future). That is one future allocation
// (malloc), one handle (block cache), the waiter entry in the future's
// callback list (a std::vector: one more malloc and free), the task's switch
// out, a loop iteration in which the callback resolves the future and
// schedules the task, and a second iteration in which the task is switched
// back in. Two switches and two loop iterations per round trip; no system
// call.
void BM_FutureResolveWakesTask(benchmark::State& state) {
    EventLoop loop;
    loop.run_until_complete([&state, &loop] {
        auto round_trip = [&loop] {
            shardloop::Future<int> future = loop.create_future<int>();
            loop.call_soon([future]() mutable { future.set_result(1); });
            benchmark::DoNotOptimize(shardloop::await(future));
        };
        round_trip();  // warm-up
        for (auto _ : state) {
            round_trip();
        }
    });
}
BENCHMARK(BM_FutureResolveWakesTask);

}  // namespace
