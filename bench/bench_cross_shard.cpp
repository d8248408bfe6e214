// Cross-shard messages between two pinned shards (ShardedPolicy): the
// latency of a round trip between two busy loops, the wake-up of a shard
// that sleeps, and the one-way throughput of a stream of messages, each
// next to a baseline without the loops (raw rings, a bare eventfd).
//
// Each shard benchmark starts a two-shard policy (shard 0 on the first CPU
// the process may use, shard 1 on the second) and runs its measuring loop
// as a task on shard 0; the benchmark thread only waits in run(). Run them
// with two CPUs (taskset -c 0,1), never a single-CPU taskset: the policy
// pins its own threads.
//
// Besides Google Benchmark's mean (the Time column), every benchmark
// reports the median of per-event samples (counters p50_*): on a shared
// 2-CPU machine one of the two threads is now and then descheduled for a
// whole time slice, during which its peer spins; a few such events pull
// the mean far from what a message costs while both threads run, the
// median hardly moves. Samples are TSC ticks (rdtsc, no system call even
// with kvm-clock), converted with a rate calibrated against steady_clock.

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "policy/sharded_policy.hpp"
#include "runtime/sleep.hpp"

namespace {

using shardloop::bench::pin_this_thread;

using shardloop::EventLoop;
using shardloop::Future;
using shardloop::ShardedPolicy;
using shardloop::ShardedPolicyOptions;
using Clock = std::chrono::steady_clock;

inline void cpu_relax() { __builtin_ia32_pause(); }

inline uint64_t ticks() { return __rdtsc(); }

// Nanoseconds per TSC tick, measured once over 20 ms (a preemption during
// the measurement does not matter: both clocks keep running).
double ns_per_tick() {
    static const double rate = [] {
        Clock::time_point start = Clock::now();
        uint64_t start_ticks = ticks();
        while (Clock::now() - start < std::chrono::milliseconds(20)) {
            cpu_relax();
        }
        uint64_t end_ticks = ticks();
        double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
        return ns / static_cast<double>(end_ticks - start_ticks);
    }();
    return rate;
}

// Durations of single events, in ticks, for their median.
class Samples {
public:
    Samples() { _ticks.reserve(1 << 20); }
    void add(uint64_t duration) { _ticks.push_back(duration); }
    double median_ns() {
        if (_ticks.empty()) {
            return 0;
        }
        auto middle = _ticks.begin() + static_cast<std::ptrdiff_t>(_ticks.size() / 2);
        std::nth_element(_ticks.begin(), middle, _ticks.end());
        return static_cast<double>(*middle) * ns_per_tick();
    }

private:
    std::vector<uint64_t> _ticks;
};

// The CPUs this process may use, the first two of them, or {} when there
// is only one (the policy then puts both shards on it).
std::vector<unsigned> two_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        return {};
    }
    std::vector<unsigned> found;
    for (int cpu = 0; cpu < CPU_SETSIZE && found.size() < 2; ++cpu) {
        if (CPU_ISSET(cpu, &set)) {
            found.push_back(static_cast<unsigned>(cpu));
        }
    }
    return found.size() == 2 ? found : std::vector<unsigned>{};
}

// Pins the benchmark thread to the first CPU (where shard 0 would be) and
// starts a peer thread on the second (shard 1's), for the baselines; puts
// the benchmark thread's affinity back afterwards.
class PinnedPair {
public:
    template <class Peer>
    explicit PinnedPair(Peer peer) {
        std::vector<unsigned> cpus = two_cpus();
        pthread_getaffinity_np(pthread_self(), sizeof _saved, &_saved);
        pin_this_thread(cpus.empty() ? -1 : static_cast<int>(cpus[0]));
        _peer = std::thread(
            [peer = std::move(peer), cpu = cpus.empty() ? -1 : static_cast<int>(cpus[1])] {
                pin_this_thread(cpu);
                peer();
            });
    }
    // The peer must have been told to return.
    void join() {
        _peer.join();
        pthread_setaffinity_np(pthread_self(), sizeof _saved, &_saved);
    }

private:
    std::thread _peer;
    cpu_set_t _saved;
};

