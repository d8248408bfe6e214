// Scheduling callbacks (EventLoop::call_soon, call_soon_threadsafe, Handle):
// FIFO order, the ready-batch rule, cancellation, errors in callbacks, the
// thread rules and debug mode's slow-callback log. Ported from CPython's
// test_asyncio (test_base_events.py, test_events.py) where noted.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using testing::expect_throw_with_message;

using namespace std::chrono_literals;

class CallbacksTest : public testing::LoopTest {};

// Stops `loop` from another thread unless disarm() comes within `seconds`,
// so that a loop that is never woken fails the test instead of hanging it.
// It wakes the loop through a pipe the loop watches, not through
// call_soon_threadsafe: that is what the tests using it check.
class Watchdog {
public:
    Watchdog(EventLoop& loop, std::chrono::seconds seconds) : _loop(loop) {
        if (pipe2(_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        _loop.add_reader(_fds[0], [this] {
            fired = true;
            _loop.stop();
        });
        _thread = std::thread([this, seconds] {
            std::unique_lock lock(_mutex);
            if (!_cv.wait_for(lock, seconds, [this] { return _disarmed; })) {
                char byte = 1;
                (void)!write(_fds[1], &byte, 1);
            }
        });
    }
    ~Watchdog() { disarm(); }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    // Loop thread, with the loop stopped.
    void disarm() {
        if (!_thread.joinable()) {
            return;
        }
        {
            std::lock_guard lock(_mutex);
            _disarmed = true;
        }
        _cv.notify_all();
        _thread.join();
        _loop.remove_reader(_fds[0]);
        close(_fds[0]);
        close(_fds[1]);
    }

    bool fired = false;  // loop thread

private:
    EventLoop& _loop;
    int _fds[2] = {-1, -1};
    std::mutex _mutex;
    std::condition_variable _cv;
    bool _disarmed = false;
    std::thread _thread;
};

// ---- call_soon ----

// Ports test_base_events.BaseEventLoopTests.test_run_once (the
// call_soon(cb); call_soon(stop); run_forever() idiom) and extends it to order.
TEST_F(CallbacksTest, CallSoonRunsInFifoOrder) {
    std::vector<int> order;
    for (int i = 0; i < 10; ++i) {
        loop->call_soon([&order, i] { order.push_back(i); });
    }
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

// Ports test_base_events.BaseEventLoopTests.test__run_once_schedule_handle
// and test_run_until_complete_baseexception's call_soon(call_soon, func):
// what a callback schedules waits for the next iteration, even when a
// stop() queued behind it ends the current one.
TEST_F(CallbacksTest, CallbacksScheduledDuringBatchRunInNextIteration) {
    std::vector<std::string> order;
    loop->call_soon([&] {
        order.push_back("a");
        loop->call_soon([&] { order.push_back("a-child"); });
    });
    loop->call_soon([&] { order.push_back("b"); });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"a", "b"}));

    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "a-child"}));
}

// Ports test_base_events.BaseEventLoopTests.test_run_until_complete_baseexception
// (second half): call_soon(call_soon, func) runs func one iteration later,
// after the rest of the first batch, and its stop() then ends run_forever.
TEST_F(CallbacksTest, CallbackScheduledByCallbackCanStopTheLoop) {
    std::vector<std::string> order;
    loop->call_soon([&] {
        order.push_back("outer");
        loop->call_soon([&] {
            order.push_back("func");
            loop->stop();
        });
    });
    loop->call_soon([&] { order.push_back("sibling"); });
    // A safety net: should func never run, the run would never end.
    TimerHandle safety_net = loop->call_later(5.0, [&] {
        order.push_back("safety-net");
        loop->stop();
    });
    loop->run_forever();
    safety_net.cancel();
    EXPECT_EQ(order, (std::vector<std::string>{"outer", "sibling", "func"}));
}

// Ports test_events.EventLoopTestsMixin.test_call_soon.
TEST_F(CallbacksTest, CallSoonPassesExtraArguments) {
    std::vector<std::pair<std::string, std::string>> results;
    auto callback = [&](const std::string& arg1, const std::string& arg2) {
        results.emplace_back(arg1, arg2);
        loop->stop();
    };
    loop->call_soon(callback, std::string("hello"), std::string("world"));
    loop->run_forever();
    ASSERT_EQ(results.size(), 1U);
    EXPECT_EQ(results[0].first, "hello");
    EXPECT_EQ(results[0].second, "world");
}

