// ThreadPoolExecutor: lazy thread start, reuse of idle workers, shutdown
// with and without wait / cancel_futures, and the destructor's join. Cases
// ported from CPython 3.13's Lib/test/test_concurrent_futures name the
// original (test_thread_pool.py, test_shutdown.py, executor.py).

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/errors.hpp"
#include "runtime/thread_pool_executor.hpp"
#include "support/gate.hpp"
#include "support/leak_check.hpp"

namespace shardloop {
namespace {

using namespace std::chrono_literals;

// Polls `condition` for up to five seconds: no test depends on timing, the
// bound only turns a hang into a failure.
template <class Condition>
bool eventually(Condition condition) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return condition();
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

using shardloop::testing::Gate;

// A move-only job that counts whether it ran or was destroyed unrun, the way
// run_in_executor's job cancels its future when dropped.
class ProbeJob {
public:
    ProbeJob(std::atomic<int>& ran, std::atomic<int>& dropped) : _ran(&ran), _dropped(&dropped) {}
    ProbeJob(ProbeJob&& other) noexcept
        : _ran(other._ran), _dropped(other._dropped), _armed(std::exchange(other._armed, false)) {}
    ProbeJob& operator=(ProbeJob&&) = delete;
    ~ProbeJob() {
        if (_armed) {
            _dropped->fetch_add(1);
        }
    }
    void operator()() {
        _armed = false;
        _ran->fetch_add(1);
    }

private:
    std::atomic<int>* _ran;
    std::atomic<int>* _dropped;
    bool _armed = true;
};

// Counts worker threads that have fully exited: a thread_local's destructor
// runs at thread exit, before join() returns.
std::atomic<int> exited_workers{0};
struct ExitRecorder {
    bool armed = false;
    ~ExitRecorder() {
        if (armed) {
            exited_workers.fetch_add(1);
        }
    }
};
thread_local ExitRecorder exit_recorder;

void record_exit_of_this_thread() { exit_recorder.armed = true; }

std::string this_thread_name() {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    return name;
}

// executor.py test_submit.
TEST(ThreadPoolExecutor, RunsSubmittedJobsOnOtherThreads) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool;
    std::atomic<bool> done{false};
    std::thread::id ran_on;
    pool.submit([&] {
        ran_on = std::this_thread::get_id();
        done = true;
    });
    ASSERT_TRUE(eventually([&] { return done.load(); }));
    EXPECT_NE(ran_on, std::this_thread::get_id());
}

// test_thread_pool.py test_saturation.
TEST(ThreadPoolExecutor, StartsThreadsLazilyUpToMaxWorkers) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(3);
    EXPECT_EQ(pool.worker_count(), 0U);

    std::atomic<bool> done{false};
    pool.submit([&] { done = true; });
    ASSERT_TRUE(eventually([&] { return done.load(); }));
    EXPECT_EQ(pool.worker_count(), 1U);

    Gate gate;
    for (int i = 0; i < 15 * 3; ++i) {
        pool.submit([&] { gate.wait(); });
    }
    EXPECT_EQ(pool.worker_count(), 3U);
    gate.open();
    pool.shutdown();
    EXPECT_EQ(pool.worker_count(), 3U);
}

// test_thread_pool.py test_idle_thread_reuse. Waiting for the worker to go
// idle removes the race that makes the CPython test flaky without the GIL.
TEST(ThreadPoolExecutor, ReusesIdleWorker) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool;
    for (int i = 0; i < 3; ++i) {
        std::atomic<bool> done{false};
        pool.submit([&] { done = true; });
        ASSERT_TRUE(eventually([&] { return done.load(); }));
        ASSERT_TRUE(eventually([&] { return pool.idle_worker_count() == 1; }));
    }
    EXPECT_EQ(pool.worker_count(), 1U);
}

TEST(ThreadPoolExecutor, SingleWorkerRunsJobsInSubmissionOrder) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(1);
    std::vector<int> order;  // touched only by the single worker until shutdown joins it
    for (int i = 0; i < 100; ++i) {
        pool.submit([&order, i] { order.push_back(i); });
    }
    pool.shutdown();
    ASSERT_EQ(order.size(), 100U);
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

// test_shutdown.py test_run_after_shutdown.
TEST(ThreadPoolExecutor, SubmitAfterShutdownThrows) {
    testing::FdLeakCheck leak_check;
    for (bool wait : {true, false}) {
        ThreadPoolExecutor pool;
        pool.shutdown(wait);
        std::atomic<int> ran{0};
        std::atomic<int> dropped{0};
        try {
            pool.submit(ProbeJob(ran, dropped));
            ADD_FAILURE() << "submit after shutdown did not throw";
        } catch (const RuntimeError& error) {
            EXPECT_STREQ(error.what(), "cannot schedule new futures after shutdown");
        }
        EXPECT_EQ(ran, 0);
        EXPECT_EQ(dropped, 1) << "the rejected job is destroyed";
        EXPECT_EQ(pool.worker_count(), 0U);
    }
}

