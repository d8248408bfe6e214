// Task<R> (runtime/task.hpp): tasks as fibers. When the first step runs,
// results and exceptions, names, await rules, cancellation (messages,
// must_cancel, cancelling/uncancel), task factories and eager starts, the
// "never retrieved" report, exception state across switches, and stack
// use. Ported from CPython's test_asyncio/test_tasks.py (BaseTaskTests),
// test_base_events.py and test_eager_task_factory.py where noted.

#include <gtest/gtest.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

struct Report {
    std::string message;
    std::exception_ptr exception;
    std::string future_repr;
    std::string task_repr;
};

class TasksTest : public testing::LoopTest {
protected:
    // One iteration of the loop (asyncio's test_utils.run_briefly).
    void run_briefly() {
        loop->call_soon([this] { loop->stop(); });
        loop->run_forever();
    }

    void record_reports() {
        loop->set_exception_handler([this](EventLoop&, const ExceptionContext& context) {
            reports.push_back(Report{context.message, context.exception,
                                     context.future ? context.future.repr() : "",
                                     context.task ? context.task.repr() : ""});
        });
    }

    std::vector<Report> reports;
};

// The message of the CancelledError that `fn` throws (fails the test if none).
template <class F>
std::string cancelled_message(F&& fn) {
    try {
        fn();
    } catch (const CancelledError& e) {
        return e.message();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected CancelledError, got: " << e.what();
        return "<wrong exception>";
    }
    ADD_FAILURE() << "expected CancelledError, nothing thrown";
    return "<nothing thrown>";
}

// The what() of the exception behind `error` (empty for null).
std::string what_of(const std::exception_ptr& error) {
    if (!error) {
        return "";
    }
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "<not a std::exception>";
    }
}

// Records its destruction: a RAII object on a task's stack.
struct DestructionProbe {
    explicit DestructionProbe(bool& flag) : destroyed(flag) {}
    ~DestructionProbe() { destroyed = true; }
    bool& destroyed;
};

// ---- Running, results, exceptions ----

TEST_F(TasksTest, CreateTaskRunsTheFunctionOnTheNextIterationNotInline) {
    bool ran = false;
    auto task = loop->create_task([&] { ran = true; });
    EXPECT_FALSE(ran) << "create_task must not run the function inline";
    EXPECT_FALSE(task.done());
    run_briefly();
    EXPECT_TRUE(ran);
    EXPECT_TRUE(task.done());
}

// Ports test_tasks BaseTaskTests.test_task_basics.
TEST_F(TasksTest, TaskResultIsTheFunctionsReturnValue) {
    auto outer = loop->create_task([this] {
        auto inner1 = loop->create_task([] { return 42; });
        auto inner2 = loop->create_task([] { return 1000; });
        return await(inner1) + await(inner2);
    });
    EXPECT_EQ(loop->run_until_complete(outer), 1042);
    EXPECT_TRUE(outer.done());
    EXPECT_EQ(outer.result(), 1042);
    EXPECT_EQ(outer.exception(), nullptr);
}

TEST_F(TasksTest, RunUntilCompleteWithAFunctionWrapsItInATask) {
    std::optional<AnyTask> seen;
    int result = loop->run_until_complete([&] {
        seen = current_task();
        return 5;
    });
    EXPECT_EQ(result, 5);
    EXPECT_TRUE(seen.has_value());
}

struct TaskFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

TEST_F(TasksTest, TaskExceptionIsTheFunctionsException) {
    auto task = loop->create_task([]() -> int { throw TaskFailure("task failed"); });
    EXPECT_THROW(loop->run_until_complete(task), TaskFailure);
    EXPECT_TRUE(task.done());
    EXPECT_FALSE(task.cancelled());
    EXPECT_EQ(what_of(task.exception()), "task failed");
    EXPECT_THROW((void)task.result(), TaskFailure);
}

TEST_F(TasksTest, TaskAwaitingAFailedTaskSeesItsException) {
    auto failing = loop->create_task([]() -> int { throw TaskFailure("inner failure"); });
    auto awaiting = loop->create_task([failing] {
        try {
            return await(failing);
        } catch (const TaskFailure& e) {
            return std::string(e.what()) == "inner failure" ? -1 : -2;
        }
    });
    EXPECT_EQ(loop->run_until_complete(awaiting), -1);
}

TEST_F(TasksTest, TaskAwaitingAnotherTaskGetsItsResultOnceItIsDone) {
    Future<int> gate = loop->create_future<int>();
    auto inner = loop->create_task([gate] { return await(gate) * 2; });
    auto outer = loop->create_task([inner] { return await(inner) + 1; });
    run_briefly();
    run_briefly();
    EXPECT_FALSE(outer.done());
    gate.set_result(20);
    EXPECT_EQ(loop->run_until_complete(outer), 41);
    EXPECT_TRUE(inner.done());
}

template <class F>
concept CanSetResult = requires(F f) {
    f.set_result(1);
};
template <class F>
concept CanSetException = requires(F f) {
    f.set_exception(std::runtime_error("x"));
};

// A task's result comes from its function only: Task deletes the setters
// (asyncio raises "Task does not support set_result operation").
// Ports test_tasks BaseTaskTests.test_task_set_methods, at compile time.
TEST_F(TasksTest, TaskHasNoSetResultOrSetException) {
    static_assert(!CanSetResult<Task<int>>);
    static_assert(!CanSetException<Task<int>>);
    static_assert(CanSetResult<Future<int>>);
    static_assert(CanSetException<Future<int>>);
    auto task = loop->create_task([] { return 7; });
    EXPECT_EQ(loop->run_until_complete(task), 7);
}

