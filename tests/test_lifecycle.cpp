// Running, stopping and closing the loop (run_forever, run_until_complete,
// stop, close, is_running, is_closed) and getting the running loop. Ported
// from CPython's test_asyncio (test_base_events.py, test_events.py) where
// noted.

#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using testing::expect_throw_with_message;

class LifecycleTest : public testing::LoopTest {};

// Sets a flag when destroyed: put on a task's stack, it shows the stack unwound.
struct SetOnDestroy {
    bool* flag;
    ~SetOnDestroy() { *flag = true; }
};

// ---- run_forever and stop ----

// Ports test_base_events.BaseEventLoopTests.test_run_forever_pre_stopped:
// a stop() before run_forever() makes it run exactly one iteration.
TEST_F(LifecycleTest, RunForeverAfterStopRunsExactlyOneIteration) {
    std::vector<std::string> order;
    loop->call_soon([&] {
        order.push_back("first");
        loop->call_soon([&] { order.push_back("next-iteration"); });
    });
    loop->call_soon([&] { order.push_back("second"); });
    // A safety net: if the stop were lost, the run would otherwise never end.
    bool safety_net_fired = false;
    TimerHandle safety_net = loop->call_later(5.0, [&] {
        safety_net_fired = true;
        loop->stop();
    });
    loop->stop();
    loop->run_forever();
    safety_net.cancel();
    EXPECT_FALSE(safety_net_fired);
    EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}));
    EXPECT_FALSE(loop->is_running());

    // The stop was consumed: the next run goes on until its own stop.
    loop->call_soon([&] {
        order.push_back("third");
        loop->stop();
    });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"first", "second", "next-iteration", "third"}));
}

// Ports test_base_events.BaseEventLoopTests.test_run_forever_pre_stopped:
// the pre-stopped iteration does not wait (select(0)) even with only far
// timers scheduled.
TEST_F(LifecycleTest, PreStoppedRunDoesNotWaitForTimers) {
    bool ran = false;
    TimerHandle far = loop->call_later(3600.0, [&] { ran = true; });
    bool safety_net_fired = false;
    TimerHandle safety_net = loop->call_later(5.0, [&] {
        safety_net_fired = true;
        loop->stop();
    });
    loop->stop();
    loop->run_forever();
    EXPECT_FALSE(ran);
    EXPECT_FALSE(safety_net_fired) << "the pre-stopped run waited for timers";
    far.cancel();
    safety_net.cancel();
}

TEST_F(LifecycleTest, StopInsideCallbackEndsRunAfterTheCurrentBatch) {
    std::vector<int> order;
    loop->call_soon([&] {
        order.push_back(1);
        loop->stop();
    });
    loop->call_soon([&] { order.push_back(2); });  // same batch: still runs
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// ---- is_running / is_closed ----

TEST_F(LifecycleTest, IsRunningAndIsClosedFollowTheLoopState) {
    EXPECT_FALSE(loop->is_running());
    EXPECT_FALSE(loop->is_closed());
    bool running_inside = false;
    loop->call_soon([&] {
        running_inside = loop->is_running();
        loop->stop();
    });
    loop->run_forever();
    EXPECT_TRUE(running_inside);
    EXPECT_FALSE(loop->is_running());
    EXPECT_FALSE(loop->is_closed());
    loop->close();
    EXPECT_FALSE(loop->is_running());
    EXPECT_TRUE(loop->is_closed());
}

// ---- run_until_complete ----

// Ports test_events.EventLoopTestsMixin.test_run_until_complete.
TEST_F(LifecycleTest, RunUntilCompleteReturnsTheTaskResult) {
    int result = loop->run_until_complete([] { return 42; });
    EXPECT_EQ(result, 42);

    std::string text = loop->run_until_complete([] {
        await(sleep(0.01));
        return std::string("slept");
    });
    EXPECT_EQ(text, "slept");
}

TEST_F(LifecycleTest, RunUntilCompleteReturnsAFutureResultSetByACallback) {
    Future<int> future = loop->create_future<int>();
    loop->call_soon([&future]() mutable { future.set_result(7); });
    EXPECT_EQ(loop->run_until_complete(future), 7);
}

TEST_F(LifecycleTest, RunUntilCompleteWithAFutureAlreadyDoneReturnsItsResult) {
    Future<int> future = loop->create_future<int>();
    future.set_result(11);
    EXPECT_EQ(loop->run_until_complete(future), 11);
    EXPECT_FALSE(loop->is_running());
}

TEST_F(LifecycleTest, RunUntilCompleteWithACancelledFutureThrowsCancelledError) {
    Future<int> future = loop->create_future<int>();
    loop->call_soon([&future]() mutable { future.cancel("gone"); });
    try {
        loop->run_until_complete(future);
        ADD_FAILURE() << "no exception";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "gone");
    }
}

