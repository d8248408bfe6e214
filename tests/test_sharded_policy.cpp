// ShardedPolicy: starting pinned shards, cross-shard messages (order, no
// loss, back-pressure), submit_to and its exceptions, calls from threads
// that are not shards, stopping from a shard, another thread or a signal,
// statistics, and the errors of bad arguments.

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>
#include <vector>

#include "policy/sharded_policy.hpp"
#include "runtime/sleep.hpp"

namespace shardloop {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<ShardedPolicy> make_policy(ShardedPolicyOptions options = {}) {
    return std::make_shared<ShardedPolicy>(std::move(options));
}

TEST(ShardedPolicy, EveryShardRunsOnItsOwnPinnedCpuWithItsOwnLoop) {
    auto policy = make_policy({.shards = 2});
    ASSERT_EQ(policy->shard_count(), 2u);
    std::mutex mutex;
    std::vector<std::vector<unsigned>> affinity(2);
    std::vector<EventLoop*> loops(2);
    std::vector<int> cpus(2, -2);
    std::atomic<int> ready{0};
    policy->run([&] {
        unsigned id = this_shard_id();
        cpus[id] = this_shard_cpu();
        EXPECT_EQ(shard_count(), 2u);
        EXPECT_TRUE(on_shard());
        EXPECT_EQ(get_event_loop().get(), &get_running_loop());
        {
            std::lock_guard lock(mutex);
            affinity[id] = this_thread_affinity();
            loops[id] = &get_running_loop();
        }
        if (++ready == 2) {
            policy->stop();
        }
    });
    EXPECT_NE(loops[0], loops[1]);
    for (unsigned shard = 0; shard < 2; ++shard) {
        EXPECT_EQ(affinity[shard], std::vector<unsigned>{policy->cpus()[shard]});
        EXPECT_EQ(cpus[shard], static_cast<int>(policy->cpus()[shard]));
    }
    EXPECT_FALSE(on_shard());
    EXPECT_THROW(this_shard_id(), RuntimeError);
    EXPECT_THROW(this_shard_cpu(), RuntimeError);
}

TEST(ShardedPolicy, AShardThatIsNotPinnedHasNoCpu) {
    auto policy = make_policy({.shards = 1, .pin = false});
    int cpu = -2;
    policy->run([&] {
        cpu = this_shard_cpu();
        policy->stop();
    });
    EXPECT_EQ(cpu, -1);
}

TEST(ShardedPolicy, SubmitToReturnsTheValueOnTheCallingShard) {
    auto policy = make_policy({.shards = 2});
    std::atomic<int> got{0};
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        std::thread::id caller = std::this_thread::get_id();
        Future<std::thread::id> where = submit_to(1, [] { return std::this_thread::get_id(); });
        std::thread::id remote = await(where);
        EXPECT_NE(remote, caller);
        EXPECT_EQ(std::this_thread::get_id(), caller);  // the reply comes home
        got = await(submit_to(1, [] { return this_shard_id() * 10 + 7; }));
        policy->stop();
    });
    EXPECT_EQ(got.load(), 17);
}

TEST(ShardedPolicy, SubmitToCarriesExceptionsBack) {
    auto policy = make_policy({.shards = 2});
    std::atomic<bool> caught{false};
    policy->run([&] {
        if (this_shard_id() == 0) {
            try {
                await(submit_to(1, []() -> int { throw std::logic_error("from shard 1"); }));
            } catch (const std::logic_error& error) {
                caught = std::string(error.what()) == "from shard 1";
            }
            policy->stop();
        }
    });
    EXPECT_TRUE(caught.load());
}

TEST(ShardedPolicy, SubmitToWaitsForAFutureTheFunctionReturns) {
    auto policy = make_policy({.shards = 2});
    std::atomic<int> got{0};
    std::atomic<bool> failed{false};
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        // The function starts a task on shard 1 that awaits there.
        got = await(submit_to(1, [] {
            return get_running_loop().create_task([] {
                await(sleep(0.01));
                return 5;
            });
        }));
        try {
            await(submit_to(1, [] {
                return get_running_loop().create_task(
                    []() -> int { throw std::runtime_error("task failed"); });
            }));
        } catch (const std::runtime_error&) {
            failed = true;
        }
        policy->stop();
    });
    EXPECT_EQ(got.load(), 5);
    EXPECT_TRUE(failed.load());
}

