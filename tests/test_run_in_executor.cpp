// run_in_executor, the default executor and its shutdown
// (runtime/loop_executor.cpp, the template in runtime/event_loop.hpp), with
// real worker threads. Cases ported from CPython 3.13's
// Lib/test/test_asyncio/test_events.py and test_base_events.py name the
// original. Nothing here depends on timing: waits have generous bounds that
// only turn a hang into a failure.

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "shardloop.hpp"
#include "support/gate.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using namespace std::chrono_literals;
using shardloop::testing::LoopTest;

using shardloop::testing::Gate;

// Polls `condition` for up to ten seconds; only a hang turns into a failure.
template <class Condition>
bool eventually(Condition condition) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return condition();
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

std::string current_thread_name() {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    return name;
}

// An executor that runs its jobs on a ThreadPoolExecutor of its own and
// records how it is used: lets a test see that the loop chose it.
class RecordingExecutor final : public Executor {
public:
    explicit RecordingExecutor(std::string thread_name_prefix)
        : _pool(ThreadPoolExecutor::Options{.max_workers = 2,
                                            .thread_name_prefix = std::move(thread_name_prefix)}) {}

    void submit(Job job) override {
        submits.fetch_add(1);
        _pool.submit(std::move(job));
    }
    void shutdown(bool wait, bool cancel_futures) override {
        shutdowns.fetch_add(1);
        last_shutdown_waited.store(wait);
        _pool.shutdown(wait, cancel_futures);
    }

    std::atomic<int> submits{0};
    std::atomic<int> shutdowns{0};
    std::atomic<bool> last_shutdown_waited{false};

private:
    ThreadPoolExecutor _pool;
};

class RunInExecutorTest : public LoopTest {
protected:
    // Runs exactly one iteration of the loop.
    void run_once() {
        loop->stop();
        loop->run_forever();
    }
};

// Ports test_events.EventLoopTestsMixin.test_run_in_executor: the default
// executor runs the function on another thread and the future gets its value.
TEST_F(RunInExecutorTest, DefaultExecutorReturnsValueComputedOnAnotherThread) {
    const std::thread::id loop_thread = std::this_thread::get_id();
    auto future = loop->run_in_executor(
        nullptr, [] { return std::make_pair(std::string("yo"), std::this_thread::get_id()); });

    auto [value, worker] = loop->run_until_complete(future);

    EXPECT_EQ(value, "yo");
    EXPECT_NE(worker, loop_thread);
}

// The default executor is a ThreadPoolExecutor whose threads the loop names.
TEST_F(RunInExecutorTest, DefaultExecutorIsCreatedOnFirstUseAndNamesItsThreads) {
    auto name = loop->run_until_complete(loop->run_in_executor(nullptr, current_thread_name));
    EXPECT_EQ(name.rfind("shardloop-exe", 0), 0U) << name;
}

// An exception thrown by the function reaches the future and, through
// run_until_complete, the caller.
TEST_F(RunInExecutorTest, ExceptionThrownByFunctionPropagatesToFuture) {
    auto future = loop->run_in_executor(nullptr, []() -> int { throw std::out_of_range("nope"); });

    EXPECT_THROW(loop->run_until_complete(future), std::out_of_range);
    ASSERT_TRUE(future.done());
    EXPECT_FALSE(future.cancelled());
    ASSERT_TRUE(future.exception());
    try {
        std::rethrow_exception(future.exception());
    } catch (const std::out_of_range& e) {
        EXPECT_STREQ(e.what(), "nope");
    }
}

// A void function gives a Future<void> that completes once it has run.
TEST_F(RunInExecutorTest, VoidFunctionCompletesFuture) {
    std::atomic<bool> ran{false};
    Future<void> future = loop->run_in_executor(nullptr, [&ran] { ran.store(true); });

    loop->run_until_complete(future);

    EXPECT_TRUE(ran.load());
    EXPECT_TRUE(future.done());
}