TEST_F(LifecycleTest, RunUntilCompleteRethrowsTheTaskException) {
    try {
        loop->run_until_complete([]() -> int { throw std::runtime_error("task failed"); });
        ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "task failed");
    }
    // The exception was retrieved: nothing is logged as never retrieved.
    EXPECT_FALSE(log_capture.contains(LogLevel::error, "never retrieved"));
}

// Ports test_events.EventLoopTestsMixin.test_run_until_complete_stopped:
// a task stops the loop, then waits for a future nobody completes.
TEST_F(LifecycleTest, RunUntilCompleteThrowsWhenLoopStopsFirst) {
    Future<void> never = loop->create_future<void>();
    auto task = loop->create_task([this, never] {
        loop->stop();
        await(never);
    });
    expect_throw_with_message<RuntimeError>([&] { loop->run_until_complete(task); },
                                            "Event loop stopped before Future completed.");
    EXPECT_FALSE(task.done());
    EXPECT_FALSE(loop->is_running());

    // Cancel the orphan and let it finish before teardown.
    EXPECT_TRUE(task.cancel());
    run_until([&] { return task.done(); });
    EXPECT_TRUE(task.cancelled());
    EXPECT_TRUE(never.cancelled());
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// Ports test_base_events.BaseEventLoopTests
// .test_run_until_complete_loop_orphan_future_close_loop: the first run's
// done callback (which stops the loop) is removed when that run ends early,
// so the orphan future completing later does not stop the next run.
TEST_F(LifecycleTest, RunUntilCompleteCleansUpItsDoneCallbackWhenStoppedEarly) {
    Future<void> orphan = loop->create_future<void>();
    loop->call_soon([this] { loop->stop(); });
    EXPECT_THROW(loop->run_until_complete(orphan), RuntimeError);

    int result = loop->run_until_complete([this, orphan]() mutable {
        orphan.set_result();  // would stop this run if the old callback remained
        await(sleep(0.02));
        return 5;
    });
    EXPECT_EQ(result, 5);
}

// Ports test_base_events.BaseEventLoopTests.test_run_until_complete_loop.
TEST_F(LifecycleTest, RunUntilCompleteRejectsFutureOfAnotherLoop) {
    auto other_loop = new_event_loop();
    Future<void> foreign = other_loop->create_future<void>();
    EXPECT_THROW(loop->run_until_complete(foreign), std::invalid_argument);
    EXPECT_FALSE(loop->is_running());
    other_loop->close();
}

// ---- Nesting ----

// Ports test_events.EventLoopTestsMixin.test_run_until_complete_nesting.
TEST_F(LifecycleTest, NestedRunIsRefused) {
    std::vector<std::string> errors;
    loop->call_soon([&] {
        // Should the nested run be accepted, this ends it instead of hanging.
        loop->call_soon([this] { loop->stop(); });
        try {
            loop->run_forever();
            errors.push_back("run_forever: no exception");
        } catch (const RuntimeError& e) {
            errors.push_back(e.what());
        }
        try {
            loop->run_until_complete([] { return 1; });
            errors.push_back("run_until_complete: no exception");
        } catch (const RuntimeError& e) {
            errors.push_back(e.what());
        }
        loop->stop();
    });
    loop->run_forever();
    EXPECT_EQ(errors, (std::vector<std::string>{"This event loop is already running",
                                                "This event loop is already running"}));
    EXPECT_FALSE(loop->is_running());
}

TEST_F(LifecycleTest, NestedRunUntilCompleteInsideATaskIsRefused) {
    bool inner_ran = false;
    std::string error;
    loop->run_until_complete([&] {
        EXPECT_TRUE(loop->is_running());
        try {
            loop->run_until_complete([&] { inner_ran = true; });
        } catch (const RuntimeError& e) {
            error = e.what();
        }
    });
    EXPECT_EQ(error, "This event loop is already running");
    EXPECT_FALSE(inner_ran);
}

// Ports test_base_events.RunningLoopTests.test_running_loop_within_a_loop.
TEST_F(LifecycleTest, RunningAnotherLoopInsideARunningLoopIsRefused) {
    auto inner = new_event_loop();
    // Should the inner run be accepted, this ends it instead of hanging.
    Handle inner_stop = inner->call_soon([&] { inner->stop(); });
    std::vector<std::string> errors;
    loop->call_soon([&] {
        try {
            inner->run_forever();
            errors.push_back("run_forever: no exception");
        } catch (const RuntimeError& e) {
            errors.push_back(e.what());
        }
        try {
            inner->run_until_complete([] { return 1; });
            errors.push_back("run_until_complete: no exception");
        } catch (const RuntimeError& e) {
            errors.push_back(e.what());
        }
        loop->stop();
    });
    loop->run_forever();
    const std::string expected = "Cannot run the event loop while another loop is running";
    EXPECT_EQ(errors, (std::vector<std::string>{expected, expected}));
    EXPECT_FALSE(inner->is_running());
    inner_stop.cancel();
    // The refused loop still works on its own afterwards.
    EXPECT_EQ(inner->run_until_complete([] { return 3; }), 3);
    inner->close();
}

// ---- close ----

// Ports test_events.EventLoopTestsMixin.test_close_running_event_loop.
TEST_F(LifecycleTest, CloseWhileRunningThrows) {
    std::string error;
    loop->call_soon([&] {
        try {
            loop->close();
        } catch (const RuntimeError& e) {
            error = e.what();
        }
        loop->stop();
    });
    loop->run_forever();
    EXPECT_EQ(error, "Cannot close a running event loop");
    EXPECT_FALSE(loop->is_closed());
}

// Ports test_base_events.BaseEventLoopTests.test_close and
// test_events.EventLoopTestsMixin.test_close.
TEST_F(LifecycleTest, CloseIsIdempotentAndBlocksFurtherUse) {
    Future<void> future = loop->create_future<void>();
    EXPECT_FALSE(loop->is_closed());
    loop->close();
    EXPECT_TRUE(loop->is_closed());
    loop->close();
    loop->close();
    EXPECT_TRUE(loop->is_closed());

    expect_throw_with_message<RuntimeError>([&] { loop->run_forever(); }, "Event loop is closed");
    expect_throw_with_message<RuntimeError>([&] { loop->run_until_complete(future); },
                                            "Event loop is closed");
    expect_throw_with_message<RuntimeError>([&] { loop->call_soon([] {}); },
                                            "Event loop is closed");
    expect_throw_with_message<RuntimeError>([&] { loop->create_future<int>(); },
                                            "Event loop is closed");
    expect_throw_with_message<RuntimeError>([&] { loop->create_task([] {}); },
                                            "Event loop is closed");
}

TEST_F(LifecycleTest, CloseDropsPendingCallbacksAndTimersWithoutRunningThem) {
    auto token = std::make_shared<int>(1);
    int ran = 0;
    loop->call_soon([&ran, token] { ++ran; });
    loop->call_soon([&ran, token] { ++ran; });
    loop->call_later(0.0, [&ran, token] { ++ran; });
    loop->call_later(3600.0, [&ran, token] { ++ran; });
    loop->call_at(loop->time() - 1.0, [&ran, token] { ++ran; });
    EXPECT_EQ(token.use_count(), 6);
    loop->close();
    EXPECT_EQ(ran, 0);
    EXPECT_EQ(token.use_count(), 1);
}

TEST_F(LifecycleTest, CloseDropsCallbacksPostedFromAnotherThread) {
    auto token = std::make_shared<int>(1);
    bool ran = false;
    std::thread other([&] { loop->call_soon_threadsafe([&ran, token] { ran = true; }); });
    other.join();
    loop->close();
    EXPECT_FALSE(ran);
    EXPECT_EQ(token.use_count(), 1);
}

// asyncio's BaseEventLoop.__del__/close report pending tasks the way
// Task.__del__ does: "Task was destroyed but it is pending!". The task's
// stack is unwound, so its destructors run.
TEST_F(LifecycleTest, CloseReportsPendingTaskAndUnwindsItsStack) {
    std::vector<std::string> messages;
    std::vector<AnyFuture> reported;
    loop->set_exception_handler([&](EventLoop&, const ExceptionContext& context) {
        messages.push_back(context.message);
        reported.push_back(context.task);
    });
    bool stack_object_destroyed = false;
    bool resumed_normally = false;
    Future<void> never = loop->create_future<void>();
    auto task = loop->create_task([&stack_object_destroyed, &resumed_normally, never] {
        SetOnDestroy guard{&stack_object_destroyed};
        await(never);
        resumed_normally = true;
    });
    loop->stop();
    loop->run_forever();  // one iteration: the task starts and waits
    EXPECT_FALSE(task.done());
    EXPECT_FALSE(stack_object_destroyed);

    loop->close();
    EXPECT_TRUE(stack_object_destroyed);
    EXPECT_FALSE(resumed_normally);
    ASSERT_EQ(messages.size(), 1U);
    EXPECT_EQ(messages[0], "Task was destroyed but it is pending!");
    EXPECT_TRUE(reported[0] == AnyFuture(task));
    EXPECT_EQ(loop->live_task_count(), 0U);
    EXPECT_EQ(loop->stack_pool().in_use(), 0U);
}

// Once the loop is closed and nobody holds the task or the future it waited
// for, everything the task's function captured is released (asyncio's
// garbage collector frees such a task with its coroutine).
TEST_F(LifecycleTest, ClosedLoopReleasesPendingTaskAndWhatItsFunctionCaptured) {
    loop->set_exception_handler([](EventLoop&, const ExceptionContext&) {});
    auto token = std::make_shared<int>(1);
    {
        Future<void> never = loop->create_future<void>();
        auto task = loop->create_task([token, never] { await(never); });
        loop->stop();
        loop->run_forever();
        EXPECT_FALSE(task.done());
        loop->close();
    }
    EXPECT_EQ(token.use_count(), 1) << "the pending task (and its function) leaked";
}

TEST_F(LifecycleTest, CloseReportsTaskThatNeverStarted) {
    std::vector<std::string> messages;
    loop->set_exception_handler(
        [&](EventLoop&, const ExceptionContext& context) { messages.push_back(context.message); });
    auto token = std::make_shared<int>(1);
    bool ran = false;
    auto task = loop->create_task([&ran, token] { ran = true; });
    loop->close();
    EXPECT_FALSE(ran);
    EXPECT_EQ(messages, (std::vector<std::string>{"Task was destroyed but it is pending!"}));
    EXPECT_EQ(token.use_count(), 1);
}

// ---- Getting the running loop ----

// Ports test_events.GetEventLoopTestsMixin.test_get_event_loop_returns_running_loop
// (running-loop part).
TEST_F(LifecycleTest, GetRunningLoopInsideCallbackReturnsTheLoop) {
    EventLoop* seen = nullptr;
    EventLoop* seen_or_null = nullptr;
    std::shared_ptr<EventLoop> from_get_event_loop;
    loop->call_soon([&] {
        loop->stop();  // first: the lookups below throw should they fail
        seen = &get_running_loop();
        seen_or_null = get_running_loop_or_null();
        from_get_event_loop = get_event_loop();
    });
    loop->run_forever();
    EXPECT_EQ(seen, loop.get());
    EXPECT_EQ(seen_or_null, loop.get());
    EXPECT_EQ(from_get_event_loop.get(), loop.get());
}

TEST_F(LifecycleTest, GetRunningLoopOutsideARunningLoopThrows) {
    expect_throw_with_message<RuntimeError>([] { get_running_loop(); }, "no running event loop");
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
    // Also after a run has ended.
    loop->stop();
    loop->run_forever();
    EXPECT_THROW(get_running_loop(), RuntimeError);
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
}

TEST_F(LifecycleTest, GetRunningLoopInsideTaskReturnsTheLoop) {
    EventLoop* seen = loop->run_until_complete([] { return &get_running_loop(); });
    EXPECT_EQ(seen, loop.get());
}

}  // namespace
}  // namespace shardloop
