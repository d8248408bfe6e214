// The task helpers: sleep() and yield_now() (runtime/sleep.hpp), wait_for()
// (runtime/wait_for.hpp) and gather() (runtime/gather.hpp). Ported from
// CPython's test_asyncio/test_tasks.py (sleep cases, GatherTests) and
// test_waitfor.py where noted. Timing checks are lower bounds only.

#include <gtest/gtest.h>

#include <cmath>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

class TaskHelpersTest : public testing::LoopTest {};

// A failure raised by a test body (asyncio tests' FooException).
struct FooError : std::runtime_error {
    FooError() : std::runtime_error("FooException") {}
};

// ---- sleep ----

// Ports test_tasks BaseTaskTests.test_sleep (lower bound only).
TEST_F(TaskHelpersTest, SleepNeverReturnsEarly) {
    for (double delay : {0.0, 0.001, 0.02, 0.05}) {
        auto task = loop->create_task([this, delay] {
            double before = loop->time();
            await(sleep(delay));
            double after = loop->time();
            return after - before;
        });
        double slept = loop->run_until_complete(task);
        EXPECT_GE(slept, delay) << "sleep(" << delay << ") returned early";
    }
}

// Ports test_tasks BaseTaskTests.test_sleep: two half sleeps add up.
TEST_F(TaskHelpersTest, ConsecutiveSleepsAddUp) {
    double start = loop->time();
    loop->run_until_complete([] {
        await(sleep(0.05));
        await(sleep(0.05));
    });
    EXPECT_GE(loop->time() - start, 0.1);
}

// Ports test_tasks BaseTaskTests.test_sleep_when_delay_is_nan.
TEST_F(TaskHelpersTest, SleepWithNanDelayThrowsInvalidArgument) {
    auto task = loop->create_task([] { await(sleep(std::numeric_limits<double>::quiet_NaN())); });
    EXPECT_THROW(loop->run_until_complete(task), std::invalid_argument);
}

TEST_F(TaskHelpersTest, SleepWithoutARunningLoopThrowsRuntimeError) {
    EXPECT_THROW(sleep(0.1), RuntimeError);
}

// Ports test_tasks BaseTaskTests.test_sleep_cancel: cancelling the task
// cancels its sleep (and the sleep's timer) at once.
TEST_F(TaskHelpersTest, SleepIsCancelledByTaskCancel) {
    Future<void> slept;
    bool sleeping = false;
    auto task = loop->create_task([&] {
        slept = sleep(10.0);
        sleeping = true;
        await(slept);
    });
    run_until([&] { return sleeping; });
    double start = loop->time();
    EXPECT_FALSE(slept.done());
    EXPECT_TRUE(task.cancel());
    EXPECT_TRUE(slept.cancelled()) << "the task's cancel goes to the sleep it awaits";
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_LT(loop->time() - start, 9.0) << "the task waited for the sleep's deadline";
    EXPECT_TRUE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_task_cancel_sleeping_task.
TEST_F(TaskHelpersTest, CancellingASleepingTaskFromATimerWakesItsAwaiter) {
    double start = loop->time();
    std::string outcome = loop->run_until_complete([this] {
        auto sleeper = loop->create_task([] { await(sleep(5000)); });
        loop->call_later(0.1, [sleeper]() mutable { sleeper.cancel(); });
        try {
            await(sleeper);
        } catch (const CancelledError&) {
            return std::string("cancelled");
        }
        return std::string("slept in");
    });
    EXPECT_EQ(outcome, "cancelled");
    EXPECT_GE(loop->time() - start, 0.1);
}

// ---- yield_now ----

// Ports test_tasks SleepTests.test_sleep_zero in spirit: giving the loop
// back lets the callbacks already scheduled run first.
TEST_F(TaskHelpersTest, YieldNowLetsOtherReadyCallbacksRun) {
    std::vector<std::string> steps;
    loop->run_until_complete([&] {
        loop->call_soon([&] { steps.push_back("callback"); });
        steps.push_back("before yield");
        yield_now();
        steps.push_back("after yield");
    });
    EXPECT_EQ(steps, (std::vector<std::string>{"before yield", "callback", "after yield"}));
}

TEST_F(TaskHelpersTest, YieldNowInterleavesTasksRoundRobin) {
    std::vector<std::string> steps;
    auto make = [&](std::string name) {
        return [&steps, name] {
            for (int i = 1; i <= 3; ++i) {
                steps.push_back(name + std::to_string(i));
                yield_now();
            }
        };
    };
    auto a = loop->create_task(make("a"));
    auto b = loop->create_task(make("b"));
    loop->run_until_complete(a);
    loop->run_until_complete(b);
    EXPECT_EQ(steps, (std::vector<std::string>{"a1", "b1", "a2", "b2", "a3", "b3"}));
}

TEST_F(TaskHelpersTest, YieldNowOutsideATaskThrowsRuntimeError) {
    EXPECT_THROW(yield_now(), RuntimeError);
}

TEST_F(TaskHelpersTest, YieldNowInACancelledTaskThrowsCancelledError) {
    Task<int> task;
    bool after_yield = false;
    task = loop->create_task([&] {
        task.cancel("stop yielding");
        yield_now();
        after_yield = true;
        return 1;
    });
    try {
        loop->run_until_complete(task);
        ADD_FAILURE() << "the task must be cancelled";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "stop yielding");
    }
    EXPECT_FALSE(after_yield);
}

