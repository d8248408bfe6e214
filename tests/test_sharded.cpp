// Sharded<T>: one instance per shard, built, used, stopped and destroyed on
// its own shard; invoke_on, invoke_on_all, map_reduce; a constructor that
// fails on one shard; a stop() that awaits.

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "policy/sharded.hpp"
#include "runtime/sleep.hpp"

namespace shardloop {
namespace {

// Records on which thread each step of its life ran.
struct Journal {
    std::mutex mutex;
    std::vector<std::string> lines;
    void add(std::string line) {
        std::lock_guard lock(mutex);
        lines.push_back(std::move(line));
    }
    std::size_t count(const std::string& line) {
        std::lock_guard lock(mutex);
        return static_cast<std::size_t>(std::count(lines.begin(), lines.end(), line));
    }
};

class Counter {
public:
    Counter(int start, Journal* journal)
        : _value(start + static_cast<int>(this_shard_id())),
          _journal(journal),
          _home(std::this_thread::get_id()) {
        _journal->add("built " + std::to_string(this_shard_id()));
    }
    ~Counter() {
        EXPECT_EQ(std::this_thread::get_id(), _home);
        _journal->add("destroyed " + std::to_string(this_shard_id()));
    }
    Future<void> stop() {
        EXPECT_EQ(std::this_thread::get_id(), _home);
        // An asynchronous stop: the instance goes only once this is done.
        return get_running_loop().create_task([this] {
            await(sleep(0.005));
            _journal->add("stopped " + std::to_string(this_shard_id()));
        });
    }
    void add(int amount) { _value += amount; }
    int value() const { return _value; }

private:
    int _value;
    Journal* _journal;
    std::thread::id _home;
};

std::shared_ptr<ShardedPolicy> two_shards() {
    return std::make_shared<ShardedPolicy>(ShardedPolicyOptions{.shards = 2});
}

TEST(Sharded, LifecycleRunsEveryStepOnTheInstancesOwnShard) {
    auto policy = two_shards();
    Journal journal;
    Sharded<Counter> counters;
    std::atomic<int> total{0};
    std::atomic<int> on_one{0};
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        EXPECT_FALSE(counters.started());
        EXPECT_THROW(counters.local(), RuntimeError);
        await(counters.start(100, &journal));
        EXPECT_TRUE(counters.started());
        EXPECT_THROW(counters.start(1, &journal), RuntimeError);
        EXPECT_EQ(counters.local().value(), 100);
        await(counters.invoke_on_all([](Counter& counter) { counter.add(10); }));
        on_one = await(counters.invoke_on(1, [](Counter& counter) { return counter.value(); }));
        total = await(counters.map_reduce([](Counter& counter) { return counter.value(); }, 0,
                                          std::plus<>()));
        await(counters.stop());
        EXPECT_FALSE(counters.started());
        await(counters.stop());  // a second stop does nothing
        policy->stop();
    });
    EXPECT_EQ(on_one.load(), 111);
    EXPECT_EQ(total.load(), 110 + 111);
    for (int shard = 0; shard < 2; ++shard) {
        std::string id = std::to_string(shard);
        EXPECT_EQ(journal.count("built " + id), 1u);
        EXPECT_EQ(journal.count("stopped " + id), 1u);
        EXPECT_EQ(journal.count("destroyed " + id), 1u);
    }
    // Each instance was stopped before any was destroyed.
    auto first_destroyed = std::find_if(journal.lines.begin(), journal.lines.end(),
                                        [](const std::string& line) { return line[0] == 'd'; });
    EXPECT_EQ(std::count_if(journal.lines.begin(), first_destroyed,
                            [](const std::string& line) { return line[0] == 's'; }),
              2);
}

TEST(Sharded, AServiceLeftStartedIsDestroyedOnItsShardsWhenTheyStop) {
    auto policy = two_shards();
    Journal journal;
    Sharded<Counter> counters;
    policy->run([&] {
        if (this_shard_id() == 0) {
            await(counters.start(1, &journal));
            policy->stop();
        }
    });
    EXPECT_FALSE(counters.started());
    EXPECT_EQ(journal.count("destroyed 0"), 1u);  // ~Counter checks its thread
    EXPECT_EQ(journal.count("destroyed 1"), 1u);
    EXPECT_EQ(journal.count("stopped 0"), 0u);  // stop() is for an orderly stop only

    // The service can start again in a later run.
    policy->run([&] {
        if (this_shard_id() == 1) {
            await(counters.start(2, &journal));
            await(counters.stop());
            policy->stop();
        }
    });
    EXPECT_EQ(journal.count("destroyed 1"), 2u);
    EXPECT_EQ(journal.count("stopped 1"), 1u);
}

struct FailsOnShardOne {
    explicit FailsOnShardOne(std::atomic<int>* alive) : _alive(alive) {
        if (this_shard_id() == 1) {
            throw std::runtime_error("shard 1 cannot start");
        }
        ++*_alive;
    }
    ~FailsOnShardOne() { --*_alive; }
    std::atomic<int>* _alive;
};

TEST(Sharded, AConstructorThatThrowsUndoesTheStart) {
    auto policy = two_shards();
    std::atomic<int> alive{0};
    std::atomic<bool> failed{false};
    Sharded<FailsOnShardOne> service;
    policy->run([&] {
        if (this_shard_id() != 1) {
            return;
        }
        try {
            await(service.start(&alive));
        } catch (const std::runtime_error& error) {
            failed = std::string(error.what()) == "shard 1 cannot start";
        }
        EXPECT_FALSE(service.started());
        EXPECT_EQ(alive.load(), 0);  // shard 0's instance was destroyed again
        policy->stop();
    });
    EXPECT_TRUE(failed.load());
    EXPECT_EQ(alive.load(), 0);
}

TEST(Sharded, ServicesWithoutStopAndCallsOffAShard) {
    auto policy = two_shards();
    Sharded<std::vector<int>> lists;
    std::atomic<std::size_t> sizes{0};
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        await(lists.start(std::size_t{3}, 7));  // std::vector<int>(3, 7) on each shard
        sizes = await(lists.map_reduce([](std::vector<int>& list) { return list.size(); },
                                       std::size_t{0}, std::plus<>()));
        await(lists.stop());
        policy->stop();
    });
    EXPECT_EQ(sizes.load(), 6u);
    EXPECT_THROW(lists.local(), RuntimeError);  // not on a shard
}

}  // namespace
}  // namespace shardloop