TEST(ShardedPolicy, SubmitToItsOwnShardRunsSoonNotInline) {
    auto policy = make_policy({.shards = 1});
    std::vector<int> order;
    policy->run([&] {
        Future<int> result = submit_to(0, [&] {
            order.push_back(2);
            return 3;
        });
        order.push_back(1);
        order.push_back(await(result));
        policy->stop();
    });
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(ShardedPolicy, InvokeOnAllRunsOnEveryShardAndReportsTheFirstError) {
    auto policy = make_policy({.shards = 3});
    std::atomic<int> mask{0};
    std::atomic<bool> error_seen{false};
    policy->run([&] {
        if (this_shard_id() != 1) {
            return;
        }
        await(invoke_on_all([&] { mask |= 1 << this_shard_id(); }));
        EXPECT_EQ(mask.load(), 0b111);
        try {
            await(invoke_on_all([] {
                if (this_shard_id() == 2) {
                    throw std::invalid_argument("shard 2 refuses");
                }
            }));
        } catch (const std::invalid_argument&) {
            error_seen = true;
        }
        policy->stop();
    });
    EXPECT_TRUE(error_seen.load());
}

// Every shard sends `count` numbered messages to every other shard; each
// receiver checks that every sender's numbers arrive in order, once each.
// A small ring makes most messages go through the overflow lists.
void check_fifo_between_every_pair(unsigned shards, uint64_t count, std::size_t capacity) {
    auto policy = make_policy({.shards = shards, .queue_capacity = capacity});
    // expected[to][from]: the next number `to` expects from `from`; only `to` touches it.
    std::vector<std::vector<uint64_t>> expected(shards, std::vector<uint64_t>(shards, 0));
    std::atomic<uint64_t> errors{0};
    std::atomic<unsigned> receivers_done{0};
    policy->run([&] {
        unsigned me = this_shard_id();
        for (uint64_t n = 0; n < count; ++n) {
            for (unsigned to = 0; to < shards; ++to) {
                if (to == me) {
                    continue;
                }
                policy->send_to(to, [&, me, to, n] {
                    uint64_t& next = expected[to][me];
                    if (next != n) {
                        ++errors;
                    }
                    next = n + 1;
                    bool all = true;
                    for (unsigned from = 0; from < shards; ++from) {
                        all = all && (from == to || expected[to][from] == count);
                    }
                    if (all && ++receivers_done == shards) {
                        policy->stop();
                    }
                });
            }
            if (n % 4096 == 4095) {
                await(sleep(0));  // lets the loop flush and receive between bursts
            }
        }
    });
    EXPECT_EQ(errors.load(), 0u);
    for (unsigned to = 0; to < shards; ++to) {
        for (unsigned from = 0; from < shards; ++from) {
            EXPECT_EQ(expected[to][from], from == to ? 0 : count) << from << " -> " << to;
        }
    }
    uint64_t per_shard = count * (shards - 1);
    for (const ShardStats& stats : policy->stats()) {
        EXPECT_EQ(stats.messages_sent, per_shard);
        EXPECT_EQ(stats.messages_received, per_shard);
    }
}

TEST(ShardedPolicy, AMillionMessagesBetweenEveryPairArriveInOrderOnce) {
    check_fifo_between_every_pair(2, 1'000'000, 1024);
}

TEST(ShardedPolicy, ThreeShardsOnTwoCoresKeepEveryPairInOrder) {
    check_fifo_between_every_pair(3, 100'000, 256);
}

TEST(ShardedPolicy, AFullRingOverflowsWithoutLossOrReordering) {
    check_fifo_between_every_pair(2, 200'000, 8);
}

TEST(ShardedPolicy, AThreadThatIsNotAShardPostsInOrder) {
    auto policy = make_policy({.shards = 2});
    constexpr int count = 100'000;
    std::vector<int> seen;  // shard 1 only
    std::atomic<bool> running{false};
    std::thread outsider([&] {
        while (!running.load()) {
            std::this_thread::sleep_for(1ms);
        }
        for (int n = 0; n < count; ++n) {
            policy->call_soon_threadsafe(1, [&, n] {
                seen.push_back(n);
                if (n == count - 1) {
                    policy->stop();
                }
            });
        }
    });
    policy->run([&] { running = true; });
    outsider.join();
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(count));
    for (int n = 0; n < count; ++n) {
        ASSERT_EQ(seen[n], n);
    }
    EXPECT_THROW(policy->call_soon_threadsafe(0, [] {}), RuntimeError);  // not running
}

TEST(ShardedPolicy, SubmitToFromALoopThatIsNotAShard) {
    auto policy = make_policy({.shards = 2});
    std::atomic<bool> running{false};
    std::atomic<int> got{0};
    std::thread outsider([&] {
        while (!running.load()) {
            std::this_thread::sleep_for(1ms);
        }
        auto loop = new_event_loop();
        got = loop->run_until_complete([&] {
            int value =
                await(policy->submit_to(1, [] { return 40 + static_cast<int>(this_shard_id()); }));
            EXPECT_THROW(await(policy->submit_to(0, []() -> int { throw std::range_error("no"); })),
                         std::range_error);
            return value;
        });
        loop->close();
        policy->stop();
    });
    policy->run([&] { running = true; });
    outsider.join();
    EXPECT_EQ(got.load(), 41);
}

TEST(ShardedPolicy, StopFromAnotherThreadWithWorkInFlight) {
    auto policy = make_policy({.shards = 2});
    std::atomic<uint64_t> round_trips{0};
    std::thread stopper([&] {
        while (round_trips.load() < 1000) {
            std::this_thread::sleep_for(1ms);
        }
        policy->stop();
    });
    // Both shards ping-pong without end, plus timers and one-way messages.
    policy->run([&] {
        unsigned peer = 1 - this_shard_id();
        get_running_loop().call_later(3600, [] {});
        for (;;) {
            policy->send_to(peer, [] {});
            await(policy->submit_to(peer, [] { return 1; }));
            ++round_trips;
        }
    });
    stopper.join();
    EXPECT_GE(round_trips.load(), 1000u);
    // The policy can run again after a stop.
    std::atomic<int> second{0};
    policy->run([&] {
        if (++second == 2) {
            policy->stop();
        }
    });
    EXPECT_EQ(second.load(), 2);
}

TEST(ShardedPolicy, StopFromASignalWhileTheShardsSleep) {
    auto policy = make_policy({.shards = 2, .stop_signals = {SIGUSR1}});
    std::atomic<int> started{0};
    std::thread sender([&] {
        while (started.load() < 2) {
            std::this_thread::sleep_for(1ms);
        }
        std::this_thread::sleep_for(20ms);  // both loops are asleep by now
        ::kill(::getpid(), SIGUSR1);
    });
    policy->run([&] { ++started; });
    sender.join();
    // The previous disposition (default: terminate) is back.
    struct sigaction now {};
    ASSERT_EQ(::sigaction(SIGUSR1, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, SIG_DFL);
}

TEST(ShardedPolicy, AnExceptionEscapingFnStopsEveryShardAndIsRethrown) {
    auto policy = make_policy({.shards = 2});
    EXPECT_THROW(policy->run([&] {
        if (this_shard_id() == 1) {
            await(sleep(0.01));
            throw std::domain_error("shard 1 failed");
        }
    }),
                 std::domain_error);
}

TEST(ShardedPolicy, StatisticsCountIterationsTasksMessagesAndSleep) {
    auto policy = make_policy({.shards = 2});
    policy->run([&] {
        if (this_shard_id() == 0) {
            for (int n = 0; n < 100; ++n) {
                await(submit_to(1, [n] { return n; }));
            }
            await(sleep(0.02));
            ShardStats live = policy->stats(1);  // read from another shard
            EXPECT_EQ(live.messages_received, 100u);
            EXPECT_EQ(live.messages_sent, 100u);
            policy->stop();
        }
    });
    std::vector<ShardStats> stats = policy->stats();
    ASSERT_EQ(stats.size(), 2u);
    EXPECT_EQ(stats[0].messages_sent, 100u);
    EXPECT_EQ(stats[0].messages_received, 100u);
    EXPECT_GE(stats[0].task_steps_run, 100u);
    for (const ShardStats& shard : stats) {
        EXPECT_GT(shard.iterations, 0u);
        EXPECT_GT(shard.io_submissions, 0u);
        EXPECT_GT(shard.run_ns, 0);
        EXPECT_LE(shard.sleep_ns, shard.run_ns);
        EXPECT_EQ(shard.cpu, static_cast<int>(policy->cpus()[shard.shard]));
    }
    EXPECT_GT(stats[1].sleep_ns, 10'000'000);  // shard 1 slept through most of the 20 ms
}

// A busy shard is never woken by a system call: the sender only writes the
// eventfd of a shard that announced it sleeps. A shard that sleeps between
// messages is woken once per burst, however many messages it holds.
TEST(ShardedPolicy, ABusyShardIsNeverWokenAndASleepingOneOncePerBurst) {
    auto policy = make_policy({.shards = 2});
    std::atomic<bool> spinning{true};
    uint64_t wakeups_while_busy = 0;
    uint64_t wakeups_for_bursts = 0;
    policy->run([&] {
        if (this_shard_id() == 1) {
            // Busy: a callback that reschedules itself, so the loop never sleeps.
            struct Spinner {
                std::atomic<bool>* on;
                void operator()() const {
                    if (on->load()) {
                        get_running_loop().call_soon(*this);
                    }
                }
            };
            get_running_loop().call_soon(Spinner{&spinning});
            return;
        }
        // Once shard 1 has answered, its spinner runs (it started in the
        // same iteration as the answer).
        await(submit_to(1, [] { return 0; }));
        uint64_t before = policy->stats(1).wakeups;
        for (int n = 0; n < 100'000; ++n) {
            policy->send_to(1, [] {});
            if (n % 1000 == 999) {
                await(sleep(0));
            }
        }
        await(submit_to(1, [] { return 0; }));  // everything sent has run
        wakeups_while_busy = policy->stats(1).wakeups - before;

        await(submit_to(1, [&] { spinning = false; }));
        await(sleep(0.02));  // shard 1 has gone to sleep
        before = policy->stats(1).wakeups;
        for (int burst = 0; burst < 5; ++burst) {
            for (int n = 0; n < 1000; ++n) {
                policy->send_to(1, [] {});
            }
            await(sleep(0.02));
        }
        wakeups_for_bursts = policy->stats(1).wakeups - before;
        policy->stop();
    });
    EXPECT_EQ(wakeups_while_busy, 0u);
    EXPECT_GE(wakeups_for_bursts, 5u);
    EXPECT_LE(wakeups_for_bursts, 10u);  // one per burst (a timer may add one)
}

TEST(ShardedPolicy, BadArgumentsAreRefusedByName) {
    std::vector<unsigned> allowed = this_thread_affinity();
    try {
        make_policy({.cpus = {allowed[0], allowed[0]}});
        FAIL() << "a duplicate cpu was accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find(std::to_string(allowed[0])), std::string::npos);
    }
    EXPECT_THROW(make_policy({.cpus = {CPU_SETSIZE - 1}}), std::invalid_argument);
    EXPECT_THROW(make_policy({.shards = 2, .cpus = {allowed[0]}}), std::invalid_argument);
    EXPECT_THROW(make_policy({.queue_capacity = 0}), std::invalid_argument);
    auto policy = make_policy({.shards = 1});
    EXPECT_THROW(policy->run(nullptr), std::invalid_argument);
    policy->run([&] {
        EXPECT_THROW(submit_to(1, [] {}), std::out_of_range);
        EXPECT_THROW(policy->send_to(7, [] {}), std::out_of_range);
        EXPECT_THROW(policy->run([] {}), RuntimeError);  // already running
        EXPECT_THROW(get_event_loop_policy()->set_event_loop(nullptr), RuntimeError);
        policy->stop();
    });
    EXPECT_THROW(submit_to(0, [] {}), RuntimeError);  // not on a shard
}

TEST(ShardedPolicy, PinningCanBeTurnedOff) {
    std::vector<unsigned> before = this_thread_affinity();
    auto policy = make_policy({.shards = 3, .pin = false});
    std::vector<unsigned> seen;
    std::mutex mutex;
    std::atomic<int> done{0};
    policy->run([&] {
        {
            std::lock_guard lock(mutex);
            std::vector<unsigned> mine = this_thread_affinity();
            seen.insert(seen.end(), mine.begin(), mine.end());
        }
        if (++done == 3) {
            policy->stop();
        }
    });
    EXPECT_EQ(seen.size(), before.size() * 3);
    EXPECT_EQ(policy->stats(0).cpu, -1);
}

}  // namespace
}  // namespace shardloop