TEST(ThreadPoolExecutor, EmptyJobRejected) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool;
    EXPECT_THROW(pool.submit(Executor::Job()), std::invalid_argument);
    EXPECT_EQ(pool.worker_count(), 0U);
}

// test_shutdown.py test_hang_issue12364 and test_shutdown_no_wait: jobs
// still queued at shutdown run, and shutdown(wait=true) returns after them.
TEST(ThreadPoolExecutor, ShutdownWaitRunsQueuedJobs) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(2);
    Gate gate;
    std::atomic<int> ran{0};
    for (int i = 0; i < 50; ++i) {
        pool.submit([&] {
            gate.wait();
            ran.fetch_add(1);
        });
    }
    pool.shutdown(/*wait=*/false);  // returns although every job is blocked or queued
    EXPECT_EQ(ran, 0);
    gate.open();
    pool.shutdown(/*wait=*/true);
    EXPECT_EQ(ran, 50);
}

// test_shutdown.py test_cancel_futures and test_cancel_futures_wait_false.
TEST(ThreadPoolExecutor, ShutdownCancelFuturesDropsQueuedJobs) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(1);
    Gate started;
    Gate release;
    std::atomic<bool> first_finished{false};
    pool.submit([&] {
        started.open();
        release.wait();
        first_finished = true;
    });
    ASSERT_TRUE(started.wait());

    std::atomic<int> ran{0};
    std::atomic<int> dropped{0};
    for (int i = 0; i < 5; ++i) {
        pool.submit(ProbeJob(ran, dropped));
    }
    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    EXPECT_EQ(dropped, 5) << "queued jobs are destroyed before shutdown returns";

    release.open();
    pool.shutdown();
    EXPECT_TRUE(first_finished) << "the running job is not interrupted";
    EXPECT_EQ(ran, 0);
    EXPECT_EQ(dropped, 5);
}

// run_in_executor's dropped job cancels a future, which runs arbitrary code;
// that code may use the pool again, so the pool's lock must not be held.
TEST(ThreadPoolExecutor, DroppedJobDestructorMayCallBackIntoPool) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(1);
    Gate started;
    Gate release;
    pool.submit([&] {
        started.open();
        release.wait();
    });
    ASSERT_TRUE(started.wait());

    struct ReentrantJob {
        ThreadPoolExecutor* pool;
        std::atomic<bool>* rejected;
        ReentrantJob(ThreadPoolExecutor& p, std::atomic<bool>& r) : pool(&p), rejected(&r) {}
        ReentrantJob(ReentrantJob&& other) noexcept
            : pool(std::exchange(other.pool, nullptr)), rejected(other.rejected) {}
        ~ReentrantJob() {
            if (pool != nullptr) {
                try {
                    pool->submit([] {});
                } catch (const RuntimeError&) {
                    *rejected = true;
                }
            }
        }
        void operator()() {}
    };
    std::atomic<bool> rejected{false};
    pool.submit(ReentrantJob(pool, rejected));
    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    EXPECT_TRUE(rejected);
    release.open();
}

TEST(ThreadPoolExecutor, ShutdownIsIdempotent) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(2);
    std::atomic<int> ran{0};
    std::atomic<int> dropped{0};
    pool.submit(ProbeJob(ran, dropped));
    pool.shutdown();
    EXPECT_EQ(ran, 1);
    const std::size_t workers = pool.worker_count();
    pool.shutdown();
    pool.shutdown(/*wait=*/false);
    pool.shutdown(/*wait=*/true, /*cancel_futures=*/true);
    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    EXPECT_EQ(pool.worker_count(), workers);
    EXPECT_EQ(dropped, 0);
}

// test_thread_pool.py test_hang_global_shutdown_lock's recursive submit,
// without the fork: a job submits another job, until shutdown makes submit
// throw inside the job, which the pool swallows.
TEST(ThreadPoolExecutor, JobMaySubmitMoreJobs) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(1);
    std::atomic<int> generations{0};
    struct Resubmit {
        ThreadPoolExecutor* pool;
        std::atomic<int>* generations;
        void operator()() const {
            generations->fetch_add(1);
            pool->submit(Resubmit{pool, generations});
        }
    };
    pool.submit(Resubmit{&pool, &generations});
    ASSERT_TRUE(eventually([&] { return generations >= 10; }));
    pool.shutdown();
    EXPECT_EQ(pool.worker_count(), 1U);
}