std::shared_ptr<ShardedPolicy> make_two_shards(std::size_t queue_capacity = 1024,
                                               std::chrono::nanoseconds idle_poll = {}) {
    return std::make_shared<ShardedPolicy>(ShardedPolicyOptions{
        .shards = 2, .cpus = two_cpus(), .queue_capacity = queue_capacity, .idle_poll = idle_poll});
}

// Keeps a loop busy: a callback that schedules itself again with call_soon
// while `keep_going` holds, so the loop always has a ready callback and
// never sleeps. (It never enters the kernel either: a zero-timeout wait
// with no I/O in flight skips io_uring_enter.)
struct Spinner {
    EventLoop* loop;
    const std::atomic<bool>* keep_going;
    void operator()() const {
        if (keep_going->load(std::memory_order_relaxed)) {
            loop->call_soon(*this);
        }
    }
};

// Runs `measure(loop)` as shard 0's task, with a Spinner on shard 0 and,
// with `spin_shard1`, one on shard 1 (otherwise shard 1 has nothing to do
// and sleeps), and stops the policy once it returns. An exception from a
// shard becomes the benchmark's error.
template <class Measure>
void run_on_shard0(benchmark::State& state, ShardedPolicy& policy, bool spin_shard1,
                   Measure measure) {
    std::atomic<bool> spinning{true};
    try {
        policy.run([&] {
            EventLoop& loop = shardloop::get_running_loop();
            if (shardloop::this_shard_id() != 0) {
                if (spin_shard1) {
                    loop.call_soon(Spinner{&loop, &spinning});
                }
                return;
            }
            struct StopAll {
                ShardedPolicy& policy;
                std::atomic<bool>& spinning;
                ~StopAll() {
                    spinning.store(false, std::memory_order_relaxed);
                    policy.stop();
                }
            } stop_all{policy, spinning};
            loop.call_soon(Spinner{&loop, &spinning});
            measure(loop);
        });
    } catch (const std::exception& error) {
        state.SkipWithError(error.what());
    }
}

// Each loop's iterations per event (round trip, message) between two readings.
struct IterationCounts {
    uint64_t shard0 = 0;
    uint64_t shard1 = 0;
    static IterationCounts read(const ShardedPolicy& policy) {
        return {policy.stats(0).iterations, policy.stats(1).iterations};
    }
    void report_since(benchmark::State& state, const ShardedPolicy& policy, double events) const {
        IterationCounts now = read(policy);
        state.counters["iters0"] = static_cast<double>(now.shard0 - shard0) / events;
        state.counters["iters1"] = static_cast<double>(now.shard1 - shard1) / events;
    }
};

// Round-trip counters: the mean one-way time (half the Time column, plus
// messages/s) and the median round trip and one-way time in ns.
void report_round_trips(benchmark::State& state, Samples& samples) {
    shardloop::bench::report_per_item(state, "one_way", 2);
    double median = samples.median_ns();
    state.counters["p50_rt_ns"] = median;
    state.counters["p50_one_way_ns"] = median / 2;
}

// The baselines' measurement: 1,000 round trips to warm up, then one
// round trip per benchmark iteration, each timed.
template <class RoundTrip>
void time_round_trips(benchmark::State& state, RoundTrip& round_trip) {
    for (int i = 0; i < 1000; ++i) {
        round_trip();
    }
    Samples samples;
    for (auto _ : state) {
        uint64_t start = ticks();
        round_trip();
        samples.add(ticks() - start);
    }
    report_round_trips(state, samples);
}

constexpr int64_t round_trips_per_batch = 1000;

