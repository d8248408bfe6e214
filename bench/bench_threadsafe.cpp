// call_soon_threadsafe: how fast another thread reaches a loop, asleep
// (a wake-up through the eventfd) and busy (no system call at all).
//
// These benchmarks use two threads. When the process may run on two CPUs
// or more, the loop thread is pinned to the second allowed CPU and the
// benchmark thread to the first, so neither waits for the other's core.
// Run them without a single-CPU taskset.

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "bench_support.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/mpsc_queue.hpp"

namespace {

using shardloop::bench::pin_this_thread;

using shardloop::EventLoop;
using Clock = std::chrono::steady_clock;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// The CPUs this process may use, the first two of them: {first, second},
// or {-1, -1} when there is only one.
std::pair<int, int> two_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        return {-1, -1};
    }
    int found[2] = {-1, -1};
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; ++cpu) {
        if (CPU_ISSET(cpu, &set)) {
            found[n++] = cpu;
        }
    }
    return n == 2 ? std::pair{found[0], found[1]} : std::pair{-1, -1};
}

// Pins the benchmark thread for the scope and restores its affinity after.
class PinBenchmarkThread {
public:
    explicit PinBenchmarkThread(int cpu) {
        pthread_getaffinity_np(pthread_self(), sizeof _saved, &_saved);
        pin_this_thread(cpu);
    }
    ~PinBenchmarkThread() { pthread_setaffinity_np(pthread_self(), sizeof _saved, &_saved); }
    PinBenchmarkThread(const PinBenchmarkThread&) = delete;
    PinBenchmarkThread& operator=(const PinBenchmarkThread&) = delete;

private:
    cpu_set_t _saved;
};

// A loop running run_forever() on a thread of its own until destroyed.
class LoopThread {
public:
    explicit LoopThread(int cpu) {
        _thread = std::thread([this, cpu] {
            pin_this_thread(cpu);
            _loop.run_forever();
        });
    }
    ~LoopThread() {
        _loop.call_soon_threadsafe([this] { _loop.stop(); });
        _thread.join();
    }
    LoopThread(const LoopThread&) = delete;
    LoopThread& operator=(const LoopThread&) = delete;

    EventLoop& loop() { return _loop; }

private:
    EventLoop _loop;
    std::thread _thread;
};

double thread_system_seconds() {
    rusage usage{};
    getrusage(RUSAGE_THREAD, &usage);
    return static_cast<double>(usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_stime.tv_usec) * 1e-6;
}

// (a) Wake-up latency. The loop has nothing to do and sleeps in
// io_uring_enter. One iteration: timestamp, call_soon_threadsafe(cb); cb
// timestamps on the loop thread and raises a flag the benchmark thread spins
// on. The reported (manual) time is post -> callback start: the handle
// allocation, the queue push, the eventfd write (a system call), the
// kernel completing the loop's eventfd read, the loop thread's wake-up
// (scheduler + io_uring_enter return), the drain of the inbox and the call.
// Between iterations the benchmark thread waits 100 us, unmeasured, so the
// loop is asleep again. "post" is the average time the poster spent inside
// call_soon_threadsafe (mostly the eventfd write).
void BM_ThreadsafeWakeLatency(benchmark::State& state) {
    auto [bench_cpu, loop_cpu] = two_cpus();
    PinBenchmarkThread pin(bench_cpu);
    LoopThread loop_thread(loop_cpu);
    EventLoop& loop = loop_thread.loop();
    std::atomic<bool> received{false};
    Clock::time_point received_at;
    double post_seconds = 0;

    auto round_trip = [&]() -> std::chrono::duration<double> {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        received.store(false, std::memory_order_relaxed);
        Clock::time_point sent_at = Clock::now();
        loop.call_soon_threadsafe([&] {
            received_at = Clock::now();
            received.store(true, std::memory_order_release);
        });
        post_seconds += std::chrono::duration<double>(Clock::now() - sent_at).count();
        while (!received.load(std::memory_order_acquire)) {
            cpu_relax();
        }
        return received_at - sent_at;
    };
    round_trip();  // warm-up
    post_seconds = 0;
    for (auto _ : state) {
        state.SetIterationTime(round_trip().count());
    }
    state.counters["post"] = benchmark::Counter(post_seconds, benchmark::Counter::kAvgIterations);
    state.counters["loop_cpu"] = loop_cpu;
}
BENCHMARK(BM_ThreadsafeWakeLatency)->UseManualTime();