// ---- wait_for ----

// Ports test_waitfor AsyncioWaitForTest.test_wait_for_blocking and
// test_wait_for_race_condition.
TEST_F(TaskHelpersTest, WaitForReturnsTheResultWhenItComesBeforeTheTimeout) {
    std::string result = loop->run_until_complete([this] {
        Future<std::string> fut = loop->create_future<std::string>();
        Future<std::string> waiting = wait_for(fut, 0.2);
        loop->call_soon([fut]() mutable { fut.set_result("ok"); });
        return await(waiting);
    });
    EXPECT_EQ(result, "ok");

    std::string no_timeout = loop->run_until_complete([this] {
        auto task = loop->create_task([] { return std::string("done"); });
        return await(wait_for(task, std::nullopt));
    });
    EXPECT_EQ(no_timeout, "done");
}

// Ports test_waitfor AsyncioWaitForTest.test_wait_for.
TEST_F(TaskHelpersTest, WaitForTimeoutThrowsTimeoutErrorAndCancelsTheInnerTask) {
    bool foo_running = false;
    double start = loop->time();
    loop->run_until_complete([&] {
        auto fut = loop->create_task([&] {
            foo_running = true;
            struct Finally {
                bool& flag;
                ~Finally() { flag = false; }
            } finally{foo_running};
            await(sleep(60));
            return std::string("done");
        });
        EXPECT_THROW(await(wait_for(fut, 0.1)), TimeoutError);
        EXPECT_TRUE(fut.done());
        EXPECT_TRUE(fut.cancelled()) << "the timeout cancels the inner task";
        EXPECT_FALSE(foo_running);
    });
    EXPECT_GE(loop->time() - start, 0.1);
}

// Ports test_waitfor AsyncioWaitForTest.test_wait_for_timeout_less_then_0_or_0_future_done.
TEST_F(TaskHelpersTest, WaitForWithZeroOrNegativeTimeoutOnADoneFutureReturnsItsResult) {
    for (double timeout : {0.0, -1.0}) {
        std::string result = loop->run_until_complete([this, timeout] {
            Future<std::string> fut = loop->create_future<std::string>();
            fut.set_result("done");
            std::string r = await(wait_for(fut, timeout));
            EXPECT_TRUE(fut.done());
            EXPECT_FALSE(fut.cancelled());
            return r;
        });
        EXPECT_EQ(result, "done") << "timeout " << timeout;
    }
}

// Ports test_waitfor AsyncioWaitForTest.test_wait_for_timeout_less_then_0_or_0.
TEST_F(TaskHelpersTest, WaitForWithZeroOrNegativeTimeoutOnAPendingTaskTimesOut) {
    for (double timeout : {0.0, -1.0}) {
        loop->run_until_complete([this, timeout] {
            bool foo_running = false;
            Future<void> started = loop->create_future<void>();
            auto fut = loop->create_task([&foo_running, started]() mutable {
                foo_running = true;
                started.set_result();
                struct Finally {
                    bool& flag;
                    ~Finally() { flag = false; }
                } finally{foo_running};
                await(sleep(10));
                return std::string("done");
            });
            await(started);
            EXPECT_THROW(await(wait_for(fut, timeout)), TimeoutError) << "timeout " << timeout;
            EXPECT_TRUE(fut.done());
            EXPECT_TRUE(fut.cancelled());
            EXPECT_FALSE(foo_running);
        });
    }
}