// run_in_executor with an explicit executor runs the function on that
// executor's threads, not on the default executor.
TEST_F(RunInExecutorTest, ExplicitThreadPoolExecutorRunsTheFunction) {
    ThreadPoolExecutor pool(
        ThreadPoolExecutor::Options{.max_workers = 2, .thread_name_prefix = "explicit"});
    const std::thread::id loop_thread = std::this_thread::get_id();

    auto future = loop->run_in_executor(
        &pool, [] { return std::make_pair(current_thread_name(), std::this_thread::get_id()); });
    auto [name, worker] = loop->run_until_complete(future);

    EXPECT_EQ(name, "explicit_0");
    EXPECT_NE(worker, loop_thread);
    EXPECT_EQ(pool.worker_count(), 1U);
}

// Ports test_events.test_run_in_executor_cancel and concurrent.futures'
// Future.cancel on a pending job: the single worker is busy, the second job
// waits in the queue; its future is cancelled, and once the loop has seen
// the cancellation (asyncio propagates it through a done callback) the job
// never runs, even after the worker is free again.
TEST_F(RunInExecutorTest, CancelledFutureKeepsQueuedJobFromRunning) {
    ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 1});
    Gate gate;
    std::atomic<bool> first_started{false};
    std::atomic<bool> second_ran{false};
    auto first = loop->run_in_executor(&pool, [&gate, &first_started] {
        first_started.store(true);
        return gate.wait();
    });
    auto second = loop->run_in_executor(&pool, [&second_ran] { second_ran.store(true); });
    ASSERT_TRUE(eventually([&] { return first_started.load(); }));  // the worker is busy

    EXPECT_TRUE(second.cancel());
    run_once();  // the future's done callbacks run
    gate.open();
    pool.shutdown(/*wait=*/true);  // every accepted job has been taken by the worker

    EXPECT_FALSE(second_ran.load());
    EXPECT_TRUE(loop->run_until_complete(first));
    EXPECT_TRUE(second.cancelled());
    run_once();  // the skipped job's late delivery finds the future done
    EXPECT_TRUE(second.cancelled());
}

// The header's contract, stronger than asyncio's: "Cancelling the future
// before fn starts keeps it from running" -- even when the worker takes the
// job before the loop has run another iteration.
TEST_F(RunInExecutorTest, CancelledFutureKeepsQueuedJobFromRunningWithoutLoopIteration) {
    ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 1});
    Gate gate;
    std::atomic<bool> first_started{false};
    std::atomic<bool> second_ran{false};
    auto first = loop->run_in_executor(&pool, [&gate, &first_started] {
        first_started.store(true);
        return gate.wait();
    });
    auto second = loop->run_in_executor(&pool, [&second_ran] { second_ran.store(true); });
    ASSERT_TRUE(eventually([&] { return first_started.load(); }));  // the worker is busy

    EXPECT_TRUE(second.cancel());
    gate.open();
    pool.shutdown(/*wait=*/true);

    EXPECT_FALSE(second_ran.load()) << "a job whose future was cancelled before it started ran";
    EXPECT_TRUE(loop->run_until_complete(first));
    EXPECT_TRUE(second.cancelled());
}

// Ports test_events.test_run_in_executor_cancel's ending: a cancelled job,
// then shutdown_default_executor and close; nothing is delivered to the
// closed loop afterwards.
TEST_F(RunInExecutorTest, CancelledJobThenShutdownDefaultExecutorAndClose) {
    std::atomic<bool> ran{false};
    auto future = loop->run_in_executor(nullptr, [&ran] {
        std::this_thread::sleep_for(5ms);
        ran.store(true);
    });
    future.cancel();

    loop->run_until_complete(loop->shutdown_default_executor());
    loop->close();

    EXPECT_TRUE(future.cancelled());
}