// Baseline for (a): the platform's floor for waking a sleeping thread. A
// thread blocks in read() on an eventfd; one iteration is write() to it
// from the benchmark thread and the reader's return, timestamped the same
// way as above. No io_uring, no loop: what is left is the system call, the
// scheduler's wake-up and (in a VM) waking an idle virtual CPU.
void BM_EventfdWakeLatencyBaseline(benchmark::State& state) {
    auto [bench_cpu, reader_cpu] = two_cpus();
    PinBenchmarkThread pin(bench_cpu);
    int efd = eventfd(0, EFD_CLOEXEC);
    std::atomic<bool> received{false};
    std::atomic<bool> quit{false};
    Clock::time_point received_at;
    std::thread reader([&, cpu = reader_cpu] {
        pin_this_thread(cpu);
        uint64_t value = 0;
        while (read(efd, &value, sizeof value) == sizeof value) {
            received_at = Clock::now();
            if (quit.load(std::memory_order_relaxed)) {
                return;
            }
            received.store(true, std::memory_order_release);
        }
    });
    double post_seconds = 0;
    auto round_trip = [&]() -> std::chrono::duration<double> {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        received.store(false, std::memory_order_relaxed);
        uint64_t one = 1;
        Clock::time_point sent_at = Clock::now();
        (void)!write(efd, &one, sizeof one);
        post_seconds += std::chrono::duration<double>(Clock::now() - sent_at).count();
        while (!received.load(std::memory_order_acquire)) {
            cpu_relax();
        }
        return received_at - sent_at;
    };
    round_trip();
    post_seconds = 0;
    for (auto _ : state) {
        state.SetIterationTime(round_trip().count());
    }
    quit.store(true, std::memory_order_relaxed);
    uint64_t one = 1;
    (void)!write(efd, &one, sizeof one);
    reader.join();
    close(efd);
    state.counters["post"] = benchmark::Counter(post_seconds, benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_EventfdWakeLatencyBaseline)->UseManualTime();

constexpr int posts_per_iteration = 1000;

// (b) Throughput to a busy loop. The loop never sleeps: a callback
// re-schedules itself with call_soon, so every iteration has work and the
// loop never announces it is going to sleep. One iteration: the benchmark
// thread posts 1000 callbacks with call_soon_threadsafe and spins until the
// loop has run all of them. Per callback: a handle allocation on the
// posting thread (the posting thread's block cache is always empty, since
// handles are freed on the loop thread), one atomic exchange, the loop's
// pop, the call, the release. It should include no system call: the
// "poster_sys" counter is the posting thread's system time per callback
// (getrusage(RUSAGE_THREAD)), which stays ~0 when no eventfd write happens.
// "per_callback" is wall time per callback, end to end.
void BM_ThreadsafeBusyLoopThroughput(benchmark::State& state) {
    auto [bench_cpu, loop_cpu] = two_cpus();
    PinBenchmarkThread pin(bench_cpu);
    LoopThread loop_thread(loop_cpu);
    EventLoop& loop = loop_thread.loop();

    std::atomic<bool> spinning{true};
    std::atomic<uint64_t> done{0};  // written by the loop thread only
    uint64_t spins = 0;             // loop thread only
    struct Spinner {
        EventLoop* loop;
        std::atomic<bool>* spinning;
        uint64_t* spins;
        void operator()() const {
            ++*spins;
            if (spinning->load(std::memory_order_relaxed)) {
                loop->call_soon(*this);
            }
        }
    };
    loop.call_soon_threadsafe([&] { loop.call_soon(Spinner{&loop, &spinning, &spins}); });

    uint64_t expected = 0;
    auto batch = [&] {
        for (int i = 0; i < posts_per_iteration; ++i) {
            loop.call_soon_threadsafe([&done] {
                done.store(done.load(std::memory_order_relaxed) + 1, std::memory_order_release);
            });
        }
        expected += posts_per_iteration;
        while (done.load(std::memory_order_acquire) != expected) {
            cpu_relax();
        }
    };
    batch();  // warm-up
    double sys_before = thread_system_seconds();
    for (auto _ : state) {
        batch();
    }
    double sys_seconds = thread_system_seconds() - sys_before;

    std::atomic<bool> stopped{false};
    loop.call_soon_threadsafe([&] {
        spinning.store(false, std::memory_order_relaxed);
        stopped.store(true, std::memory_order_release);
    });
    while (!stopped.load(std::memory_order_acquire)) {
        cpu_relax();
    }
    shardloop::bench::report_per_item(state, "per_callback", posts_per_iteration);
    state.counters["poster_sys"] =
        benchmark::Counter(sys_seconds / posts_per_iteration, benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_ThreadsafeBusyLoopThroughput)->UseRealTime();

// Baseline for (b): the floor of handing objects to a busy thread. The
// benchmark thread allocates 128-byte nodes (new) and pushes them on the
// same intrusive MPSC queue the loop's inbox uses; a consumer thread spins
// popping them, deletes them and counts. One iteration: 1000 nodes, waited
// for as in (b). No loop, no callback: what is left is the allocation on
// one thread and the free on the other, and the cache lines that travel
// between the two CPUs. "per_node" is wall time per node, end to end.
void BM_CrossThreadHandoffBaseline(benchmark::State& state) {
    auto [bench_cpu, consumer_cpu] = two_cpus();
    PinBenchmarkThread pin(bench_cpu);
    struct Node : shardloop::detail::MpscNode {
        unsigned char payload[120];
    };
    shardloop::detail::MpscQueue queue;
    std::atomic<bool> quit{false};
    std::atomic<uint64_t> done{0};
    std::thread consumer([&, cpu = consumer_cpu] {
        pin_this_thread(cpu);
        uint64_t count = 0;
        while (!quit.load(std::memory_order_relaxed)) {
            shardloop::detail::MpscNode* node = queue.pop();
            if (node == nullptr) {
                cpu_relax();
                continue;
            }
            delete static_cast<Node*>(node);
            done.store(++count, std::memory_order_release);
        }
        while (shardloop::detail::MpscNode* node = queue.pop()) {
            delete static_cast<Node*>(node);
        }
    });
    uint64_t expected = 0;
    auto batch = [&] {
        for (int i = 0; i < posts_per_iteration; ++i) {
            queue.push(new Node);
        }
        expected += posts_per_iteration;
        while (done.load(std::memory_order_acquire) != expected) {
            cpu_relax();
        }
    };
    batch();
    for (auto _ : state) {
        batch();
    }
    quit.store(true, std::memory_order_relaxed);
    consumer.join();
    shardloop::bench::report_per_item(state, "per_node", posts_per_iteration);
}
BENCHMARK(BM_CrossThreadHandoffBaseline)->UseRealTime();

}  // namespace