// Ports test_waitfor AsyncioWaitForTest.test_cancel_blocking_wait_for and
// test_cancel_wait_for (Python issue #23219).
TEST_F(TaskHelpersTest, CancellingTheWaitForFutureCancelsTheInnerTask) {
    for (std::optional<double> timeout : {std::optional<double>(), std::optional<double>(60.0)}) {
        loop->run_until_complete([this, timeout] {
            auto task = loop->create_task([this] {
                Future<void> never = loop->create_future<void>();
                await(never);
            });
            auto wait = loop->create_task([task, timeout] { await(wait_for(task, timeout)); });
            loop->call_soon([wait]() mutable { wait.cancel(); });
            EXPECT_THROW(await(wait), CancelledError);
            for (int i = 0; i < 10 && !task.done(); ++i) {
                yield_now();
            }
            EXPECT_TRUE(task.cancelled()) << "cancelling the wait must also cancel the task";
            if (!task.done()) {
                task.cancel();
                yield_now();
            }
        });
    }
}

TEST_F(TaskHelpersTest, CancellingTheReturnedFutureCancelsTheInnerFuture) {
    loop->run_until_complete([this] {
        Future<int> inner = loop->create_future<int>();
        Future<int> outer = wait_for(inner, 60.0);
        EXPECT_TRUE(outer.cancel("stop"));
        yield_now();
        EXPECT_TRUE(inner.cancelled());
    });
}

// Ports test_waitfor AsyncioWaitForTest.test_wait_for_waits_for_task_cancellation.
TEST_F(TaskHelpersTest, WaitForWaitsForTheInnerTaskToFinishCancelling) {
    bool task_done = false;
    loop->run_until_complete([&] {
        auto inner = loop->create_task([&task_done] {
            struct Finally {
                bool& flag;
                ~Finally() { flag = true; }
            } finally{task_done};
            try {
                await(sleep(10));
            } catch (const CancelledError&) {
                await(sleep(0.0001));
                throw;
            }
        });
        EXPECT_THROW(await(wait_for(inner, 0.0001)), TimeoutError);
        EXPECT_TRUE(task_done) << "TimeoutError came before the inner task finished";
    });
}

// Ports test_waitfor AsyncioWaitForTest.test_wait_for_reraises_exception_during_cancellation.
TEST_F(TaskHelpersTest, WaitForReraisesAnExceptionRaisedDuringCancellation) {
    auto outer = loop->create_task([this] {
        auto inner = loop->create_task([] {
            try {
                await(sleep(0.2));
            } catch (...) {
                throw FooError();
            }
            throw FooError();
        });
        await(wait_for(inner, 0.0001));
    });
    EXPECT_THROW(loop->run_until_complete(outer), FooError);
}

// Ports test_waitfor AsyncioWaitForTest.test_wait_for_cancel_suppressed (GH-86296)
// and test_wait_for_cancellation_race_condition.
TEST_F(TaskHelpersTest, WaitForReturnsTheValueOfAnInnerTaskThatSuppressesCancellation) {
    int result = loop->run_until_complete([this] {
        auto return_42 = loop->create_task([] {
            try {
                await(sleep(10));
            } catch (const CancelledError&) {
                return 42;
            }
            return 0;
        });
        return await(wait_for(return_42, 0.1));
    });
    EXPECT_EQ(result, 42);
}

// Ports test_waitfor AsyncioWaitForTest.test_asyncio_wait_for_timeout: an
// inner task that ignores cancellation runs to its end before wait_for
// finishes (asyncio may then return or raise TimeoutError).
TEST_F(TaskHelpersTest, WaitForDoesNotAbandonAnInnerTaskThatIgnoresCancellation) {
    constexpr double task_timeout = 0.2;
    bool exited = false;
    loop->run_until_complete([&] {
        auto slow = loop->create_task([this, &exited] {
            double exit_at = loop->time() + task_timeout;
            while (true) {
                double to_sleep = exit_at - loop->time();
                if (to_sleep <= 0) {
                    break;
                }
                try {
                    await(sleep(to_sleep));
                } catch (const CancelledError&) {
                }
            }
            exited = true;
        });
        try {
            await(wait_for(slow, task_timeout / 2));
        } catch (const TimeoutError&) {
        }
        EXPECT_TRUE(exited);
    });
}

