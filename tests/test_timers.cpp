// Scheduling delayed callbacks (EventLoop::call_later, call_at, TimerHandle):
// order, never early, cancellation and what it releases, and many timers.
// Ported from CPython's test_asyncio (test_base_events.py, test_events.py)
// where noted. Timing checks are lower bounds only: a timer may be late on a
// loaded machine, never early.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using namespace std::chrono_literals;

class TimersTest : public testing::LoopTest {
protected:
    // One iteration (CPython's test_utils.run_once): what is ready, and the
    // timers that are due, run; then the loop stops.
    void run_once() {
        loop->call_soon([this] { loop->stop(); });
        loop->run_forever();
    }
};

// Ports test_events.EventLoopTestsMixin.test_call_later.
TEST_F(TimersTest, CallLaterRunsCallbackNotBeforeItsDelay) {
    std::vector<std::string> results;
    double start = loop->time();
    double ran_at = 0.0;
    loop->call_later(0.1, [&] {
        ran_at = loop->time();
        results.push_back("hello world");
        loop->stop();
    });
    loop->run_forever();
    EXPECT_EQ(results, (std::vector<std::string>{"hello world"}));
    EXPECT_GE(ran_at - start, 0.1 - 1e-6);
}

TEST_F(TimersTest, CallLaterRunsInOrderOfDelay) {
    std::vector<int> order;
    loop->call_later(0.030, [&] { order.push_back(30); });
    loop->call_later(0.010, [&] { order.push_back(10); });
    loop->call_later(0.020, [&] { order.push_back(20); });
    loop->call_later(0.040, [&] {
        order.push_back(40);
        loop->stop();
    });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<int>{10, 20, 30, 40}));
}

TEST_F(TimersTest, TimersWithEqualDeadlinesRunInSchedulingOrder) {
    std::vector<int> order;
    double when = loop->time() + 0.005;
    for (int i = 0; i < 8; ++i) {
        loop->call_at(when, [&order, i] { order.push_back(i); });
    }
    loop->call_at(when, [this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
}

// Ports test_base_events.BaseEventLoopTests.test_call_later_negative_delays.
TEST_F(TimersTest, NegativeDelaysRunAtOnceInDeadlineOrder) {
    std::vector<std::string> calls;
    auto cb = [&](const std::string& arg) { calls.push_back(arg); };
    loop->call_later(-1.0, [&] { cb("a"); });
    loop->call_later(-2.0, [&] { cb("b"); });
    loop->call_later(-1.5, [&] { cb("c"); });
    run_once();
    EXPECT_EQ(calls, (std::vector<std::string>{"b", "c", "a"}));
}

// Ports test_base_events.BaseEventLoopTests.test__run_once_schedule_handle:
// a due timer runs in the batch, and what it schedules waits one iteration.
TEST_F(TimersTest, CallbackScheduledByDueTimerRunsInNextIteration) {
    bool processed = false;
    bool child_ran = false;
    loop->call_later(-1.0, [&] {
        processed = true;
        loop->call_soon([&] { child_ran = true; });
    });
    run_once();
    EXPECT_TRUE(processed);
    EXPECT_FALSE(child_ran);
    run_once();
    EXPECT_TRUE(child_ran);
}

// asyncio's _run_once appends the due timers to the callbacks already
// ready: they run after them, in the same iteration.
TEST_F(TimersTest, DueTimersRunAfterCallbacksAlreadyReady) {
    std::vector<std::string> order;
    loop->call_soon([&] { order.push_back("soon-1"); });
    loop->call_later(-1.0, [&] { order.push_back("timer"); });
    loop->call_soon([&] { order.push_back("soon-2"); });
    run_once();
    EXPECT_EQ(order, (std::vector<std::string>{"soon-1", "soon-2", "timer"}));
}

// A timer scheduled by a callback, even with no delay, waits for a later
// iteration: it goes through the heap, never straight into the running batch.
TEST_F(TimersTest, ZeroDelayTimerScheduledDuringBatchRunsInALaterIteration) {
    std::vector<std::string> order;
    loop->call_soon([&] {
        order.push_back("callback");
        loop->call_later(0.0, [&] { order.push_back("timer"); });
    });
    loop->call_soon([&] { order.push_back("same-batch"); });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"callback", "same-batch"}));
    run_once();
    EXPECT_EQ(order, (std::vector<std::string>{"callback", "same-batch", "timer"}));
}

TEST_F(TimersTest, CallLaterAcceptsChronoDurations) {
    double start = loop->time();
    double ms_at = 0.0;
    double double_at = 0.0;
    TimerHandle ms = loop->call_later(20ms, [&] { ms_at = loop->time(); });
    TimerHandle fractional =
        loop->call_later(std::chrono::duration<double>(0.01), [&] { double_at = loop->time(); });
    loop->call_later(30ms, [this] { loop->stop(); });
    EXPECT_GE(ms.when(), start + 0.020 - 1e-9);
    EXPECT_GE(fractional.when(), start + 0.010 - 1e-9);
    loop->run_forever();
    EXPECT_GE(ms_at - start, 0.020 - 1e-9);
    EXPECT_GE(double_at - start, 0.010 - 1e-9);
    EXPECT_LE(double_at, ms_at);  // 10 ms before 20 ms
}