// 1a. Round trip between two busy shards, send_to both ways. Both loops run
// a Spinner, so neither ever sleeps and no message needs a wake-up. A chain
// of callbacks on shard 0 sends one message to shard 1 whose handler sends
// one back; the reply's handler takes a time stamp and sends the next, one
// at a time, 1000 per batch (the task awaits each batch, out of the
// chain's way). Per message: send_to (the port's bookkeeping, the Callback
// moved into a ring slot), the cache lines of the slot and of the ring's
// tail travelling to the other CPU, the wait for the receiving loop's next
// poll (once per iteration, after I/O), the handler. The sender's next
// iteration publishes the tail (a release store and a seq_cst fence) and
// checks whether the target sleeps. Time: wall time per round trip; "one_way" is half of it.
// p50_rt_ns: the median of the time between consecutive replies.
// iters0/iters1: each loop's iterations per round trip.
void BM_RoundTripSendToBusy(benchmark::State& state) {
    auto policy = make_two_shards();
    ShardedPolicy* p = policy.get();
    Samples samples;
    run_on_shard0(state, *policy, true, [&](EventLoop& loop) {
        struct Chain {
            ShardedPolicy* policy;
            Samples* samples;
            int64_t left = 0;
            uint64_t last = 0;
            Future<void> done{};
            void ping() {
                // The handler on shard 1 captures what it needs: it must not
                // read this struct, whose line shard 0 writes every round.
                policy->send_to(
                    1, [p = policy, self = this] { p->send_to(0, [self] { self->pong(); }); });
            }
            void pong() {
                uint64_t now = ticks();
                samples->add(now - last);
                last = now;
                if (--left == 0) {
                    done.set_result();
                } else {
                    ping();
                }
            }
            void run(EventLoop& loop, int64_t count) {
                left = count;
                done = loop.create_future<void>();
                last = ticks();
                ping();
                shardloop::await(done);
            }
        } chain{p, &samples};
        chain.run(loop, round_trips_per_batch);  // warm-up
        samples = Samples();
        IterationCounts before = IterationCounts::read(*p);
        while (state.KeepRunningBatch(round_trips_per_batch)) {
            chain.run(loop, round_trips_per_batch);
        }
        before.report_since(state, *p, static_cast<double>(state.iterations()));
    });
    report_round_trips(state, samples);
}
BENCHMARK(BM_RoundTripSendToBusy)->UseRealTime()->MinTime(0.2);

// 1b. The same round trip through submit_to: shard 0's task awaits
// submit_to(1, fn) for a function returning an int, one at a time, both
// loops busy as in 1a. Per round trip, besides the two messages: a future
// and a ReplySlot allocated on shard 0, the Outcome carried back, and the
// task's suspension and resumption (a fiber switch each way; the resumed
// step is queued with call_soon and runs in the same iteration as the
// reply). Time: wall time per round trip; "one_way" is half.
// p50_rt_ns: the median of single round trips.
void BM_RoundTripSubmitToBusy(benchmark::State& state) {
    auto policy = make_two_shards();
    ShardedPolicy* p = policy.get();
    Samples samples;
    run_on_shard0(state, *policy, true, [&](EventLoop&) {
        for (int i = 0; i < 1000; ++i) {  // warm-up
            shardloop::await(p->submit_to(1, [] { return 1; }));
        }
        IterationCounts before = IterationCounts::read(*p);
        for (auto _ : state) {
            uint64_t start = ticks();
            int value = shardloop::await(p->submit_to(1, [] { return 1; }));
            samples.add(ticks() - start);
            benchmark::DoNotOptimize(value);
        }
        before.report_since(state, *p, static_cast<double>(state.iterations()));
    });
    report_round_trips(state, samples);
}
BENCHMARK(BM_RoundTripSubmitToBusy)->UseRealTime()->MinTime(0.2);

using RawMessage = shardloop::detail::ShardMessage;
using RawRing = shardloop::detail::SpscRing<RawMessage>;

// Pushes `message`, spinning (with what was pushed published) while the
// ring is full. The caller publishes the rest, as the shards do once per
// iteration.
void push_spinning(RawRing& ring, RawMessage message) {
    while (!ring.try_push(message)) {
        ring.publish();
        cpu_relax();
    }
}