TEST_F(TaskHelpersTest, WaitForPropagatesTheInnerException) {
    auto outer = loop->create_task([this] {
        Future<int> inner = loop->create_future<int>();
        loop->call_soon([inner]() mutable { inner.set_exception(FooError()); });
        return await(wait_for(inner, 10.0));
    });
    EXPECT_THROW(loop->run_until_complete(outer), FooError);
}

TEST_F(TaskHelpersTest, WaitForOfAVoidFuture) {
    loop->run_until_complete([this] {
        Future<void> inner = loop->create_future<void>();
        loop->call_soon([inner]() mutable { inner.set_result(); });
        await(wait_for(inner, 10.0));
        EXPECT_TRUE(inner.done());
    });
}

// ---- gather ----

// Ports test_tasks GatherTestsBase.test_success (FutureGatherTests).
TEST_F(TaskHelpersTest, GatherGivesResultsInTheOrderOfTheChildren) {
    Future<int> a = loop->create_future<int>();
    Future<int> b = loop->create_future<int>();
    Future<int> c = loop->create_future<int>();
    Future<std::vector<int>> fut = gather(std::vector<Future<int>>{a, b, c}, *loop);
    int calls = 0;
    fut.add_done_callback([&](const Future<std::vector<int>>&) { ++calls; });
    b.set_result(1);
    a.set_result(2);
    run_briefly();
    run_briefly();
    EXPECT_EQ(calls, 0);
    EXPECT_FALSE(fut.done());
    c.set_result(3);
    run_briefly();
    run_briefly();
    EXPECT_EQ(calls, 1);
    ASSERT_TRUE(fut.done());
    EXPECT_EQ(fut.result(), (std::vector<int>{2, 1, 3}));
}

// Ports test_tasks CoroutineGatherTests (test_success with tasks).
TEST_F(TaskHelpersTest, GatherOfTasksInsideATask) {
    auto result = loop->run_until_complete([this] {
        std::vector<Future<int>> tasks;
        for (int i = 0; i < 5; ++i) {
            tasks.push_back(loop->create_task([i] {
                for (int k = 0; k < 5 - i; ++k) {
                    yield_now();  // finish in the reverse order
                }
                return i * i;
            }));
        }
        return await(gather(tasks));
    });
    EXPECT_EQ(result, (std::vector<int>{0, 1, 4, 9, 16}));
}

TEST_F(TaskHelpersTest, GatherOfDifferentTypesGivesATupleIncludingVoid) {
    Future<int> number = loop->create_future<int>();
    Future<std::string> text = loop->create_future<std::string>();
    Future<void> nothing = loop->create_future<void>();
    auto fut = gather(number, text, nothing);
    static_assert(
        std::is_same_v<decltype(fut), Future<std::tuple<int, std::string, std::monostate>>>);
    nothing.set_result();
    text.set_result("two");
    number.set_result(1);
    auto result = loop->run_until_complete(fut);
    EXPECT_EQ(std::get<0>(result), 1);
    EXPECT_EQ(std::get<1>(result), "two");
}

TEST_F(TaskHelpersTest, GatherOfVoidFuturesGivesOneMonostatePerChild) {
    std::vector<Future<void>> children;
    for (int i = 0; i < 3; ++i) {
        children.push_back(loop->create_future<void>());
    }
    auto fut = gather(children, *loop);
    for (auto& child : children) {
        child.set_result();
    }
    EXPECT_EQ(loop->run_until_complete(fut).size(), 3U);
}

// Ports test_tasks FutureGatherTests.test_constructor_empty_sequence_use_running_loop.
TEST_F(TaskHelpersTest, GatherOfNothingIsDoneAtOnce) {
    auto fut = gather(std::vector<Future<int>>{}, *loop);
    EXPECT_TRUE(fut.done());
    EXPECT_TRUE(fut.result().empty());
}

// Ports test_tasks CoroutineGatherTests.test_duplicate_coroutines: the same
// future twice gives its result twice.
TEST_F(TaskHelpersTest, GatherOfTheSameFutureTwiceGivesItsResultTwice) {
    Future<std::string> a = loop->create_future<std::string>();
    Future<std::string> b = loop->create_future<std::string>();
    auto fut = gather(std::vector<Future<std::string>>{a, a, b, a}, *loop);
    a.set_result("abc");
    b.set_result("def");
    EXPECT_EQ(loop->run_until_complete(fut),
              (std::vector<std::string>{"abc", "abc", "def", "abc"}));
}