// A delay longer than the clock can count (a millennium) must mean "not in
// this test's lifetime", never wrap around to "now".
TEST_F(TimersTest, CallLaterWithHugeChronoDurationDoesNotRunSoon) {
    bool ran = false;
    TimerHandle far = loop->call_later(std::chrono::hours(24 * 365 * 1000), [&] { ran = true; });
    EXPECT_GT(far.when(), loop->time() + 3600.0);
    run_once();
    run_once();
    EXPECT_FALSE(ran);
    far.cancel();
}

TEST_F(TimersTest, CallLaterWithLargestChronoDurationsSaturates) {
    bool ran = false;
    TimerHandle max_ns = loop->call_later(std::chrono::nanoseconds::max(), [&] { ran = true; });
    TimerHandle max_hours = loop->call_later(std::chrono::hours::max(), [&] { ran = true; });
    EXPECT_GT(max_ns.when(), loop->time() + 3600.0);
    EXPECT_GT(max_hours.when(), loop->time() + 3600.0);
    bool negative_ran = false;
    loop->call_later(std::chrono::nanoseconds::min(), [&] { negative_ran = true; });
    run_once();
    EXPECT_FALSE(ran);
    EXPECT_TRUE(negative_ran);  // a negative delay means now
    max_ns.cancel();
    max_hours.cancel();
}

TEST_F(TimersTest, CallLaterWithHugeDoubleDelayDoesNotRunSoon) {
    bool ran = false;
    TimerHandle far = loop->call_later(1e30, [&] { ran = true; });
    TimerHandle inf =
        loop->call_later(std::numeric_limits<double>::infinity(), [&] { ran = true; });
    EXPECT_GT(far.when(), loop->time() + 3600.0);
    run_once();
    EXPECT_FALSE(ran);
    far.cancel();
    inf.cancel();
}

// Ports test_base_events.BaseEventLoopTests.test_time_and_call_at: never early.
TEST_F(TimersTest, CallAtNeverRunsEarly) {
    constexpr int count = 20;
    std::vector<TimerHandle> handles(count);
    std::vector<double> ran_at(count, -1.0);
    std::vector<int> order;
    int remaining = count;
    double base = loop->time();
    for (int i = 0; i < count; ++i) {
        double when = base + 0.001 * (i + 1);
        handles[i] = loop->call_at(when, [&, i] {
            ran_at[i] = loop->time();
            order.push_back(i);
            if (--remaining == 0) {
                loop->stop();
            }
        });
    }
    loop->run_forever();
    for (int i = 0; i < count; ++i) {
        EXPECT_GE(ran_at[i], handles[i].when()) << "timer " << i << " ran early";
        EXPECT_GE(ran_at[i], base + 0.001 * (i + 1) - 1e-9) << "timer " << i;
    }
    std::vector<int> expected(count);
    for (int i = 0; i < count; ++i) {
        expected[i] = i;
    }
    EXPECT_EQ(order, expected);
}

// Ports test_events.TimerTests.test_when.
TEST_F(TimersTest, TimerHandleWhenEqualsCallAtTime) {
    double when = loop->time() + 10.0;
    TimerHandle handle = loop->call_at(when, [] {});
    EXPECT_NEAR(handle.when(), when, 1e-9);
    double later = loop->time();
    TimerHandle delayed = loop->call_later(5.0, [] {});
    EXPECT_GE(delayed.when(), later + 5.0 - 1e-9);
    EXPECT_EQ(&handle.get_loop(), loop.get());
    handle.cancel();
    delayed.cancel();
}

// Ports test_events.TimerTests.test_timer (cancel).
TEST_F(TimersTest, CancelledTimersAreNotRun) {
    std::vector<int> order;
    loop->call_later(0.001, [&] { order.push_back(1); });
    TimerHandle cancelled = loop->call_later(0.002, [&] { order.push_back(2); });
    loop->call_later(0.003, [&] {
        order.push_back(3);
        loop->stop();
    });
    EXPECT_FALSE(cancelled.cancelled());
    cancelled.cancel();
    EXPECT_TRUE(cancelled.cancelled());
    cancelled.cancel();  // idempotent
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<int>{1, 3}));
}

TEST_F(TimersTest, TimerCancelledByEarlierCallbackInSameBatchDoesNotRun) {
    bool second_ran = false;
    TimerHandle second;
    double when = loop->time() - 1.0;  // both due in the first iteration
    loop->call_at(when, [&] { second.cancel(); });
    second = loop->call_at(when + 0.5, [&] { second_ran = true; });
    run_once();
    EXPECT_FALSE(second_ran);
    EXPECT_TRUE(second.cancelled());
}