// ---- Names ----

// Ports test_tasks BaseTaskTests.test_task_repr_autogenerated.
TEST_F(TasksTest, TaskNamesDefaultToTaskNWithIncreasingNumbers) {
    auto t1 = loop->create_task([] { return 123; });
    auto t2 = loop->create_task([] { return 123; });
    // "Task-<digits>": the number that follows the prefix, or -1.
    auto task_number = [](const std::string& name) {
        const std::string prefix = "Task-";
        if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size() ||
            name.find_first_not_of("0123456789", prefix.size()) != std::string::npos) {
            return -1;
        }
        return std::stoi(name.substr(prefix.size()));
    };
    std::string n1 = t1.get_name();
    std::string n2 = t2.get_name();
    ASSERT_GE(task_number(n1), 0) << n1;
    ASSERT_GE(task_number(n2), 0) << n2;
    EXPECT_LT(task_number(n1), task_number(n2));
    EXPECT_EQ(t1.repr().rfind("<Task pending name='" + n1 + "'", 0), 0U) << t1.repr();
    EXPECT_NE(t1.repr(), t2.repr());
    loop->run_until_complete(t1);
    loop->run_until_complete(t2);
    EXPECT_EQ(t1.repr(), "<Task finished name='" + n1 + "'>");
}

TEST_F(TasksTest, SetNameAndGetName) {
    auto task = loop->create_task([] {}, "given");
    EXPECT_EQ(task.get_name(), "given");
    task.set_name("renamed");
    EXPECT_EQ(task.get_name(), "renamed");
    EXPECT_NE(task.repr().find("name='renamed'"), std::string::npos) << task.repr();
    loop->run_until_complete(task);
}

// ---- await rules ----

TEST_F(TasksTest, AwaitOutsideATaskThrowsRuntimeError) {
    Future<int> f = loop->create_future<int>();
    EXPECT_THROW(await(f), RuntimeError);

    bool threw = false;
    loop->call_soon([&] {
        try {
            await(f);
        } catch (const RuntimeError&) {
            threw = true;
        }
    });
    run_briefly();
    EXPECT_TRUE(threw) << "a plain callback must not be able to wait";
}

// Ports test_tasks BaseTaskTests.test_other_loop_future.
TEST_F(TasksTest, AwaitingAFutureOfAnotherLoopThrowsRuntimeError) {
    std::shared_ptr<EventLoop> other = new_event_loop();
    {
        Future<int> foreign = other->create_future<int>();
        auto task = loop->create_task([foreign] { return await(foreign); });
        try {
            loop->run_until_complete(task);
            ADD_FAILURE() << "awaiting another loop's future must fail";
        } catch (const RuntimeError& e) {
            std::string what = e.what();
            std::size_t task = what.find("Task ");
            std::size_t got = what.find(" got Future ");
            std::size_t attached = what.find(" attached");
            EXPECT_TRUE(task == 0 && got != std::string::npos && attached != std::string::npos &&
                        got < attached)
                << what;
        }
        EXPECT_FALSE(foreign.done());
    }
    other->close();
}

// Ports test_tasks BaseTaskTests.test_task_awaits_on_itself.
TEST_F(TasksTest, TaskAwaitingItselfThrowsRuntimeError) {
    Task<void> task;
    task = loop->create_task([&task] { await(task); });
    try {
        loop->run_until_complete(task);
        ADD_FAILURE() << "a task awaiting itself must fail";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("Task cannot await on itself"), std::string::npos)
            << e.what();
    }
}

// ---- current_task ----

// Ports test_tasks BaseTaskTests.test_current_task.
TEST_F(TasksTest, CurrentTaskIsTheRunningTaskInsideAndNoneOutside) {
    EXPECT_FALSE(current_task().has_value());
    Task<void> task;
    bool matched = false;
    task = loop->create_task([&] {
        std::optional<AnyTask> current = current_task();
        matched = current.has_value() && current->state() == task.state();
    });
    loop->run_until_complete(task);
    EXPECT_TRUE(matched);
    EXPECT_FALSE(current_task().has_value());

    bool in_callback = true;
    loop->call_soon([&] { in_callback = current_task().has_value(); });
    run_briefly();
    EXPECT_FALSE(in_callback) << "a plain callback runs in no task";
}

// Ports test_tasks BaseTaskTests.test_current_task_with_interleaving_tasks.
TEST_F(TasksTest, CurrentTaskFollowsInterleavingTasks) {
    Future<bool> fut1 = loop->create_future<bool>();
    Future<bool> fut2 = loop->create_future<bool>();
    Task<void> task1;
    Task<void> task2;
    std::vector<bool> checks;
    auto is_current = [](const AnyFuture& task) {
        std::optional<AnyTask> current = current_task();
        return current.has_value() && current->state() == task.state();
    };
    task1 = loop->create_task([&]() mutable {
        checks.push_back(is_current(task1));
        await(fut1);
        checks.push_back(is_current(task1));
        fut2.set_result(true);
    });
    task2 = loop->create_task([&]() mutable {
        checks.push_back(is_current(task2));
        fut1.set_result(true);
        await(fut2);
        checks.push_back(is_current(task2));
    });
    loop->run_until_complete(task1);
    loop->run_until_complete(task2);
    EXPECT_EQ(checks, (std::vector<bool>{true, true, true, true}));
    EXPECT_FALSE(current_task().has_value());
}