// Ports test_tasks GatherTestsBase.test_one_exception.
TEST_F(TaskHelpersTest, GatherFailsWithTheFirstExceptionAndMarksTheRestRetrieved) {
    record_reports();
    {
        std::vector<Future<int>> children;
        for (int i = 0; i < 5; ++i) {
            children.push_back(loop->create_future<int>());
        }
        auto fut = gather(children, *loop);
        int calls = 0;
        fut.add_done_callback([&](const Future<std::vector<int>>&) { ++calls; });
        children[0].set_result(1);
        children[1].set_exception(FooError());
        run_briefly();
        run_briefly();
        ASSERT_TRUE(fut.done());
        EXPECT_EQ(calls, 1);
        EXPECT_THROW(std::rethrow_exception(fut.exception()), FooError);
        // Does nothing.
        children[2].set_result(3);
        children[3].cancel();
        children[4].set_exception(std::runtime_error("later"));
        run_briefly();
        EXPECT_FALSE(fut.cancelled());
        EXPECT_THROW(std::rethrow_exception(fut.exception()), FooError);
    }
    run_briefly();
    EXPECT_TRUE(reports.empty()) << reports.size() << " report(s), first: "
                                 << (reports.empty() ? "" : reports[0].message);
}

// Ports test_tasks FutureGatherTests.test_one_cancellation: a cancelled
// child fails the gather with CancelledError; the gather itself is not
// cancelled.
TEST_F(TaskHelpersTest, GatherOfACancelledChildFailsWithCancelledError) {
    std::vector<Future<int>> children;
    for (int i = 0; i < 3; ++i) {
        children.push_back(loop->create_future<int>());
    }
    auto fut = gather(children, *loop);
    children[0].set_result(1);
    children[1].cancel("child cancelled");
    run_briefly();
    run_briefly();
    ASSERT_TRUE(fut.done());
    EXPECT_FALSE(fut.cancelled());
    try {
        std::rethrow_exception(fut.exception());
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "child cancelled");
    } catch (...) {
        ADD_FAILURE() << "expected CancelledError";
    }
    children[2].set_result(3);
}

// Ports test_tasks CoroutineGatherTests.test_cancellation_broadcast.
TEST_F(TaskHelpersTest, CancellingATaskAwaitingGatherCancelsEveryChild) {
    int proof = 0;
    Future<void> waiter = loop->create_future<void>();
    auto inner = [&proof, waiter] {
        await(waiter);
        proof += 1;
    };
    auto child1 = loop->create_task(inner);
    auto child2 = loop->create_task(inner);
    Future<std::vector<std::monostate>> gatherer;
    auto outer = loop->create_task([&] {
        gatherer = gather(std::vector<Future<void>>{child1, child2});
        await(gatherer);
        proof += 100;
    });
    run_briefly();
    EXPECT_TRUE(outer.cancel());
    EXPECT_THROW(loop->run_until_complete(outer), CancelledError);
    ASSERT_TRUE(gatherer.valid());
    EXPECT_FALSE(gatherer.cancel());
    run_until([&] { return child1.done() && child2.done(); });
    EXPECT_TRUE(waiter.cancelled());
    EXPECT_TRUE(child1.cancelled());
    EXPECT_TRUE(child2.cancelled());
    run_briefly();
    EXPECT_EQ(proof, 0);
}

TEST_F(TaskHelpersTest, CancellingTheGatherFutureCancelsItsChildren) {
    std::vector<Future<int>> children;
    for (int i = 0; i < 3; ++i) {
        children.push_back(loop->create_future<int>());
    }
    children[0].set_result(0);
    auto fut = gather(children, *loop);
    EXPECT_TRUE(fut.cancel());
    run_briefly();
    run_briefly();
    EXPECT_FALSE(children[0].cancelled());
    EXPECT_TRUE(children[1].cancelled());
    EXPECT_TRUE(children[2].cancelled());
    EXPECT_THROW(loop->run_until_complete(fut), CancelledError);
}