// executor.py test_map_exception: an exception stays with its job. Here the
// pool has no future to carry it, so it only has to survive it.
TEST(ThreadPoolExecutor, ThrowingJobDoesNotKillWorker) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(1);
    std::thread::id first;
    std::thread::id last;
    pool.submit([&] {
        first = std::this_thread::get_id();
        throw std::runtime_error("boom");
    });
    pool.submit([] { throw 42; });  // not even a std::exception
    std::atomic<bool> done{false};
    pool.submit([&] {
        last = std::this_thread::get_id();
        done = true;
    });
    ASSERT_TRUE(eventually([&] { return done.load(); }));
    pool.shutdown();
    EXPECT_EQ(first, last);
    EXPECT_EQ(pool.worker_count(), 1U);
}

// executor.py test_max_workers_negative (0 is the only invalid size_t).
TEST(ThreadPoolExecutor, ZeroMaxWorkersRejected) {
    testing::FdLeakCheck leak_check;
    try {
        ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 0});
        ADD_FAILURE() << "max_workers=0 accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_STREQ(error.what(), "max_workers must be greater than 0");
    }
    ThreadPoolExecutor positional_zero(0);  // the positional form's "use the default"
    EXPECT_EQ(positional_zero.max_workers(), ThreadPoolExecutor::default_max_workers());
    ThreadPoolExecutor explicit_bound(ThreadPoolExecutor::Options{.max_workers = 7});
    EXPECT_EQ(explicit_bound.max_workers(), 7U);
}

// test_thread_pool.py test_default_workers (os.process_cpu_count()).
TEST(ThreadPoolExecutor, DefaultMaxWorkersFollowsPython) {
    testing::FdLeakCheck leak_check;
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
    const std::size_t expected = std::min<std::size_t>(32, CPU_COUNT(&set) + 4);
    EXPECT_EQ(ThreadPoolExecutor::default_max_workers(), expected);
    EXPECT_EQ(ThreadPoolExecutor().max_workers(), expected);
    EXPECT_EQ(ThreadPoolExecutor(ThreadPoolExecutor::Options{}).max_workers(), expected);
}

// test_shutdown.py test_thread_names_assigned.
TEST(ThreadPoolExecutor, ThreadNamesCarryPrefixAndIndex) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(5, "SpecialPool");
    std::latch all_running(5);
    std::mutex mutex;
    std::set<std::string> names;
    for (int i = 0; i < 5; ++i) {
        pool.submit([&] {
            {
                std::lock_guard lock(mutex);
                names.insert(this_thread_name());
            }
            all_running.arrive_and_wait();  // five distinct threads
        });
    }
    pool.shutdown();
    EXPECT_EQ(names, (std::set<std::string>{"SpecialPool_0", "SpecialPool_1", "SpecialPool_2",
                                            "SpecialPool_3", "SpecialPool_4"}));
}

// test_shutdown.py test_thread_names_default. Linux keeps 15 bytes of a
// name; the prefix gives way so that the index survives.
TEST(ThreadPoolExecutor, DefaultThreadNameKeepsIndexWithinLinuxLimit) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(1);
    std::string name;
    pool.submit([&] { name = this_thread_name(); });
    pool.shutdown();
    EXPECT_EQ(name, "shardloop-poo_0");

    ThreadPoolExecutor empty_prefix(
        ThreadPoolExecutor::Options{.max_workers = std::nullopt, .thread_name_prefix = ""});
    empty_prefix.submit([&] { name = this_thread_name(); });
    empty_prefix.shutdown();
    EXPECT_EQ(name, "shardloop-poo_0");
}

// test_shutdown.py test_del_shutdown and test_threads_terminate.
TEST(ThreadPoolExecutor, DestructorJoins) {
    testing::FdLeakCheck leak_check;
    const int exited_before = exited_workers;
    std::atomic<int> ran{0};
    std::size_t workers = 0;
    {
        ThreadPoolExecutor pool(3);
        std::latch all_running(3);
        for (int i = 0; i < 3; ++i) {
            pool.submit([&] {
                record_exit_of_this_thread();
                all_running.arrive_and_wait();
            });
        }
        for (int i = 0; i < 20; ++i) {
            pool.submit([&] { ran.fetch_add(1); });
        }
        pool.shutdown(/*wait=*/false);
        workers = pool.worker_count();
    }
    EXPECT_EQ(workers, 3U);
    EXPECT_EQ(ran, 20) << "the destructor waits for queued jobs";
    EXPECT_EQ(exited_workers - exited_before, 3) << "every worker has exited";
}