// ---- Cancellation ----

// Ports test_tasks BaseTaskTests.test_cancel.
TEST_F(TasksTest, CancelOfASleepingTaskCancelsIt) {
    auto task = loop->create_task([] {
        await(sleep(10.0));
        return 12;
    });
    loop->call_soon([task]() mutable { task.cancel(); });
    double start = loop->time();
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_LT(loop->time() - start, 9.0) << "the sleep must end at the cancel, not at its deadline";
    EXPECT_TRUE(task.done());
    EXPECT_TRUE(task.cancelled());
    EXPECT_FALSE(task.cancel());
}

// Ports test_tasks BaseTaskTests.test_task_cancel_waiter_future, with the
// message of test_task_cancel_message_getter.
TEST_F(TasksTest, CancelWhileAwaitingAFutureThrowsCancelledErrorWithTheMessage) {
    Future<int> fut = loop->create_future<int>();
    std::string seen_in_body = "<not reached>";
    auto task = loop->create_task([&, fut] {
        try {
            await(fut);
        } catch (const CancelledError& e) {
            seen_in_body = e.message();
            throw;
        }
    });
    run_briefly();
    EXPECT_TRUE(task.cancel("my message"));
    EXPECT_TRUE(fut.cancelled()) << "cancel() of a waiting task cancels the future it waits for";
    EXPECT_EQ(cancelled_message([&] { loop->run_until_complete(task); }), "my message");
    EXPECT_EQ(seen_in_body, "my message");
    EXPECT_TRUE(task.cancelled());
    EXPECT_EQ(cancelled_message([&] { task.result(); }), "my message");
}

// Ports test_tasks BaseTaskTests.test_cancel_with_message_then_future_result
// and test_cancel_with_message_then_future_exception.
TEST_F(TasksTest, CancelMessagePropagatesThroughResultAndException) {
    for (bool use_exception : {false, true}) {
        for (std::string message : {std::string(), std::string("my message")}) {
            auto outer = loop->create_task([this, message, use_exception] {
                auto inner = loop->create_task([] { await(sleep(10)); });
                yield_now();
                inner.cancel(message);
                // asyncio.wait([task]): wait for it without raising.
                Future<void> finished = loop->create_future<void>();
                inner.add_done_callback(
                    [finished](const Future<void>&) mutable { finished.set_result(); });
                await(finished);
                if (use_exception) {
                    (void)inner.exception();
                } else {
                    inner.result();
                }
            });
            EXPECT_EQ(cancelled_message([&] { loop->run_until_complete(outer); }), message)
                << (use_exception ? "exception()" : "result()");
            EXPECT_TRUE(outer.cancelled());
        }
    }
}

// Ports test_tasks BaseTaskTests.test_cancel_with_message_before_starting_task:
// a task cancelled before its first step never runs its function.
TEST_F(TasksTest, CancelBeforeTheFirstStepMeansTheFunctionNeverRuns) {
    bool ran = false;
    bool destroyed = false;
    auto probe = std::make_shared<DestructionProbe>(destroyed);
    auto task = loop->create_task([&ran, probe] { ran = true; });
    probe.reset();
    EXPECT_TRUE(task.cancel("my message"));
    EXPECT_EQ(cancelled_message([&] { loop->run_until_complete(task); }), "my message");
    EXPECT_FALSE(ran);
    EXPECT_TRUE(task.cancelled());
    EXPECT_TRUE(destroyed) << "the never-run function (and its captures) is dropped";
}

// Ports test_tasks BaseTaskTests.test_cancel_yield.
TEST_F(TasksTest, CancelBetweenYieldsCancelsAtTheNextYield) {
    int steps = 0;
    auto task = loop->create_task([&] {
        ++steps;
        yield_now();
        ++steps;
        yield_now();
        ++steps;
        return 12;
    });
    run_briefly();
    EXPECT_EQ(steps, 1);
    EXPECT_TRUE(task.cancel());
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_EQ(steps, 1);
    EXPECT_TRUE(task.done());
    EXPECT_TRUE(task.cancelled());
    EXPECT_FALSE(task.cancel());
}