// Baseline for 1: the floor of the round trip, with the loops taken away.
// The same rings the shards use (SpscRing<ShardMessage>, capacity 1024),
// between the benchmark thread (first CPU) and a thread (second CPU) that
// spins consuming its ring and runs what it finds. One iteration: push one
// message whose handler pushes one back, spin consuming until the reply
// has run. Per message: the Callback moved into and out of its slot and the
// slot's and the tail's cache lines travelling between the CPUs; no loop
// iteration, no seq_cst publish, no port bookkeeping. Time: wall time per
// round trip; "one_way" is half; p50_rt_ns: the median round trip.
void BM_RoundTripRawRingBaseline(benchmark::State& state) {
    RawRing to_peer(1024);
    RawRing to_home(1024);
    std::atomic<bool> quit{false};
    PinnedPair pair([&] {
        while (!quit.load(std::memory_order_relaxed)) {
            if (to_peer.consume([](RawMessage&& message) { message(); }, SIZE_MAX) == 0) {
                cpu_relax();
            }
        }
    });
    bool back = false;
    auto round_trip = [&] {
        back = false;
        push_spinning(to_peer, [home = &to_home, flag = &back] {
            push_spinning(*home, [flag] { *flag = true; });
            home->publish();
        });
        to_peer.publish();
        while (!back) {
            if (to_home.consume([](RawMessage&& message) { message(); }, SIZE_MAX) == 0) {
                cpu_relax();
            }
        }
    };
    time_round_trips(state, round_trip);
    quit.store(true, std::memory_order_relaxed);
    pair.join();
}
BENCHMARK(BM_RoundTripRawRingBaseline)->UseRealTime()->MinTime(0.2);

// Baseline for 1, the hardware's floor: one cache line to the other CPU
// and one back. The benchmark thread (first CPU) stores a sequence number
// in one line; a thread on the second CPU spins until it sees it and
// stores it in another line, which the benchmark thread spins on. Every
// cross-CPU message needs at least one such transfer (the ring's needs
// two: the tail and the slot), so "one_way" here bounds what any message
// can reach on this machine. Counters as in 1.
void BM_CacheLinePingPongBaseline(benchmark::State& state) {
    struct alignas(64) Line {
        std::atomic<uint64_t> value{0};
    };
    Line ping;
    Line pong;
    std::atomic<bool> quit{false};
    PinnedPair pair([&] {
        uint64_t seen = 0;
        while (!quit.load(std::memory_order_relaxed)) {
            uint64_t value = ping.value.load(std::memory_order_acquire);
            if (value != seen) {
                seen = value;
                pong.value.store(value, std::memory_order_release);
            }
        }
    });
    uint64_t sequence = 0;
    auto round_trip = [&] {
        ++sequence;
        ping.value.store(sequence, std::memory_order_release);
        while (pong.value.load(std::memory_order_acquire) != sequence) {
        }
    };
    time_round_trips(state, round_trip);
    quit.store(true, std::memory_order_relaxed);
    pair.join();
}
BENCHMARK(BM_CacheLinePingPongBaseline)->UseRealTime()->MinTime(0.2);

constexpr auto wake_gap = std::chrono::microseconds(200);
constexpr int64_t wake_iterations = 1000;

// Wake-up counters: the median and the 99th percentile, in us.
void report_wakes(benchmark::State& state, std::vector<double>& seconds) {
    if (seconds.empty()) {
        return;
    }
    std::sort(seconds.begin(), seconds.end());
    auto at = [&](double q) {
        auto index = static_cast<std::size_t>(q * static_cast<double>(seconds.size()));
        return seconds[std::min(seconds.size() - 1, index)] * 1e6;
    };
    state.counters["p50_us"] = at(0.5);
    state.counters["p99_us"] = at(0.99);
}