// Ports test_events.TimerTests.test_timer: cancel() drops the callback (and
// its arguments) at once, not when the heap gets to it.
TEST_F(TimersTest, CancelReleasesTheTimerCallbackAtOnce) {
    auto token = std::make_shared<int>(1);
    TimerHandle handle = loop->call_later(3600.0, [token] {});
    EXPECT_EQ(token.use_count(), 2);
    handle.cancel();
    EXPECT_EQ(token.use_count(), 1);
    run_once();
    EXPECT_EQ(token.use_count(), 1);
}

// The same through a plain Handle copy of the TimerHandle.
TEST_F(TimersTest, CancelThroughBaseHandleStopsTheTimer) {
    auto token = std::make_shared<int>(1);
    bool ran = false;
    TimerHandle timer = loop->call_later(-1.0, [&ran, token] { ran = true; });
    Handle base = timer;
    base.cancel();
    EXPECT_TRUE(timer.cancelled());
    EXPECT_EQ(token.use_count(), 1);
    run_once();
    EXPECT_FALSE(ran);
}

// Ports test_base_events.BaseEventLoopTests.test__run_once (a cancelled
// head of the heap is skipped) and test__run_once_cancelled_event_cleanup
// (many cancelled timers are purged): 10,000 far timers, all cancelled,
// then one iteration: none runs, every capture is gone, the loop stops.
TEST_F(TimersTest, ManyCancelledFarTimersNeitherRunNorHoldTheirCaptures) {
    constexpr int count = 10'000;
    auto token = std::make_shared<int>(1);
    int ran = 0;
    std::vector<TimerHandle> handles;
    handles.reserve(count);
    for (int i = 0; i < count; ++i) {
        handles.push_back(loop->call_later(3600.0 + i, [&ran, token] { ++ran; }));
    }
    bool live_ran = false;
    TimerHandle live = loop->call_later(0.001, [&] { live_ran = true; });
    EXPECT_EQ(token.use_count(), count + 1);
    for (TimerHandle& handle : handles) {
        handle.cancel();
    }
    EXPECT_EQ(token.use_count(), 1);

    run_once();
    EXPECT_EQ(ran, 0);
    // The live timer behind them still fires.
    for (int i = 0; i < 100 && !live_ran; ++i) {
        loop->call_later(0.002, [this] { loop->stop(); });
        loop->run_forever();
    }
    EXPECT_TRUE(live_ran);
    EXPECT_EQ(ran, 0);

    // Once the handles go too, nothing of the timers remains but the heap's
    // cleanup keeps working for the next batch.
    handles.clear();
    for (int i = 0; i < 200; ++i) {
        loop->call_later(3600.0, [&ran, token] { ++ran; }).cancel();
    }
    EXPECT_EQ(token.use_count(), 1);
    run_once();
    EXPECT_EQ(ran, 0);
}

// Ports test_base_events.BaseEventLoopTests.test_call_later (type checks):
// a NaN delay or time is refused.
TEST_F(TimersTest, NanDelayThrowsInvalidArgument) {
    double nan = std::numeric_limits<double>::quiet_NaN();
    EXPECT_THROW(loop->call_later(nan, [] {}), std::invalid_argument);
    EXPECT_THROW(loop->call_at(nan, [] {}), std::invalid_argument);
}

// The chrono overload refuses NaN like the double one (rather than turning
// it into an arbitrary deadline).
TEST_F(TimersTest, NanChronoDelayThrowsInvalidArgument) {
    std::chrono::duration<double> nan(std::numeric_limits<double>::quiet_NaN());
    bool ran = false;
    EXPECT_THROW(loop->call_later(nan, [&] { ran = true; }), std::invalid_argument);
    run_once();
    EXPECT_FALSE(ran);
}

TEST_F(TimersTest, CallLaterAfterCloseThrows) {
    loop->close();
    EXPECT_THROW(loop->call_later(1.0, [] {}), RuntimeError);
    EXPECT_THROW(loop->call_at(loop->time() + 1.0, [] {}), RuntimeError);
    EXPECT_THROW(loop->call_later(1s, [] {}), RuntimeError);
}

// A million pending timers do not stop the loop from doing an iteration of
// other work, and close() drops them all without running any.
TEST_F(TimersTest, MillionPendingTimersDoNotBlockAnIterationAndCloseDropsThem) {
    constexpr int count = 1'000'000;
    auto token = std::make_shared<int>(1);
    int fired = 0;
    for (int i = 0; i < count; ++i) {
        loop->call_later(3600.0, [&fired, token] { ++fired; });
    }
    EXPECT_EQ(token.use_count(), count + 1);
    bool soon_ran = false;
    loop->call_soon([&] {
        soon_ran = true;
        loop->stop();
    });
    loop->run_forever();
    EXPECT_TRUE(soon_ran);
    EXPECT_EQ(fired, 0);

    loop->close();
    EXPECT_EQ(fired, 0);
    EXPECT_EQ(token.use_count(), 1);
}

}  // namespace
}  // namespace shardloop