TEST_F(CallbacksTest, CallSoonAcceptsMoveOnlyCallbacks) {
    auto value = std::make_unique<int>(7);
    int seen = 0;
    loop->call_soon([&seen, value = std::move(value)] { seen = *value; });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(seen, 7);
}

// Ports test_events.HandleTests.test_handle and
// test_base_events.BaseEventLoopTests.test__add_callback_cancelled_handle.
TEST_F(CallbacksTest, CancelledHandleDoesNotRun) {
    bool ran = false;
    bool other_ran = false;
    Handle handle = loop->call_soon([&] { ran = true; });
    loop->call_soon([&] { other_ran = true; });
    EXPECT_FALSE(handle.cancelled());
    handle.cancel();
    EXPECT_TRUE(handle.cancelled());
    handle.cancel();  // idempotent
    EXPECT_TRUE(handle.cancelled());
    EXPECT_EQ(&handle.get_loop(), loop.get());

    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_FALSE(ran);
    EXPECT_TRUE(other_ran);
    EXPECT_TRUE(handle.cancelled());
}

// Ports test_events.TimerTests.test_timer's "cancel drops _callback and
// _args" for a plain Handle: what the callback captured goes at once.
TEST_F(CallbacksTest, CancelReleasesTheCallbackAtOnce) {
    auto token = std::make_shared<int>(1);
    Handle handle = loop->call_soon([token] {});
    EXPECT_EQ(token.use_count(), 2);
    handle.cancel();
    EXPECT_EQ(token.use_count(), 1);
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(token.use_count(), 1);
}

TEST_F(CallbacksTest, CallbackCancelledByEarlierCallbackInSameBatchDoesNotRun) {
    bool second_ran = false;
    Handle second;
    loop->call_soon([&] { second.cancel(); });
    second = loop->call_soon([&] { second_ran = true; });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_FALSE(second_ran);
    EXPECT_TRUE(second.cancelled());
}

TEST_F(CallbacksTest, CallbackMayCancelItsOwnHandleWhileRunning) {
    auto token = std::make_shared<int>(41);
    int seen = 0;
    auto self = std::make_shared<Handle>();
    *self = loop->call_soon([&seen, self, token] {
        self->cancel();
        seen = *token + 1;  // the capture must still be alive here
    });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(seen, 42);
    EXPECT_TRUE(self->cancelled());
    self->cancel();
    *self = Handle();  // breaks the handle -> callback -> self cycle
}

// ---- Exceptions in callbacks ----

// Ports test_events.HandleTests.test_callback_with_exception and
// test_base_events.BaseEventLoopTests.test_set_exc_handler_custom.
TEST_F(CallbacksTest, ExceptionInCallbackGoesToExceptionHandlerAndLoopContinues) {
    std::vector<ExceptionContext> contexts;
    loop->set_exception_handler([&](EventLoop& l, const ExceptionContext& context) {
        EXPECT_EQ(&l, loop.get());
        contexts.push_back(context);
    });
    bool later_ran = false;
    Handle failing = loop->call_soon([] { throw std::runtime_error("boom"); });
    loop->call_soon([&] { later_ran = true; });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();

    EXPECT_TRUE(later_ran);
    ASSERT_EQ(contexts.size(), 1U);
    EXPECT_EQ(contexts[0].message.rfind("Exception in callback", 0), 0U) << contexts[0].message;
    EXPECT_TRUE(contexts[0].handle == failing);
    ASSERT_TRUE(contexts[0].exception);
    try {
        std::rethrow_exception(contexts[0].exception);
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "boom");
    }

    // The loop is still usable.
    bool ran_after = false;
    loop->call_soon([&] { ran_after = true; });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_TRUE(ran_after);
}

// Ports test_base_events.BaseEventLoopTests.test_default_exc_handler_callback.
TEST_F(CallbacksTest, ExceptionInCallbackIsLoggedByDefaultHandler) {
    loop->call_soon([] { throw std::runtime_error("default-handler-boom"); });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_TRUE(log_capture.contains(LogLevel::error, "Exception in callback"));
    EXPECT_TRUE(log_capture.contains(LogLevel::error, "default-handler-boom"));
}

// Ports test_base_events.BaseEventLoopTests.test_set_exc_handler_broken.
TEST_F(CallbacksTest, BrokenExceptionHandlerIsReportedAndLoopContinues) {
    loop->set_exception_handler(
        [](EventLoop&, const ExceptionContext&) { throw std::runtime_error("handler-broke"); });
    bool later_ran = false;
    loop->call_soon([] { throw std::runtime_error("callback-broke"); });
    loop->call_soon([&] { later_ran = true; });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_TRUE(later_ran);
    EXPECT_TRUE(log_capture.contains(LogLevel::error, "Unhandled error in exception handler"));
}