// Ports test_tasks BaseTaskTests.test_cancel_gather_1 (Python issue #26923):
// once every child is done, cancelling the gather is refused and its
// result is kept.
TEST_F(TaskHelpersTest, GatherRefusesCancellationOnceEveryChildIsDone) {
    Future<int> fut = loop->create_future<int>();
    Future<std::vector<int>> gather_future;
    loop->run_until_complete([&] {
        auto child = loop->create_task([fut] { return await(fut); });
        gather_future = gather(std::vector<Future<int>>{child});
    });
    run_briefly();
    run_briefly();
    std::optional<bool> cancel_result;
    fut.add_done_callback([&](const Future<int>&) { cancel_result = gather_future.cancel(); });
    fut.set_result(42);
    try {
        std::vector<int> result = loop->run_until_complete(gather_future);
        EXPECT_EQ(result, (std::vector<int>{42}));
    } catch (const CancelledError&) {
        ADD_FAILURE() << "the gather was cancelled although its only child had finished";
    }
    ASSERT_TRUE(cancel_result.has_value());
    EXPECT_FALSE(*cancel_result);
    EXPECT_FALSE(gather_future.cancelled());
}

// Ports test_tasks CoroutineGatherTests.test_exception_marking: the second
// failing child's exception counts as retrieved.
TEST_F(TaskHelpersTest, GatherMarksTheExceptionsOfLaterFailingChildrenRetrieved) {
    record_reports();
    {
        Future<void> a = loop->create_future<void>();
        Future<void> b = loop->create_future<void>();
        auto inner = [](Future<void> f) {
            return [f] {
                await(f);
                throw std::runtime_error("should not be ignored");
            };
        };
        auto outer = loop->create_task([&] {
            auto ta = loop->create_task(inner(a));
            auto tb = loop->create_task(inner(b));
            await(gather(std::vector<Future<void>>{ta, tb}));
        });
        run_briefly();
        run_briefly();
        a.set_result();
        run_briefly();
        run_briefly();
        b.set_result();
        run_until([&] { return outer.done(); });
        run_briefly();
        run_briefly();
        EXPECT_THROW(std::rethrow_exception(outer.exception()), std::runtime_error);
    }
    run_briefly();
    EXPECT_TRUE(reports.empty()) << reports.size() << " report(s), first: "
                                 << (reports.empty() ? "" : reports[0].message);
}

// Ports test_tasks GatherTestsBase.test_return_exceptions and
// FutureGatherTests.test_result_exception_one_cancellation.
TEST_F(TaskHelpersTest, GatherWithReturnExceptionsGivesTheDoneChildren) {
    record_reports();
    {
        std::vector<Future<int>> children;
        for (int i = 0; i < 5; ++i) {
            children.push_back(loop->create_future<int>());
        }
        auto fut = gather(children, return_exceptions, *loop);
        children[1].set_result(1);
        children[2].set_exception(FooError());
        children[0].set_result(3);
        children[3].cancel();
        run_briefly();
        run_briefly();
        EXPECT_FALSE(fut.done()) << "one child is still pending";
        children[4].set_exception(std::runtime_error("second failure"));
        std::vector<Future<int>> done = loop->run_until_complete(fut);
        ASSERT_EQ(done.size(), 5U);
        for (std::size_t i = 0; i < done.size(); ++i) {
            EXPECT_TRUE(done[i] == children[i]) << "position " << i;
            EXPECT_TRUE(done[i].done());
        }
        EXPECT_EQ(done[0].result(), 3);
        EXPECT_EQ(done[1].result(), 1);
        EXPECT_THROW((void)done[2].result(), FooError);
        EXPECT_TRUE(done[3].cancelled());
        EXPECT_THROW((void)done[4].result(), std::runtime_error);
    }
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

// Ports test_tasks GatherTestsBase.test_result_exception_success.
TEST_F(TaskHelpersTest, GatherWithReturnExceptionsOfSuccessfulChildren) {
    Future<int> a = loop->create_future<int>();
    Future<int> b = loop->create_future<int>();
    auto fut = gather(std::vector<Future<int>>{a, b}, return_exceptions, *loop);
    b.set_result(1);
    a.set_result(2);
    std::vector<Future<int>> done = loop->run_until_complete(fut);
    ASSERT_EQ(done.size(), 2U);
    EXPECT_EQ(done[0].result(), 2);
    EXPECT_EQ(done[1].result(), 1);
}

}  // namespace
}  // namespace shardloop