// Ports the behaviour test_base_events' shutdown tests and asyncio.run rely
// on: shutdown_default_executor waits for the jobs already accepted, and
// afterwards run_in_executor(nullptr, ...) throws RuntimeError("Executor
// shutdown has been called").
TEST_F(RunInExecutorTest, ShutdownDefaultExecutorCompletesAndRefusesNewJobs) {
    std::atomic<bool> ran{false};
    auto job = loop->run_in_executor(nullptr, [&ran] {
        std::this_thread::sleep_for(10ms);
        ran.store(true);
        return 42;
    });

    loop->run_until_complete(loop->shutdown_default_executor());

    EXPECT_TRUE(ran.load()) << "shutdown returned before an accepted job had run";
    EXPECT_EQ(loop->run_until_complete(job), 42);
    try {
        loop->run_in_executor(nullptr, [] { return 1; });
        ADD_FAILURE() << "run_in_executor(nullptr) after shutdown_default_executor did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Executor shutdown has been called");
    }
    EXPECT_FALSE(log_capture.contains(LogLevel::warning, "did not"));
}

// shutdown_default_executor before the default executor was ever created
// completes at once, and still refuses later jobs.
TEST_F(RunInExecutorTest, ShutdownDefaultExecutorNeverCreatedCompletesAndRefusesNewJobs) {
    Future<void> done = loop->shutdown_default_executor();
    loop->run_until_complete(done);

    EXPECT_THROW(loop->run_in_executor(nullptr, [] {}), RuntimeError);
}

// asyncio checks the shutdown only for the default executor: an explicit
// executor still works after shutdown_default_executor.
TEST_F(RunInExecutorTest, ExplicitExecutorStillWorksAfterShutdownDefaultExecutor) {
    ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 1});
    loop->run_until_complete(loop->shutdown_default_executor());

    EXPECT_EQ(loop->run_until_complete(loop->run_in_executor(&pool, [] { return 7; })), 7);
}

// Ports test_base_events.test_shutdown_default_executor_timeout: while a job
// still blocks the default executor, the future completes after the timeout
// and a warning says the executor did not finish joining its threads.
TEST_F(RunInExecutorTest, ShutdownDefaultExecutorTimeoutWarnsAndCompletesWhileJobBlocks) {
    Gate gate;
    auto blocked = loop->run_in_executor(nullptr, [&gate] { return gate.wait(); });
    const double start = loop->time();

    loop->run_until_complete(loop->shutdown_default_executor(0.05));

    EXPECT_GE(loop->time() - start, 0.049);
    EXPECT_TRUE(log_capture.contains(LogLevel::warning, "did not"));
    EXPECT_TRUE(log_capture.contains(LogLevel::warning,
                                     "The executor did not finishing joining its threads"));
    EXPECT_FALSE(blocked.done());

    gate.open();  // the job ends and the shutdown thread joins the worker
    run_until([&] { return blocked.done(); }, 10.0);
    EXPECT_TRUE(blocked.result());
}

// With a timeout that the join beats, shutdown_default_executor completes
// without a warning.
TEST_F(RunInExecutorTest, ShutdownDefaultExecutorWithinTimeoutDoesNotWarn) {
    loop->run_until_complete(loop->run_in_executor(nullptr, [] { return 1; }));

    loop->run_until_complete(loop->shutdown_default_executor(30.0));

    EXPECT_FALSE(log_capture.contains(LogLevel::warning, "did not"));
}

// Ports test_base_events.test_set_default_executor: the executor given
// replaces the default one for run_in_executor(nullptr, ...), and is the
// one shutdown_default_executor shuts down.
TEST_F(RunInExecutorTest, SetDefaultExecutorReplacesTheDefault) {
    auto executor = std::make_shared<RecordingExecutor>("custom");
    loop->set_default_executor(executor);

    auto name = loop->run_until_complete(loop->run_in_executor(nullptr, current_thread_name));

    EXPECT_EQ(name, "custom_0");
    EXPECT_EQ(executor->submits.load(), 1);

    loop->run_until_complete(loop->shutdown_default_executor());
    EXPECT_EQ(executor->shutdowns.load(), 1);
    EXPECT_TRUE(executor->last_shutdown_waited.load());
}