// A job shutting its own pool down must not join itself. The CPython pool
// raises "cannot join current thread" here; this one joins the others.
TEST(ThreadPoolExecutor, ShutdownFromOwnWorkerJoinsOnlyOtherWorkers) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(2);
    Gate other_started;
    Gate release_other;
    std::atomic<bool> other_finished{false};
    pool.submit([&] {
        other_started.open();
        release_other.wait();
        other_finished = true;
    });
    ASSERT_TRUE(other_started.wait());

    std::atomic<bool> shutdown_returned{false};
    std::atomic<bool> other_finished_first{false};
    pool.submit([&] {
        release_other.open();
        pool.shutdown(/*wait=*/true);
        other_finished_first = other_finished.load();
        shutdown_returned = true;
    });
    ASSERT_TRUE(eventually([&] { return shutdown_returned.load(); }));
    EXPECT_TRUE(other_finished_first) << "the other worker was joined";
    pool.shutdown();  // joins the worker that called shutdown
    EXPECT_EQ(pool.worker_count(), 2U);
}

// Two jobs shutting their pool down at the same moment: each would join the
// other's thread if it could.
TEST(ThreadPoolExecutor, WorkersShuttingDownTogetherDoNotDeadlock) {
    testing::FdLeakCheck leak_check;
    ThreadPoolExecutor pool(2);
    std::latch both_running(2);
    std::atomic<int> returned{0};
    for (int i = 0; i < 2; ++i) {
        pool.submit([&] {
            both_running.arrive_and_wait();
            pool.shutdown(/*wait=*/true);
            returned.fetch_add(1);
        });
    }
    ASSERT_TRUE(eventually([&] { return returned == 2; }));
    pool.shutdown();
    EXPECT_EQ(pool.worker_count(), 2U);
}

// The last owner of a pool may be one of its own jobs; the jobs queued
// behind it still run and the worker exits by itself.
TEST(ThreadPoolExecutor, DestroyedByItsOwnJob) {
    testing::FdLeakCheck leak_check;
    const int exited_before = exited_workers;
    auto pool = std::make_unique<ThreadPoolExecutor>(1);
    Gate release;
    std::atomic<bool> destroyed{false};
    std::atomic<int> ran{0};
    std::atomic<int> dropped{0};
    pool->submit([&] {
        record_exit_of_this_thread();
        release.wait();
    });
    pool->submit([&] {
        pool.reset();
        destroyed = true;
    });
    pool->submit(ProbeJob(ran, dropped));
    release.open();
    ASSERT_TRUE(eventually([&] { return destroyed.load(); }));
    ASSERT_TRUE(eventually([&] { return exited_workers - exited_before == 1; }));
    EXPECT_EQ(ran, 1);
    EXPECT_EQ(dropped, 0);
}

// Many threads submitting while another shuts down with cancel_futures:
// every accepted job either runs or is destroyed unrun, exactly once.
TEST(ThreadPoolExecutor, EveryAcceptedJobRunsOrIsDropped) {
    testing::FdLeakCheck leak_check;
    for (bool cancel : {false, true}) {
        ThreadPoolExecutor pool(4);
        std::atomic<int> ran{0};
        std::atomic<int> dropped{0};
        std::atomic<int> accepted{0};
        std::atomic<int> rejected{0};
        std::latch start(5);
        std::vector<std::thread> submitters;
        submitters.reserve(4);
        for (int t = 0; t < 4; ++t) {
            submitters.emplace_back([&] {
                start.arrive_and_wait();
                for (int i = 0; i < 2000; ++i) {
                    try {
                        pool.submit(ProbeJob(ran, dropped));
                        accepted.fetch_add(1);
                    } catch (const RuntimeError&) {
                        rejected.fetch_add(1);
                    }
                }
            });
        }
        start.arrive_and_wait();
        while (accepted < 1000) {
            std::this_thread::yield();
        }
        pool.shutdown(/*wait=*/true, cancel);
        const int ran_at_shutdown = ran;
        for (std::thread& submitter : submitters) {
            submitter.join();
        }
        EXPECT_EQ(accepted + rejected, 8000);
        EXPECT_EQ(ran_at_shutdown, ran) << "nothing runs after shutdown(wait=true) returns";
        // A rejected job is destroyed unrun too.
        EXPECT_EQ(ran + dropped, accepted + rejected);
        if (!cancel) {
            EXPECT_EQ(ran, accepted);
        }
    }
}

}  // namespace
}  // namespace shardloop