// ---- Closed loop ----

// Ports test_events.EventLoopTestsMixin.test_close (call_soon part).
TEST_F(CallbacksTest, CallSoonAfterCloseThrows) {
    loop->close();
    expect_throw_with_message<RuntimeError>([&] { loop->call_soon([] {}); },
                                            "Event loop is closed");
}

TEST_F(CallbacksTest, CallSoonThreadsafeAfterCloseThrows) {
    loop->close();
    expect_throw_with_message<RuntimeError>([&] { loop->call_soon_threadsafe([] {}); },
                                            "Event loop is closed");
    // From another thread too.
    bool threw = false;
    std::thread other([&] {
        try {
            loop->call_soon_threadsafe([] {});
        } catch (const RuntimeError& e) {
            threw = std::string(e.what()) == "Event loop is closed";
        }
    });
    other.join();
    EXPECT_TRUE(threw);
}

// ---- call_soon_threadsafe ----

// Ports test_events.EventLoopTestsMixin.test_call_soon_threadsafe: a loop
// blocked in the kernel with nothing to do is woken by another thread.
TEST_F(CallbacksTest, CallSoonThreadsafeWakesLoopBlockedWithNothingToDo) {
    std::atomic<bool> callback_ran{false};
    double start = loop->time();  // before the poster starts its 50 ms
    Watchdog watchdog(*loop, 5s);
    std::thread poster([&] {
        std::this_thread::sleep_for(50ms);
        loop->call_soon_threadsafe([&] {
            callback_ran.store(true);
            loop->stop();
        });
    });
    loop->run_forever();
    double elapsed = loop->time() - start;
    poster.join();
    watchdog.disarm();
    EXPECT_FALSE(watchdog.fired) << "the loop was not woken by call_soon_threadsafe";
    EXPECT_TRUE(callback_ran.load());
    EXPECT_GE(elapsed, 0.050 - 1e-6);  // it really waited for the other thread
}

// The same wake-up when the loop sleeps until a far timer rather than forever.
TEST_F(CallbacksTest, CallSoonThreadsafeWakesLoopWaitingForFarTimer) {
    bool timer_ran = false;
    TimerHandle far = loop->call_later(3600.0, [&] { timer_ran = true; });
    std::atomic<bool> callback_ran{false};
    Watchdog watchdog(*loop, 5s);
    std::thread poster([&] {
        std::this_thread::sleep_for(50ms);
        loop->call_soon_threadsafe([&] {
            callback_ran.store(true);
            loop->stop();
        });
    });
    loop->run_forever();
    poster.join();
    watchdog.disarm();
    EXPECT_FALSE(watchdog.fired);
    EXPECT_TRUE(callback_ran.load());
    EXPECT_FALSE(timer_ran);
    far.cancel();
}

// Ports test_events.EventLoopTestsMixin.test_call_soon_threadsafe: a
// callback posted by another thread before the loop thread's call_soon runs
// first ("hello" before "world"), as both append to one ready queue.
TEST_F(CallbacksTest, CallSoonThreadsafeFromOtherThreadKeepsOrderWithLaterCallSoon) {
    std::vector<std::string> results;
    auto callback = [&](const std::string& arg) {
        results.push_back(arg);
        if (results.size() >= 2) {
            loop->stop();
        }
    };
    std::thread other([&] { loop->call_soon_threadsafe([=] { callback("hello"); }); });
    other.join();  // happens-before the call_soon below
    loop->call_soon(callback, std::string("world"));
    loop->run_forever();
    EXPECT_EQ(results, (std::vector<std::string>{"hello", "world"}));
}

// Ports test_events.EventLoopTestsMixin.test_call_soon_threadsafe_same_thread.
TEST_F(CallbacksTest, CallSoonThreadsafeOnLoopThreadKeepsFifoOrderWithCallSoon) {
    std::vector<std::string> results;
    auto callback = [&](const std::string& arg) {
        results.push_back(arg);
        if (results.size() >= 2) {
            loop->stop();
        }
    };
    loop->call_soon_threadsafe([=] { callback("hello"); });
    loop->call_soon(callback, std::string("world"));
    loop->run_forever();
    EXPECT_EQ(results, (std::vector<std::string>{"hello", "world"}));
}