// 2. Wake-up of a sleeping shard. Shard 1 has nothing to do and sleeps in
// io_uring_enter; shard 0 stays busy (a Spinner) and, between messages,
// waits 200 us (sleep(), a timer its busy loop checks every iteration), so
// that shard 1 is asleep again when the next message comes. One iteration:
// t0, send_to(1, handler) from shard 0's task, which then awaits the reply.
// The message goes into the ring; the next iteration of shard 0's loop
// (flush) publishes it, finds shard 1 asleep and writes its eventfd. The
// handler takes t1 on shard 1 and sends the reply, whose handler takes t2
// on shard 0. The reported (manual) time is t1 - t0 (steady_clock on both
// CPUs): the rest of shard 0's iteration, the publish, the eventfd
// write (a system call), the kernel completing shard 1's io_uring read of
// its eventfd, the wake-up of shard 1's thread (the scheduler, and in a VM
// the idle virtual CPU), its io_uring_enter returning, and the poll.
// p50_us/p99_us: percentiles of t1 - t0. round_trip_us: mean t2 - t0 (the
// reply needs no wake-up: shard 0 is busy). To show that shard 1 really
// slept before each message: its time asleep (slept_us) and its kernel
// entries (enters) per message.
// The argument is the shards' idle-poll time in us (ShardedPolicyOptions::
// idle_poll). 0: shard 1 sleeps at once, as above. 1000 (longer than the
// 200 us gap): shard 1 is idle but still spinning when the message comes,
// so no wake-up is needed (slept_us ~0, spun_us ~200). 50 (shorter than the
// gap): it spins 50 us, then sleeps, and the wake-up is back.
void BM_WakeLatencySleepingShard(benchmark::State& state) {
    auto policy = make_two_shards(1024, std::chrono::microseconds(state.range(0)));
    ShardedPolicy* p = policy.get();
    std::vector<double> wakes;
    wakes.reserve(wake_iterations);
    run_on_shard0(state, *policy, false, [&](EventLoop& loop) {
        struct Times {
            Clock::time_point sent;
            Clock::time_point arrived;  // written on shard 1
            Clock::time_point returned;
        } times;
        double gap = std::chrono::duration<double>(wake_gap).count();
        auto round_trip = [&] {
            shardloop::await(shardloop::sleep(gap));
            Future<void> done = loop.create_future<void>();
            times.sent = Clock::now();
            p->send_to(1, [p, t = &times, done]() mutable {
                t->arrived = Clock::now();
                p->send_to(0, [t, done]() mutable {
                    t->returned = Clock::now();
                    done.set_result();
                });
            });
            shardloop::await(done);
        };
        for (int i = 0; i < 20; ++i) {  // warm-up
            round_trip();
        }
        shardloop::ShardStats before = p->stats(1);
        double round_trip_seconds = 0;
        for (auto _ : state) {
            round_trip();
            std::chrono::duration<double> wake = times.arrived - times.sent;
            wakes.push_back(wake.count());
            state.SetIterationTime(wake.count());
            round_trip_seconds +=
                std::chrono::duration<double>(times.returned - times.sent).count();
        }
        shardloop::ShardStats after = p->stats(1);
        double n = static_cast<double>(state.iterations());
        state.counters["round_trip_us"] = round_trip_seconds / n * 1e6;
        state.counters["slept_us"] =
            static_cast<double>(after.sleep_ns - before.sleep_ns) / n * 1e-3;
        state.counters["enters"] =
            static_cast<double>(after.kernel_entries - before.kernel_entries) / n;
        state.counters["spun_us"] =
            static_cast<double>(after.idle_poll_ns - before.idle_poll_ns) / n * 1e-3;
    });
    report_wakes(state, wakes);
}
BENCHMARK(BM_WakeLatencySleepingShard)
    ->ArgName("idle_poll_us")
    ->Arg(0)
    ->Arg(50)
    ->Arg(1000)
    ->UseManualTime()
    ->Iterations(wake_iterations);