// Replacing a default executor that was already in use: later jobs go to
// the new one.
TEST_F(RunInExecutorTest, SetDefaultExecutorAfterFirstUseRedirectsLaterJobs) {
    auto before = loop->run_until_complete(loop->run_in_executor(nullptr, current_thread_name));
    auto executor = std::make_shared<RecordingExecutor>("second");
    loop->set_default_executor(executor);

    auto after = loop->run_until_complete(loop->run_in_executor(nullptr, current_thread_name));

    EXPECT_EQ(before.rfind("shardloop-exe", 0), 0U) << before;
    EXPECT_EQ(after, "second_0");
    EXPECT_EQ(executor->submits.load(), 1);
}

// concurrent.futures' shutdown(cancel_futures=True), ported from
// test_concurrent_futures/test_shutdown.py test_cancel_futures: the jobs not
// yet started are dropped, and the loop future of each becomes cancelled.
TEST_F(RunInExecutorTest, ExecutorShutdownWithCancelFuturesCancelsPendingJobsFutures) {
    ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 1});
    Gate gate;
    std::atomic<bool> first_started{false};
    std::atomic<int> later_ran{0};
    auto first = loop->run_in_executor(&pool, [&gate, &first_started] {
        first_started.store(true);
        return gate.wait();
    });
    auto second = loop->run_in_executor(&pool, [&later_ran] { later_ran.fetch_add(1); });
    auto third = loop->run_in_executor(&pool, [&later_ran] {
        later_ran.fetch_add(1);
        return 3;
    });
    // Only jobs not yet started are dropped: the first one must be running.
    ASSERT_TRUE(eventually([&] { return first_started.load(); }));

    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    gate.open();
    run_until([&] { return first.done() && second.done() && third.done(); }, 10.0);

    EXPECT_TRUE(first.result());
    EXPECT_TRUE(second.cancelled());
    EXPECT_TRUE(third.cancelled());
    pool.shutdown(/*wait=*/true);
    EXPECT_EQ(later_ran.load(), 0);
}

// submit() on an executor that was shut down throws, and run_in_executor
// lets that through.
TEST_F(RunInExecutorTest, RunInExecutorOnShutDownExecutorThrows) {
    ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 1});
    pool.shutdown();

    EXPECT_THROW(loop->run_in_executor(&pool, [] { return 1; }), RuntimeError);
    run_once();  // whatever the refused job left behind is delivered and dropped
}

// close() shuts the default executor down: a ThreadPoolExecutor installed as
// the default refuses new jobs afterwards, and run_in_executor on the closed
// loop throws RuntimeError("Event loop is closed").
TEST_F(RunInExecutorTest, CloseShutsDefaultExecutorDown) {
    auto pool = std::make_shared<ThreadPoolExecutor>(ThreadPoolExecutor::Options{.max_workers = 1});
    loop->set_default_executor(pool);
    EXPECT_EQ(loop->run_until_complete(loop->run_in_executor(nullptr, [] { return 5; })), 5);

    loop->close();

    EXPECT_THROW(pool->submit([] {}), RuntimeError);
    try {
        loop->run_in_executor(nullptr, [] { return 1; });
        ADD_FAILURE() << "run_in_executor on a closed loop did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop is closed");
    }
}

// close() asks the default executor to shut down without waiting for it
// (asyncio's close() calls executor.shutdown(wait=False)).
TEST_F(RunInExecutorTest, CloseShutsDefaultExecutorDownWithoutWaiting) {
    auto executor = std::make_shared<RecordingExecutor>("closing");
    loop->set_default_executor(executor);

    loop->close();

    EXPECT_EQ(executor->shutdowns.load(), 1);
    EXPECT_FALSE(executor->last_shutdown_waited.load());
}

}  // namespace
}  // namespace shardloop
