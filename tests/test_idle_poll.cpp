// Idle polling (EventLoopOptions::idle_poll, ShardedPolicyOptions::idle_poll):
// a loop with nothing to do spins a while before it sleeps. Work that comes
// during the spin (a threadsafe callback, a cross-shard message) needs no
// wake-up; I/O and timers are not delayed by it; once the spin runs out,
// the loop sleeps as usual.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "policy/sharded_policy.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/sleep.hpp"

namespace shardloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

template <class F>
void expect_invalid_argument_naming_idle_poll(F&& fn) {
    try {
        fn();
        ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find("idle_poll"), std::string::npos) << error.what();
    }
}

TEST(IdlePoll, ANegativeDurationIsRefusedNamingIt) {
    expect_invalid_argument_naming_idle_poll([] { EventLoop loop({.idle_poll = -1ns}); });
    expect_invalid_argument_naming_idle_poll(
        [] { ShardedPolicy policy({.shards = 1, .idle_poll = -1ns}); });
    EventLoop loop;
    EXPECT_EQ(loop.idle_poll(), 0ns);
    expect_invalid_argument_naming_idle_poll([&] { loop.set_idle_poll(-1ns); });
    loop.set_idle_poll(3ms);
    EXPECT_EQ(loop.idle_poll(), 3ms);
    loop.close();
}

// The loop is idle (no timer, no I/O) but still spinning when the callback
// is posted, so the poster does not pay for a wake-up and the loop never
// sleeps. Without idle polling the same post costs one wake-up.
TEST(IdlePoll, AThreadsafeCallbackDuringTheSpinNeedsNoWakeUp) {
    for (auto idle_poll : {std::chrono::nanoseconds(10s), std::chrono::nanoseconds(0)}) {
        EventLoop loop({.idle_poll = idle_poll});
        std::thread poster([&] {
            std::this_thread::sleep_for(30ms);
            loop.call_soon_threadsafe([&] { loop.stop(); });
        });
        loop.run_forever();
        poster.join();
        LoopStats stats = loop.stats();
        if (idle_poll.count() != 0) {
            EXPECT_EQ(stats.wakeups, 0u);
            EXPECT_EQ(stats.sleep_ns, 0);
            EXPECT_GT(stats.idle_poll_ns, 10'000'000);
        } else {
            EXPECT_EQ(stats.wakeups, 1u);
            EXPECT_GT(stats.sleep_ns, 10'000'000);
            EXPECT_EQ(stats.idle_poll_ns, 0);
        }
        loop.close();
    }
}

TEST(IdlePoll, AnIdleLoopSleepsOnceTheSpinRunsOut) {
    EventLoop loop({.idle_poll = 5ms});
    loop.call_later(0.15, [&] { loop.stop(); });
    loop.run_forever();
    LoopStats stats = loop.stats();
    EXPECT_GE(stats.idle_poll_ns, 4'000'000);
    EXPECT_LT(stats.idle_poll_ns, 100'000'000);
    EXPECT_GT(stats.sleep_ns, 50'000'000);
    loop.close();
}

// A spin of 10 s would show if a timer or an I/O completion had to wait
// for its end: the operation submitted just before the spin must reach
// the kernel, and its completion (deferred task work with DEFER_TASKRUN)
// must end the spin.
TEST(IdlePoll, TimersAndIoAreNotDelayedByTheSpin) {
    EventLoop loop({.idle_poll = 10s});
    Clock::time_point start = Clock::now();
    bool fired = false;
    loop.call_later(0.02, [&] {
        fired = true;
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(fired);
    EXPECT_LT(Clock::now() - start, 5s);

    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    std::thread writer([&] {
        std::this_thread::sleep_for(30ms);
        ASSERT_EQ(::write(fds[1], "ping", 4), 4);
    });
    start = Clock::now();
    std::string received = loop.run_until_complete(loop.sock_recv(fds[0], 16));
    writer.join();
    EXPECT_EQ(received, "ping");
    EXPECT_LT(Clock::now() - start, 5s);
    EXPECT_LT(loop.stats().idle_poll_ns, 5'000'000'000);
    loop.close();
    ::close(fds[0]);
    ::close(fds[1]);
}

// Shard 1 has nothing to do between bursts of messages, but spins through
// the gaps: no sender ever writes its eventfd.
TEST(IdlePoll, AnIdleShardThatSpinsIsNeverWokenBetweenBursts) {
    auto policy = std::make_shared<ShardedPolicy>(
        ShardedPolicyOptions{.shards = 2, .idle_poll = std::chrono::nanoseconds(10s)});
    uint64_t wakeups = 0;
    int64_t slept_ns = 0;
    std::atomic<int> received{0};
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        await(submit_to(1, [] { return 0; }));
        ShardStats before = policy->stats(1);
        for (int burst = 0; burst < 5; ++burst) {
            for (int n = 0; n < 100; ++n) {
                policy->send_to(1, [&] { received.fetch_add(1, std::memory_order_relaxed); });
            }
            await(sleep(0.01));
        }
        await(submit_to(1, [] { return 0; }));  // everything sent has run
        ShardStats after = policy->stats(1);
        wakeups = after.wakeups - before.wakeups;
        slept_ns = after.sleep_ns - before.sleep_ns;
        policy->stop();
    });
    EXPECT_EQ(received.load(), 500);
    EXPECT_EQ(wakeups, 0u);
    EXPECT_EQ(slept_ns, 0);
}

}  // namespace
}  // namespace shardloop