// Baseline for 2: the platform's floor for waking a thread that sleeps on
// another CPU. A thread on the second CPU blocks in read() on an eventfd;
// the benchmark thread, on the first, busy-waits 200 us (unmeasured, and
// busy as shard 0 is above), takes t0 and writes the eventfd; the reader
// takes t1 when read() returns. The reported (manual) time is t1 - t0: the
// write system call, the scheduler's wake-up of the reader and (in a VM)
// the wake-up of its idle virtual CPU. No io_uring, no loop.
// p50_us/p99_us as above.
void BM_EventfdWakeLatencyBaseline(benchmark::State& state) {
    int efd = eventfd(0, EFD_CLOEXEC);
    std::atomic<bool> received{false};
    std::atomic<bool> quit{false};
    Clock::time_point received_at;
    PinnedPair pair([&] {
        uint64_t value = 0;
        while (read(efd, &value, sizeof value) == sizeof value) {
            received_at = Clock::now();
            if (quit.load(std::memory_order_relaxed)) {
                return;
            }
            received.store(true, std::memory_order_release);
        }
    });
    auto round_trip = [&]() -> std::chrono::duration<double> {
        Clock::time_point resume = Clock::now() + wake_gap;
        while (Clock::now() < resume) {
            cpu_relax();
        }
        received.store(false, std::memory_order_relaxed);
        uint64_t one = 1;
        Clock::time_point sent_at = Clock::now();
        (void)!write(efd, &one, sizeof one);
        while (!received.load(std::memory_order_acquire)) {
            cpu_relax();
        }
        return received_at - sent_at;
    };
    for (int i = 0; i < 20; ++i) {
        round_trip();
    }
    std::vector<double> wakes;
    wakes.reserve(wake_iterations);
    for (auto _ : state) {
        double wake = round_trip().count();
        wakes.push_back(wake);
        state.SetIterationTime(wake);
    }
    quit.store(true, std::memory_order_relaxed);
    uint64_t one = 1;
    (void)!write(efd, &one, sizeof one);
    pair.join();
    close(efd);
    report_wakes(state, wakes);
}
BENCHMARK(BM_EventfdWakeLatencyBaseline)->UseManualTime()->Iterations(wake_iterations);

constexpr int64_t burst = 1000;
constexpr int64_t bursts_per_batch = 100;

// The receiving side of a stream: counts messages and takes a time stamp
// every `burst` of them. Touched by the receiving thread only; on a cache
// line of its own.
struct alignas(64) StreamCounter {
    uint64_t received = 0;
    int64_t countdown = burst;
    uint64_t last = 0;
    Samples* samples = nullptr;

    void count() {
        ++received;
        if (--countdown == 0) {
            countdown = burst;
            uint64_t now = ticks();
            samples->add(now - last);
            last = now;
        }
    }
};

// Throughput counters: per message and messages/s from the mean (Time
// column), and the median rate over single bursts of 1000 received.
void report_stream(benchmark::State& state, Samples& samples) {
    shardloop::bench::report_per_item(state, "per_message", 1);
    double median_ns = samples.median_ns() / static_cast<double>(burst);
    state.counters["p50_per_message_ns"] = median_ns;
    state.counters["p50_rate"] = median_ns > 0 ? 1e9 / median_ns : 0;
}