TEST_F(CallbacksTest, CallSoonThreadsafeFromManyThreadsRunsEachCallbackExactlyOnce) {
    constexpr int threads = 4;
    constexpr int per_thread = 10'000;
    constexpr int total = threads * per_thread;
    std::vector<int> runs(total, 0);  // touched by the loop thread only
    int done = 0;
    Watchdog watchdog(*loop, 30s);
    std::vector<std::vector<int>> order(threads);  // per-thread arrival order, loop thread
    std::vector<std::thread> posters;
    for (int t = 0; t < threads; ++t) {
        posters.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                loop->call_soon_threadsafe([&, t, i] {
                    ++runs[t * per_thread + i];
                    order[t].push_back(i);
                    if (++done == total) {
                        loop->stop();
                    }
                });
            }
        });
    }
    loop->run_forever();
    for (std::thread& poster : posters) {
        poster.join();
    }
    watchdog.disarm();
    EXPECT_FALSE(watchdog.fired);
    ASSERT_EQ(done, total);
    for (int i = 0; i < total; ++i) {
        ASSERT_EQ(runs[i], 1) << "callback " << i;
    }
    // Each thread's callbacks run in the order it posted them.
    for (int t = 0; t < threads; ++t) {
        ASSERT_EQ(order[t].size(), static_cast<std::size_t>(per_thread));
        for (int i = 0; i < per_thread; ++i) {
            ASSERT_EQ(order[t][i], i) << "thread " << t;
        }
    }
    // Nothing runs twice later either.
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_EQ(done, total);
}

TEST_F(CallbacksTest, CallSoonThreadsafeHandleCanBeCancelledBeforeItRuns) {
    bool ran = false;
    Handle handle;
    std::thread other([&] { handle = loop->call_soon_threadsafe([&] { ran = true; }); });
    other.join();
    handle.cancel();
    EXPECT_TRUE(handle.cancelled());
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_FALSE(ran);
}

// ---- Thread checks (debug mode) ----

// Ports test_base_events.BaseEventLoopTests.test_check_thread (debug on):
// while the loop runs, call_soon, call_later and call_at from another thread
// throw asyncio's RuntimeError.
TEST_F(CallbacksTest, DebugModeRejectsCallSoonFromAnotherThreadWhileRunning) {
    loop->set_debug(true);
    const std::string expected =
        "Non-thread-safe operation invoked on an event loop other than the current one";
    std::atomic<bool> loop_running{false};
    std::vector<std::string> errors;  // written by the other thread before it posts
    Future<void> finished = loop->create_future<void>();
    std::thread other([&] {
        while (!loop_running.load()) {
            std::this_thread::yield();
        }
        auto record = [&](const char* what, auto&& fn) {
            try {
                fn();
                errors.push_back(std::string(what) + ": did not throw");
            } catch (const RuntimeError& e) {
                errors.push_back(e.what());
            }
        };
        record("call_soon", [&] { loop->call_soon([] {}); });
        record("call_later", [&] { loop->call_later(60.0, [] {}); });
        record("call_at", [&] { loop->call_at(loop->time() + 60.0, [] {}); });
        loop->call_soon_threadsafe([&finished]() mutable { finished.set_result(); });
    });
    loop->call_soon([&] { loop_running.store(true); });
    loop->run_until_complete(finished);
    other.join();
    EXPECT_EQ(errors, (std::vector<std::string>{expected, expected, expected}));
}

// asyncio's create_task schedules the task's first step with call_soon, so
// in debug mode it meets the same check (CPython 3.13 raises here too).
TEST_F(CallbacksTest, DebugModeRejectsCreateTaskFromAnotherThreadWhileRunning) {
    loop->set_debug(true);
    std::atomic<bool> loop_running{false};
    std::string error = "did not throw";  // written by the other thread before it posts
    bool task_ran = false;
    Future<void> finished = loop->create_future<void>();
    std::thread other([&] {
        while (!loop_running.load()) {
            std::this_thread::yield();
        }
        // Give the loop time to go to sleep: should the check be missing,
        // the unchecked call then at least does not race with a batch.
        std::this_thread::sleep_for(20ms);
        try {
            loop->create_task([&task_ran] { task_ran = true; });
        } catch (const RuntimeError& e) {
            error = e.what();
        }
        loop->call_soon_threadsafe([&finished]() mutable { finished.set_result(); });
    });
    loop->call_soon([&] { loop_running.store(true); });
    loop->run_until_complete(finished);
    other.join();
    EXPECT_EQ(error,
              "Non-thread-safe operation invoked on an event loop other than the current one");
    // Should it have been accepted, let it finish before teardown.
    run_until([this] { return loop->live_task_count() == 0; });
    EXPECT_FALSE(task_ran);
}