// Ports test_tasks BaseTaskTests.test_cancel_inner_future.
TEST_F(TasksTest, CancellingTheAwaitedFutureCancelsTheTask) {
    Future<int> f = loop->create_future<int>();
    auto task = loop->create_task([f] {
        await(f);
        return 12;
    });
    run_briefly();
    f.cancel();
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_TRUE(f.cancelled());
    EXPECT_TRUE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_cancel_both_task_and_inner_future.
TEST_F(TasksTest, CancellingBothTheTaskAndItsFutureCancelsTheTask) {
    Future<int> f = loop->create_future<int>();
    auto task = loop->create_task([f] {
        await(f);
        return 12;
    });
    run_briefly();
    f.cancel();
    task.cancel();
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_TRUE(task.done());
    EXPECT_TRUE(f.cancelled());
    EXPECT_TRUE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_cancel_task_catching.
TEST_F(TasksTest, TaskThatCatchesCancelledErrorAndReturnsIsNotCancelled) {
    Future<void> fut1 = loop->create_future<void>();
    Future<void> fut2 = loop->create_future<void>();
    auto task = loop->create_task([fut1, fut2] {
        await(fut1);
        try {
            await(fut2);
        } catch (const CancelledError&) {
            return 42;
        }
        return 0;
    });
    run_briefly();
    fut1.set_result();
    run_briefly();
    run_briefly();
    EXPECT_TRUE(task.cancel());
    EXPECT_TRUE(fut2.cancelled());
    EXPECT_EQ(loop->run_until_complete(task), 42);
    EXPECT_FALSE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_cancel_task_ignoring.
TEST_F(TasksTest, TaskThatIgnoresCancelledErrorGoesOnAwaiting) {
    Future<void> fut1 = loop->create_future<void>();
    Future<void> fut2 = loop->create_future<void>();
    Future<int> fut3 = loop->create_future<int>();
    bool waiting_for_fut3 = false;
    auto task = loop->create_task([&, fut1, fut2, fut3] {
        await(fut1);
        try {
            await(fut2);
        } catch (const CancelledError&) {
        }
        waiting_for_fut3 = true;
        return await(fut3);
    });
    run_briefly();
    fut1.set_result();
    run_briefly();
    run_briefly();
    EXPECT_TRUE(task.cancel());
    EXPECT_TRUE(fut2.cancelled());
    run_until([&] { return waiting_for_fut3; });
    run_briefly();
    fut3.set_result(42);
    EXPECT_EQ(loop->run_until_complete(task), 42);
    EXPECT_FALSE(fut3.cancelled());
    EXPECT_FALSE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_cancel_current_task: a task that
// cancels itself and then awaits a sleep has that sleep cancelled at once
// (asyncio's __step cancels the newly awaited future when _must_cancel is set).
TEST_F(TasksTest, TaskCancellingItselfHasTheNextAwaitedFutureCancelled) {
    Task<int> task;
    Future<void> slept;
    task = loop->create_task([&] {
        task.cancel();
        slept = sleep(100);
        await(slept);
        return 12;
    });
    EXPECT_FALSE(task.cancelled());
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_TRUE(task.done());
    EXPECT_TRUE(task.cancelled());
    EXPECT_FALSE(task.cancel());
    ASSERT_TRUE(slept.valid());
    EXPECT_TRUE(slept.cancelled()) << "the sleep the cancelled task awaited must be cancelled";
    if (!slept.done()) {
        slept.cancel();  // cleanup after a failure: drop its 100 s timer
        run_briefly();
    }
}

// Ports test_tasks BaseTaskTests.test_cancel_at_end: cancel() arrives after
// the last await; the function returns normally, and the task is cancelled
// anyway (must_cancel).
TEST_F(TasksTest, TaskCancellingItselfThenReturningIsCancelled) {
    Task<int> task;
    task = loop->create_task([&] {
        EXPECT_TRUE(task.cancel());
        return 12;
    });
    EXPECT_FALSE(task.cancelled());
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_TRUE(task.done());
    EXPECT_TRUE(task.cancelled());
    EXPECT_FALSE(task.cancel());
}

// Ports test_tasks BaseTaskTests.test_cancel_awaited_task (bpo-34872): a
// task that is cancelled while not blocked (here: it cancels itself) and
// then awaits another task must cancel that task too.
TEST_F(TasksTest, CancelledTaskThatAwaitsAnotherTaskCancelsIt) {
    Future<void> fut = loop->create_future<void>();
    Task<void> task;
    Task<void> nested;
    task = loop->create_task([&] {
        nested = loop->create_task([fut] { await(fut); });
        yield_now();
        task.cancel();
        await(nested);
    });
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_TRUE(task.cancelled());
    ASSERT_TRUE(nested.valid());
    EXPECT_TRUE(nested.cancelled());
    EXPECT_TRUE(fut.cancelled());
    if (!nested.done()) {
        nested.cancel();  // cleanup after a failure
        run_until([&] { return nested.done(); });
    }
}

TEST_F(TasksTest, BodyRaisingCancelledErrorByItselfCancelsTheTask) {
    auto task = loop->create_task([]() -> int { throw CancelledError("self-made"); });
    EXPECT_EQ(cancelled_message([&] { loop->run_until_complete(task); }), "self-made");
    EXPECT_TRUE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_cancelling.
TEST_F(TasksTest, CancellingCountsCancelRequests) {
    auto task = loop->create_task([] { await(sleep(10)); });
    EXPECT_EQ(task.cancelling(), 0);
    EXPECT_EQ(task.repr().find(" cancelling "), std::string::npos) << task.repr();
    EXPECT_TRUE(task.cancel());
    EXPECT_EQ(task.cancelling(), 1);
    EXPECT_NE(task.repr().find(" cancelling "), std::string::npos) << task.repr();
    EXPECT_TRUE(task.cancel()) << "a second request is counted too";
    EXPECT_EQ(task.cancelling(), 2);
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
}

// Ports test_tasks BaseTaskTests.test_uncancel_basic (counters and states).
TEST_F(TasksTest, UncancelWithdrawsACancelRequest) {
    Task<void> task;
    int phase = 0;
    task = loop->create_task([&] {
        try {
            phase = 1;
            await(sleep(10));
        } catch (const CancelledError&) {
            task.uncancel();
            phase = 2;
            await(sleep(10));
        }
    });
    run_until([&] { return phase == 1; });

    EXPECT_TRUE(task.cancel());
    EXPECT_EQ(task.cancelling(), 1);
    EXPECT_FALSE(task.cancelled());
    run_until([&] { return phase == 2; });

    EXPECT_EQ(task.cancelling(), 0);
    EXPECT_EQ(task.repr().find(" cancelling "), std::string::npos) << task.repr();
    EXPECT_FALSE(task.done());

    EXPECT_TRUE(task.cancel());
    EXPECT_EQ(task.cancelling(), 1);
    EXPECT_FALSE(task.cancelled());
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
    EXPECT_TRUE(task.cancelled());
    EXPECT_TRUE(task.done());

    task.uncancel();  // no longer effective once the task is complete
    EXPECT_TRUE(task.cancelled());
    EXPECT_TRUE(task.done());
}

// Ports the repr assertion of test_tasks BaseTaskTests.test_uncancel_basic:
// asyncio's repr says "cancelling" whenever cancelling() > 0 and the task is
// not done, also when cancel() went to the future the task awaits.
TEST_F(TasksTest, ReprSaysCancellingWhileTheAwaitedFutureCarriesTheCancel) {
    bool waiting = false;
    auto task = loop->create_task([&] {
        waiting = true;
        await(sleep(10));
    });
    run_until([&] { return waiting; });
    EXPECT_TRUE(task.cancel());
    EXPECT_EQ(task.cancelling(), 1);
    EXPECT_NE(task.repr().find(" cancelling "), std::string::npos) << task.repr();
    EXPECT_THROW(loop->run_until_complete(task), CancelledError);
}

// Ports test_tasks BaseTaskTests.test_uncancel_resets_must_cancel.
TEST_F(TasksTest, UncancelResetsAPendingMustCancel) {
    Future<void> fut = loop->create_future<void>();
    auto task = loop->create_task([fut] {
        await(fut);
        return 42;
    });
    run_briefly();
    fut.set_result();  // the task is runnable, not yet resumed
    EXPECT_TRUE(task.cancel());
    EXPECT_EQ(task.cancelling(), 1);
    EXPECT_EQ(task.uncancel(), 0);
    EXPECT_EQ(task.cancelling(), 0);
    EXPECT_EQ(loop->run_until_complete(task), 42);
    EXPECT_FALSE(task.cancelled());
}

// Ports test_tasks BaseTaskTests.test_uncancel_structured_blocks: a timeout
// built from call_later + cancel + uncancel, converting only its own
// cancellation into TimeoutError.
TEST_F(TasksTest, UncancelLetsAStructuredTimeoutBlockConvertItsCancellation) {
    using Outcome = std::tuple<bool, bool, bool>;  // timed out, block finished, outer code reached
    auto run_request = [this](double sleep_for, double timeout) {
        auto task = std::make_shared<Task<Outcome>>();
        *task = loop->create_task([this, sleep_for, timeout, self = task.get()]() -> Outcome {
            bool timed_out = false;
            bool block_finished = false;
            TimerHandle timeout_handle = loop->call_later(timeout, [&timed_out, self] {
                timed_out = true;
                self->cancel();
            });
            try {
                bool convert = false;
                try {
                    await(sleep(sleep_for));
                    block_finished = true;
                } catch (const CancelledError&) {
                    timeout_handle.cancel();
                    if (timed_out && self->uncancel() == 0) {
                        convert = true;
                    } else {
                        throw;
                    }
                }
                timeout_handle.cancel();
                if (convert) {
                    throw TimeoutError();
                }
            } catch (const TimeoutError&) {
                EXPECT_TRUE(timed_out);
            }
            bool outer_code_reached = true;
            yield_now();
            return {timed_out, block_finished, outer_code_reached};
        });
        Outcome outcome = loop->run_until_complete(*task);
        EXPECT_EQ(task->cancelling(), 0) << "no pending cancellation of the outer task";
        return outcome;
    };
    EXPECT_EQ(run_request(10.0, 0.1), Outcome(true, false, true));
    EXPECT_EQ(run_request(0.0, 10.0), Outcome(false, true, true));
}

// ---- Task factory ----

// Ports test_base_events BaseEventLoopTests.test_set_task_factory.
TEST_F(TasksTest, TaskFactoryIsCalledForEveryNewTaskAndCanBeReset) {
    EXPECT_FALSE(loop->get_task_factory());
    int created = 0;
    EventLoop* factory_loop = nullptr;
    auto factory = [&](EventLoop& l, AnyTask task) {
        ++created;
        factory_loop = &l;
        task.set_name("factory-" + task.get_name());
    };
    loop->set_task_factory(factory);
    ASSERT_TRUE(loop->get_task_factory());
    EXPECT_NE(loop->get_task_factory().target<decltype(factory)>(), nullptr);

    auto first = loop->create_task([] { return 1; });
    EXPECT_EQ(created, 1);
    EXPECT_EQ(factory_loop, loop.get());
    EXPECT_EQ(first.get_name().rfind("factory-Task-", 0), 0U) << first.get_name();
    auto named = loop->create_task([] { return 2; }, "explicit");
    EXPECT_EQ(named.get_name(), "factory-explicit");
    EXPECT_EQ(loop->run_until_complete(first), 1);
    EXPECT_EQ(loop->run_until_complete(named), 2);

    loop->set_task_factory(nullptr);
    EXPECT_FALSE(loop->get_task_factory());
    auto plain = loop->create_task([] { return 3; });
    EXPECT_EQ(created, 2);
    EXPECT_EQ(plain.get_name().rfind("Task-", 0), 0U) << plain.get_name();
    EXPECT_EQ(loop->run_until_complete(plain), 3);
}

TEST_F(TasksTest, TaskFactoryThatStartsTheTaskDoesNotStartItTwice) {
    loop->set_task_factory([](EventLoop&, AnyTask task) { task.start(); });
    int runs = 0;
    auto task = loop->create_task([&] { ++runs; });
    EXPECT_EQ(runs, 0) << "start() schedules the first step; it does not run it";
    loop->run_until_complete(task);
    run_briefly();
    EXPECT_EQ(runs, 1);
}

// asyncio: when the task factory raises, create_task raises and no task
// exists (the factory is what creates it). Here the task object exists
// before the factory runs; it must not be left registered and pending.
TEST_F(TasksTest, TaskFactoryThatThrowsLeavesNoPendingTask) {
    loop->set_task_factory([](EventLoop&, AnyTask) { throw std::runtime_error("factory failed"); });
    bool ran = false;
    EXPECT_THROW(loop->create_task([&] { ran = true; }), std::runtime_error);
    loop->set_task_factory(nullptr);
    run_briefly();
    EXPECT_FALSE(ran);
    EXPECT_EQ(loop->live_task_count(), 0U) << "the task the factory refused is still registered";
}

// Mirrors asyncio's create_eager_task_factory: the factory starts every new
// task eagerly (asyncio itself only does so while the loop runs, see
// EagerFactoryDefersTheStartWhileTheLoopIsNotRunning).
void set_eager_factory(EventLoop& loop) {
    loop.set_task_factory([](EventLoop&, AnyTask task) { task.start_eagerly(); });
}

// Ports test_eager_task_factory EagerTaskFactoryLoopTests.test_eager_completion
// and test_await_future_during_eager_step.
TEST_F(TasksTest, EagerStartRunsABodyWithoutAwaitsToCompletionInsideCreateTask) {
    auto result = loop->run_until_complete([this] {
        set_eager_factory(*loop);
        Future<std::string> fut = loop->create_future<std::string>();
        auto t = loop->create_task([fut]() mutable {
            fut.set_result("my message");
            return std::string("hello");
        });
        EXPECT_TRUE(t.done()) << "the eager step completed the task";
        EXPECT_TRUE(fut.done());
        return await(t) + " " + await(fut);
    });
    EXPECT_EQ(result, "hello my message");
}

// Ports test_eager_task_factory EagerTaskFactoryLoopTests.test_block_after_eager_step
// and test_current_task.
TEST_F(TasksTest, EagerStartRunsTheBodyUpToItsFirstAwaitSynchronously) {
    std::vector<std::string> steps;
    auto result = loop->run_until_complete([&] {
        std::optional<AnyTask> outer = current_task();
        set_eager_factory(*loop);
        Task<std::string> t;
        bool eager_saw_itself = false;
        bool same_after_blocking = false;
        t = loop->create_task([&] {
            steps.push_back("eager step");
            std::optional<AnyTask> me = current_task();
            eager_saw_itself = me.has_value() && outer.has_value() && me->state() != outer->state();
            await(sleep(0.01));
            std::optional<AnyTask> again = current_task();
            same_after_blocking =
                again.has_value() && me.has_value() && again->state() == me->state();
            steps.push_back("after blocking");
            return std::string("finished after blocking");
        });
        steps.push_back("create_task returned");
        EXPECT_FALSE(t.done());
        std::optional<AnyTask> back = current_task();
        EXPECT_TRUE(back.has_value() && outer.has_value() && back->state() == outer->state())
            << "the creating task is current again after the eager step";
        std::string r = await(t);
        EXPECT_TRUE(eager_saw_itself);
        EXPECT_TRUE(same_after_blocking);
        EXPECT_TRUE(t.done());
        return r;
    });
    EXPECT_EQ(result, "finished after blocking");
    EXPECT_EQ(steps,
              (std::vector<std::string>{"eager step", "create_task returned", "after blocking"}));
}

// Ports test_eager_task_factory EagerTaskFactoryLoopTests.test_cancellation_after_eager_completion.
TEST_F(TasksTest, CancelAfterEagerCompletionReturnsFalse) {
    auto result = loop->run_until_complete([this] {
        set_eager_factory(*loop);
        auto t = loop->create_task([] { return std::string("finished without blocking"); });
        EXPECT_FALSE(t.cancel());
        std::string r = await(t);
        EXPECT_FALSE(t.cancelled());
        return r;
    });
    EXPECT_EQ(result, "finished without blocking");
}

// Ports test_eager_task_factory
// EagerTaskFactoryLoopTests.test_cancellation_after_eager_step_blocks.
TEST_F(TasksTest, CancelAfterTheEagerStepBlocksCancelsWithTheMessage) {
    auto outer = loop->create_task([this] {
        set_eager_factory(*loop);
        auto t = loop->create_task([] {
            await(sleep(0.1));
            return std::string("finished after blocking");
        });
        t.cancel("cancellation message");
        EXPECT_GT(t.cancelling(), 0);
        await(t);
    });
    EXPECT_EQ(cancelled_message([&] { loop->run_until_complete(outer); }), "cancellation message");
}

// Ports test_eager_task_factory BaseTaskCountingTests.test_awaitables_chain /
// test_recursive_gather: eager tasks created from eager steps nest, each
// eager step running on its own fiber inside its creator's.
TEST_F(TasksTest, EagerTasksCreatedDuringEagerStepsNest) {
    for (bool leaf_blocks : {false, true}) {
        std::function<int(int)> chain = [&](int depth) -> int {
            if (depth == 0) {
                if (leaf_blocks) {
                    await(sleep(0.001));
                }
                return 0;
            }
            auto child = loop->create_task([&chain, depth] { return chain(depth - 1); });
            EXPECT_EQ(child.done(), !leaf_blocks) << "depth " << depth;
            return 1 + await(child);
        };
        int depth = loop->run_until_complete([&] {
            set_eager_factory(*loop);
            return chain(20);
        });
        loop->set_task_factory(nullptr);
        EXPECT_EQ(depth, 20) << (leaf_blocks ? "blocking leaf" : "synchronous leaf");
    }
}

TEST_F(TasksTest, EagerStepThatThrowsGivesADoneFailedTask) {
    loop->run_until_complete([this] {
        set_eager_factory(*loop);
        auto t = loop->create_task([]() -> int { throw TaskFailure("eager failure"); });
        EXPECT_TRUE(t.done());
        EXPECT_EQ(what_of(t.exception()), "eager failure");
    });
}

// asyncio's Task.__init__ starts eagerly only `if eager_start and
// self._loop.is_running()`, which test_eager_task_factory's run_coro relies
// on ("an eager step is taken only if the event loop is already running"):
// run_until_complete under an eager factory starts its task lazily, so the
// body sees a running loop.
TEST_F(TasksTest, EagerFactoryDefersTheStartWhileTheLoopIsNotRunning) {
    set_eager_factory(*loop);
    bool loop_was_running = false;
    try {
        int result = loop->run_until_complete([&] {
            loop_was_running = get_running_loop_or_null() == loop.get();
            await(sleep(0));
            return 1;
        });
        EXPECT_EQ(result, 1);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "the task failed: " << e.what();
    }
    EXPECT_TRUE(loop_was_running) << "the body ran before the loop was running";
}

// ---- "Task exception was never retrieved" ----

TEST_F(TasksTest, UnretrievedTaskExceptionIsReportedWhenTheTaskIsDropped) {
    record_reports();
    {
        auto task = loop->create_task([]() -> int { throw TaskFailure("task boom"); });
        run_until([&] { return task.done(); });
        run_briefly();
        EXPECT_TRUE(reports.empty()) << "the task object is still referenced";
    }
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].message, "Task exception was never retrieved");
    EXPECT_EQ(what_of(reports[0].exception), "task boom");
    EXPECT_EQ(reports[0].task_repr.rfind("<Task finished name='Task-", 0), 0U)
        << reports[0].task_repr;
    EXPECT_NE(reports[0].task_repr.find("task boom"), std::string::npos) << reports[0].task_repr;
}

TEST_F(TasksTest, TaskWhoseHandleWasDiscardedReportsWhenItFails) {
    record_reports();
    loop->create_task([]() -> int { throw TaskFailure("discarded boom"); });
    run_briefly();
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].message, "Task exception was never retrieved");
}

TEST_F(TasksTest, TaskExceptionRetrievedByAnAwaitingTaskIsNotReported) {
    record_reports();
    {
        auto failing = loop->create_task([]() -> int { throw TaskFailure("seen"); });
        auto awaiting = loop->create_task([failing] {
            try {
                await(failing);
            } catch (const TaskFailure&) {
            }
        });
        loop->run_until_complete(awaiting);
    }
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

// Ports test_tasks BaseTaskTests.test_tb_logger_not_called_after_cancel.
TEST_F(TasksTest, CancelOfAFailedTaskSilencesTheReport) {
    record_reports();
    loop->run_until_complete([this] {
        auto task = loop->create_task([]() -> int { throw std::invalid_argument("TypeError"); });
        await(sleep(0.05));
        EXPECT_FALSE(task.cancel());
    });
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

// asyncio releases a finished task's coroutine frame, whatever way it
// ended; the C++ counterpart is the function and what it captured.
TEST_F(TasksTest, TaskReleasesItsFunctionWhenItFinishes) {
    for (int how = 0; how < 3; ++how) {
        bool destroyed = false;
        auto probe = std::make_shared<DestructionProbe>(destroyed);
        auto task = loop->create_task([probe, how] {
            if (how == 1) {
                throw TaskFailure("thrown");
            }
            if (how == 2) {
                throw CancelledError("cancelled");
            }
        });
        probe.reset();
        run_until([&] { return task.done(); });
        const char* const endings[] = {"returned", "threw", "was cancelled"};
        EXPECT_TRUE(destroyed) << "captures still alive after the task " << endings[how];
        if (how == 1) {
            (void)task.exception();
        }
    }
}

// ---- Loop close ----

// Ports test_tasks BaseTaskTests.test_log_destroyed_pending_task: a task
// still pending when the loop closes is reported, and its stack is unwound.
TEST_F(TasksTest, ClosingTheLoopReportsAndUnwindsAPendingTask) {
    record_reports();
    Future<void> never = loop->create_future<void>();
    bool destroyed = false;
    bool after_await = false;
    auto task = loop->create_task([&, never] {
        DestructionProbe probe(destroyed);
        await(never);
        after_await = true;
    });
    run_briefly();
    EXPECT_FALSE(destroyed);
    loop->close();
    EXPECT_TRUE(destroyed) << "the pending task's stack was unwound";
    EXPECT_FALSE(after_await);
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].message, "Task was destroyed but it is pending!");
    EXPECT_NE(reports[0].task_repr.find(task.get_name()), std::string::npos);
    EXPECT_EQ(loop->live_task_count(), 0U);
    EXPECT_EQ(loop->stack_pool().in_use(), 0U);
}

// asyncio closes a destroyed pending task's coroutine, which frees its
// frame; the C++ counterpart is the task's function and what it captured,
// which must not outlive the unwinding (nor keep the awaited future, and
// through it the task, alive in a cycle). Once the test drops its handles
// to the task and to the future it waited for, the task itself is freed.
TEST_F(TasksTest, ClosingTheLoopReleasesWhatAPendingTaskCaptured) {
    record_reports();
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> captured = token;
    Future<void> never = loop->create_future<void>();
    auto task = loop->create_task([token, never] { await(never); });
    // A done callback lives inside the task object: its capture shows
    // when that object is freed.
    auto task_token = std::make_shared<int>(0);
    std::weak_ptr<int> task_alive = task_token;
    task.add_done_callback([task_token](const Future<void>&) {});
    token.reset();
    task_token.reset();
    run_briefly();
    EXPECT_FALSE(captured.expired()) << "the pending task still needs its captures";
    loop->close();
    EXPECT_TRUE(captured.expired()) << "the unwound task still holds its function's captures";
    task = Task<void>();
    never = Future<void>();
    EXPECT_TRUE(captured.expired()) << "the captures are never released (reference cycle)";
    EXPECT_TRUE(task_alive.expired())
        << "the task object is never freed once nothing refers to it and its future";
}

// ---- Exception state across fiber switches ----

// Two tasks each wait inside a catch block; resumed in the opposite order,
// each `throw;` rethrows its own exception (the C++ runtime's per-thread
// caught-exception chain is saved per fiber).
TEST_F(TasksTest, AwaitInsideACatchBlockKeepsEachTasksOwnExceptionForRethrow) {
    Future<void> gate1 = loop->create_future<void>();
    Future<void> gate2 = loop->create_future<void>();
    std::vector<std::string> current_after_await;
    auto body = [&](Future<void> gate, std::string name) {
        return [&current_after_await, gate, name] {
            try {
                throw TaskFailure(name);
            } catch (...) {
                await(gate);
                current_after_await.push_back(what_of(std::current_exception()));
                throw;
            }
        };
    };
    auto first = loop->create_task(body(gate1, "first"));
    auto second = loop->create_task(body(gate2, "second"));
    run_briefly();
    EXPECT_EQ(std::current_exception(), nullptr) << "the loop's own exception state leaked";
    EXPECT_EQ(std::uncaught_exceptions(), 0);

    gate2.set_result();
    run_until([&] { return second.done(); });
    EXPECT_FALSE(first.done());
    gate1.set_result();
    run_until([&] { return first.done(); });

    EXPECT_EQ(what_of(first.exception()), "first");
    EXPECT_EQ(what_of(second.exception()), "second");
    EXPECT_EQ(current_after_await, (std::vector<std::string>{"second", "first"}));
    EXPECT_EQ(std::current_exception(), nullptr);
}

// ---- Scale and stack ----

TEST_F(TasksTest, ThousandTasksYieldingTenTimesEachRunRoundRobin) {
    constexpr int tasks = 1000;
    constexpr int yields = 10;
    std::vector<int> progress(tasks, 0);
    int round_robin_violations = 0;
    std::vector<Future<void>> all;
    all.reserve(tasks);
    for (int i = 0; i < tasks; ++i) {
        all.push_back(loop->create_task([&progress, &round_robin_violations, i] {
            for (int k = 0; k < yields; ++k) {
                // Round robin: no task is more than one step ahead of another.
                for (int j = 0; j < static_cast<int>(progress.size()); j += 97) {
                    if (progress[j] + 1 < progress[i] || progress[i] + 1 < progress[j]) {
                        ++round_robin_violations;
                    }
                }
                ++progress[i];
                yield_now();
            }
        }));
    }
    auto all_done = gather(all, *loop);
    loop->run_until_complete(all_done);
    for (int i = 0; i < tasks; ++i) {
        ASSERT_EQ(progress[i], yields) << "task " << i;
    }
    EXPECT_EQ(round_robin_violations, 0);
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// Uses `kib` KiB of stack below the caller; returns the lowest address used.
[[gnu::noinline]] std::uintptr_t use_stack(int kib) {
    volatile char buffer[1024];
    buffer[0] = static_cast<char>(kib);
    std::uintptr_t here = reinterpret_cast<std::uintptr_t>(&buffer[0]);
    if (kib <= 1) {
        return here;
    }
    std::uintptr_t deeper = use_stack(kib - 1);
    buffer[1023] = buffer[0];  // keeps the frame alive across the call
    return deeper < here ? deeper : here;
}

TEST_F(TasksTest, DeepRecursionUsingSixtyFourKibOfStackWorksInATask) {
    auto task = loop->create_task([] {
        volatile char top_marker = 0;
        std::uintptr_t top = reinterpret_cast<std::uintptr_t>(&top_marker);
        std::uintptr_t lowest = use_stack(64);
        return top - lowest;
    });
    std::uintptr_t used = loop->run_until_complete(task);
    EXPECT_GE(used, 64U * 1024U - 1024U) << "the recursion did not use the stack it meant to";
}

}  // namespace
}  // namespace shardloop