// 3. One-way throughput. Shard 0 sends bursts of 1000 messages to shard 1,
// one burst per iteration of its loop (a callback that sends 1000 and
// schedules itself again with call_soon), 100 bursts per batch; each
// message's handler counts it on shard 1. After the batch a marker message
// (messages run in order) checks the count and sends a reply that
// completes the batch: the wall time includes draining the last burst.
// Both loops are busy (Spinners) so the stream never waits for a wake-up.
// The argument is queue_capacity: 1024 (the default; a burst fits in the
// ring) and 64 (most of each burst takes the sender's overflow list, which
// flush() moves into the ring, in order, as the receiver frees room).
// Time: wall time per message; items_per_second: messages/s. p50_rate /
// p50_per_message_ns: the median over the intervals in which shard 1
// received 1000 messages. p50_send_ns: shard 0's median time to send one
// burst, per message (send_to alone; when it is below p50_per_message_ns
// the receiver is the bottleneck). iters1_per_1k: shard 1's loop
// iterations per 1000 messages (1000 / messages found per poll).
void BM_OneWayThroughput(benchmark::State& state) {
    auto policy = make_two_shards(static_cast<std::size_t>(state.range(0)));
    ShardedPolicy* p = policy.get();
    Samples samples;
    Samples send_samples;  // shard 0: the time to send one burst
    run_on_shard0(state, *policy, true, [&](EventLoop& loop) {
        auto counter = std::make_unique<StreamCounter>();
        counter->samples = &samples;
        struct Stream {
            ShardedPolicy* policy;
            EventLoop* loop;
            StreamCounter* counter;
            Samples* send_samples;
            int64_t bursts_left = 0;
            uint64_t sent = 0;
            Future<void> done{};

            void operator()() {
                StreamCounter* c = counter;
                uint64_t start = ticks();
                for (int64_t i = 0; i < burst; ++i) {
                    policy->send_to(1, [c] { c->count(); });
                }
                send_samples->add(ticks() - start);
                sent += burst;
                if (--bursts_left > 0) {
                    loop->call_soon([this] { (*this)(); });
                    return;
                }
                policy->send_to(1, [p = policy, c, expected = sent, self = this] {
                    if (c->received != expected) {
                        std::terminate();  // a lost or duplicated message
                    }
                    p->send_to(0, [self] { self->done.set_result(); });
                });
            }
            void run(int64_t bursts) {
                bursts_left = bursts;
                done = loop->create_future<void>();
                (*this)();
                shardloop::await(done);
            }
        } stream{p, &loop, counter.get(), &send_samples};
        stream.run(bursts_per_batch);  // warm-up
        samples = Samples();
        send_samples = Samples();
        IterationCounts before = IterationCounts::read(*p);
        while (state.KeepRunningBatch(burst * bursts_per_batch)) {
            stream.run(bursts_per_batch);
        }
        IterationCounts after = IterationCounts::read(*p);
        state.counters["iters1_per_1k"] = static_cast<double>(after.shard1 - before.shard1) /
                                          static_cast<double>(state.iterations()) * 1000;
    });
    report_stream(state, samples);
    state.counters["p50_send_ns"] = send_samples.median_ns() / static_cast<double>(burst);
}
BENCHMARK(BM_OneWayThroughput)->Arg(1024)->Arg(64)->UseRealTime()->MinTime(0.2);

// Baseline for 3: the floor of the stream, with the loops taken away. The
// benchmark thread (first CPU) pushes 100 bursts of 1000 messages into a
// raw SpscRing<ShardMessage> of capacity 1024 (spinning while it is full),
// then a marker; a thread on the second CPU consumes as fast as it can,
// each handler counting as in 3, and the marker raises a flag the
// benchmark thread waits for. Per message: the Callback moved into and out
// of its slot (a cache line of its own) and the slot's trip between the
// CPUs; the tail and head indices travel once per batch consumed or
// refilled. Counters as in 3.
void BM_OneWayThroughputRawRingBaseline(benchmark::State& state) {
    RawRing ring(1024);
    std::atomic<bool> quit{false};
    PinnedPair pair([&] {
        while (!quit.load(std::memory_order_relaxed)) {
            if (ring.consume([](RawMessage&& message) { message(); }, SIZE_MAX) == 0) {
                cpu_relax();
            }
        }
    });
    Samples samples;
    StreamCounter counter;
    counter.samples = &samples;
    std::atomic<bool> done{false};
    uint64_t sent = 0;
    auto stream = [&] {
        done.store(false, std::memory_order_relaxed);
        StreamCounter* c = &counter;
        for (int64_t i = 0; i < burst * bursts_per_batch; ++i) {
            push_spinning(ring, [c] { c->count(); });
            if (i % burst == burst - 1) {
                ring.publish();
            }
        }
        sent += burst * bursts_per_batch;
        push_spinning(ring, [c, expected = sent, flag = &done] {
            if (c->received != expected) {
                std::terminate();
            }
            flag->store(true, std::memory_order_release);
        });
        ring.publish();
        while (!done.load(std::memory_order_acquire)) {
            cpu_relax();
        }
    };
    stream();
    samples = Samples();
    while (state.KeepRunningBatch(burst * bursts_per_batch)) {
        stream();
    }
    quit.store(true, std::memory_order_relaxed);
    pair.join();
    report_stream(state, samples);
}
BENCHMARK(BM_OneWayThroughputRawRingBaseline)->UseRealTime()->MinTime(0.2);

}  // namespace