// Ports test_base_events.BaseEventLoopTests.test_check_thread (debug off)
// without its data race: the only cross-thread call is the thread-safe one,
// which no mode rejects.
TEST_F(CallbacksTest, CallSoonThreadsafeFromAnotherThreadNeverThrowsInEitherMode) {
    for (bool debug : {false, true}) {
        SCOPED_TRACE(debug ? "debug" : "non-debug");
        loop->set_debug(debug);
        std::atomic<bool> loop_running{false};
        std::atomic<bool> threw{false};
        bool ran = false;
        std::thread other([&] {
            while (!loop_running.load()) {
                std::this_thread::yield();
            }
            try {
                loop->call_soon_threadsafe([&] {
                    ran = true;
                    loop->stop();
                });
            } catch (...) {
                threw.store(true);
                loop->call_soon_threadsafe([&] { loop->stop(); });
            }
        });
        loop->call_soon([&] { loop_running.store(true); });
        loop->run_forever();
        other.join();
        EXPECT_FALSE(threw.load());
        EXPECT_TRUE(ran);
    }
}

// asyncio's _check_thread checks only a running loop: before run, another
// thread may set it up (joined before the loop runs, so there is no race).
TEST_F(CallbacksTest, DebugModeAllowsCallSoonFromAnotherThreadBeforeTheLoopRuns) {
    loop->set_debug(true);
    bool ran = false;
    bool threw = false;
    std::thread other([&] {
        try {
            loop->call_soon([&] { ran = true; });
        } catch (...) {
            threw = true;
        }
    });
    other.join();
    EXPECT_FALSE(threw);
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_TRUE(ran);
}

// ---- Debug mode: slow callbacks ----

// Ports test_base_events.BaseEventLoopTests.test_log_slow_callbacks (callback).
TEST_F(CallbacksTest, DebugModeLogsSlowCallbacks) {
    loop->set_debug(true);
    loop->slow_callback_duration = 0.01;
    loop->call_soon([] { std::this_thread::sleep_for(50ms); });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    bool found = false;
    for (const auto& [level, message] : log_capture.messages()) {
        if (level == LogLevel::warning && message.rfind("Executing <Handle", 0) == 0 &&
            message.find(" took ") != std::string::npos &&
            message.find(" seconds") != std::string::npos) {
            found = true;
        }
    }
    EXPECT_TRUE(found) << "no 'Executing <Handle ...> took N seconds' warning";
    EXPECT_TRUE(log_capture.contains(LogLevel::warning, "Executing"));
    EXPECT_TRUE(log_capture.contains(LogLevel::warning, "took"));
}

// Ports test_base_events.BaseEventLoopTests.test_log_slow_callbacks (task).
TEST_F(CallbacksTest, DebugModeLogsSlowTaskSteps) {
    loop->set_debug(true);
    loop->slow_callback_duration = 0.01;
    auto task = loop->create_task([] { std::this_thread::sleep_for(50ms); }, "slow-task");
    loop->run_until_complete(task);
    EXPECT_TRUE(log_capture.contains(LogLevel::warning, "Executing <Task"));
    EXPECT_TRUE(log_capture.contains(LogLevel::warning, "slow-task"));
}

TEST_F(CallbacksTest, SlowCallbacksAreNotLoggedWhenDebugIsOff) {
    loop->set_debug(false);
    loop->slow_callback_duration = 0.01;
    loop->call_soon([] { std::this_thread::sleep_for(50ms); });
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_FALSE(log_capture.contains(LogLevel::warning, "Executing"));
    EXPECT_FALSE(log_capture.contains(LogLevel::warning, "took"));
}

TEST_F(CallbacksTest, FastCallbacksAreNotLoggedInDebugMode) {
    loop->set_debug(true);
    loop->slow_callback_duration = 10.0;
    loop->call_soon([] {});
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
    EXPECT_FALSE(log_capture.contains(LogLevel::warning, "Executing"));
}

// Ports test_base_events.BaseEventLoopTests.test_set_debug.
TEST_F(CallbacksTest, SetDebugTogglesGetDebug) {
    loop->set_debug(true);
    EXPECT_TRUE(loop->get_debug());
    loop->set_debug(false);
    EXPECT_FALSE(loop->get_debug());
}

}  // namespace
}  // namespace shardloop
