// Future<T> (runtime/future.hpp): state, results and exceptions,
// cancellation and its message, done callbacks (scheduled with call_soon, in
// order, with the list copied when scheduled), the "exception was never
// retrieved" report, and move-only and void results. Ported from CPython's
// test_asyncio/test_futures.py (BaseFutureTests, BaseFutureDoneCallbackTests)
// where noted.

#include <gtest/gtest.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using testing::cancelled_message;
using testing::expect_throw_with_message;

// What the loop's exception handler was told, copied out so that no
// reference to the future outlives the report.
class FuturesTest : public testing::LoopTest {};

// ---- State, result, exception ----

// Ports test_futures BaseFutureTests.test_initial_state.
TEST_F(FuturesTest, NewFutureIsPendingAndNotCancelled) {
    Future<int> f = loop->create_future<int>();
    EXPECT_TRUE(f.valid());
    EXPECT_FALSE(f.done());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(&f.get_loop(), loop.get());
    f.cancel();
    EXPECT_TRUE(f.cancelled());
}

TEST_F(FuturesTest, DefaultConstructedFutureIsNotValid) {
    Future<int> f;
    EXPECT_FALSE(f.valid());
}

// Ports test_futures BaseFutureTests.test_result (pending part) and
// test_uninitialized: result() of a pending future.
TEST_F(FuturesTest, ResultOfPendingFutureThrowsInvalidStateError) {
    Future<int> f = loop->create_future<int>();
    expect_throw_with_message<InvalidStateError>([&] { (void)f.result(); }, "Result is not set.");
}

// Ports test_futures BaseFutureTests.test_exception (pending part).
TEST_F(FuturesTest, ExceptionOfPendingFutureThrowsInvalidStateError) {
    Future<int> f = loop->create_future<int>();
    expect_throw_with_message<InvalidStateError>([&] { (void)f.exception(); },
                                                 "Exception is not set.");
}

// Ports test_futures BaseFutureTests.test_result.
TEST_F(FuturesTest, SetResultMakesFutureDoneWithThatResult) {
    Future<int> f = loop->create_future<int>();
    f.set_result(42);
    EXPECT_TRUE(f.done());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.result(), 42);
    EXPECT_EQ(f.exception(), nullptr);
    EXPECT_THROW(f.set_result(1), InvalidStateError);
    EXPECT_THROW(f.set_exception(std::runtime_error("late")), InvalidStateError);
    EXPECT_FALSE(f.cancel());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.result(), 42);
}

// Ports test_futures BaseFutureTests.test_exception.
TEST_F(FuturesTest, SetExceptionMakesResultRethrowIt) {
    Future<int> f = loop->create_future<int>();
    f.set_exception(std::runtime_error("boom"));
    EXPECT_TRUE(f.done());
    EXPECT_FALSE(f.cancelled());
    expect_throw_with_message<std::runtime_error>([&] { (void)f.result(); }, "boom");
    std::exception_ptr error = f.exception();
    ASSERT_NE(error, nullptr);
    expect_throw_with_message<std::runtime_error>([&] { std::rethrow_exception(error); }, "boom");
    EXPECT_THROW(f.set_result(1), InvalidStateError);
    EXPECT_THROW(f.set_exception(std::runtime_error("again")), InvalidStateError);
    EXPECT_FALSE(f.cancel());
}

TEST_F(FuturesTest, SetExceptionKeepsTheSameExceptionObject) {
    Future<int> f = loop->create_future<int>();
    std::exception_ptr error = std::make_exception_ptr(std::logic_error("same"));
    f.set_exception(error);
    EXPECT_EQ(f.exception(), error);
}

TEST_F(FuturesTest, SetExceptionRejectsANullExceptionPointer) {
    Future<int> f = loop->create_future<int>();
    EXPECT_THROW(f.set_exception(std::exception_ptr()), std::invalid_argument);
    EXPECT_FALSE(f.done());
}

// Ports test_futures BaseFutureTests.test_result: set_result twice.
TEST_F(FuturesTest, SetResultTwiceThrowsInvalidStateError) {
    Future<std::string> f = loop->create_future<std::string>();
    f.set_result("first");
    EXPECT_THROW(f.set_result("second"), InvalidStateError);
    EXPECT_EQ(f.result(), "first");
}

// ---- Cancellation ----

// Ports test_futures BaseFutureTests.test_cancel.
TEST_F(FuturesTest, CancelMakesFutureCancelledAndDone) {
    Future<int> f = loop->create_future<int>();
    EXPECT_TRUE(f.cancel());
    EXPECT_TRUE(f.cancelled());
    EXPECT_TRUE(f.done());
    EXPECT_THROW((void)f.result(), CancelledError);
    EXPECT_THROW((void)f.exception(), CancelledError);
    EXPECT_THROW(f.set_result(1), InvalidStateError);
    EXPECT_THROW(f.set_exception(std::runtime_error("x")), InvalidStateError);
    EXPECT_FALSE(f.cancel());
}

// Ports test_futures BaseFutureTests.test_future_cancel_message_getter.
TEST_F(FuturesTest, CancelMessageReachesTheCancelledError) {
    Future<int> f = loop->create_future<int>();
    f.cancel("my message");
    EXPECT_EQ(cancelled_message([&] { loop->run_until_complete(f); }), "my message");
    EXPECT_EQ(cancelled_message([&] { (void)f.result(); }), "my message");
    EXPECT_EQ(cancelled_message([&] { (void)f.exception(); }), "my message");
}

// Ports test_futures BaseFutureTests.test_future_cancel_message_getter
// (the default: no message).
TEST_F(FuturesTest, CancelWithoutMessageGivesAnEmptyMessage) {
    Future<int> f = loop->create_future<int>();
    f.cancel();
    EXPECT_EQ(cancelled_message([&] { (void)f.result(); }), "");
}

// Ports test_futures BaseFutureTests.test_result / test_exception: cancel()
// of a done future returns false and changes nothing.
TEST_F(FuturesTest, CancelAfterDoneReturnsFalse) {
    Future<int> with_result = loop->create_future<int>();
    with_result.set_result(1);
    EXPECT_FALSE(with_result.cancel("too late"));
    EXPECT_FALSE(with_result.cancelled());
    EXPECT_EQ(with_result.result(), 1);

    Future<int> cancelled = loop->create_future<int>();
    EXPECT_TRUE(cancelled.cancel("first"));
    EXPECT_FALSE(cancelled.cancel("second"));
    EXPECT_EQ(cancelled_message([&] { (void)cancelled.result(); }), "first");
}

// ---- repr ----

// Ports test_futures BaseFutureTests.test_future_repr (without the source
// traceback, which has no C++ counterpart).
TEST_F(FuturesTest, ReprDescribesTheState) {
    Future<int> pending = loop->create_future<int>();
    EXPECT_EQ(pending.repr(), "<Future pending>");

    Future<int> cancelled = loop->create_future<int>();
    cancelled.cancel();
    EXPECT_EQ(cancelled.repr(), "<Future cancelled>");

    Future<int> finished = loop->create_future<int>();
    finished.set_result(4);
    EXPECT_EQ(finished.repr(), "<Future finished result>");

    Future<int> failed = loop->create_future<int>();
    failed.set_exception(std::runtime_error("boom"));
    EXPECT_NE(failed.repr().find("finished exception="), std::string::npos) << failed.repr();
    EXPECT_NE(failed.repr().find("boom"), std::string::npos) << failed.repr();
    (void)failed.exception();
}

// ---- Done callbacks ----

// Ports test_futures BaseFutureDoneCallbackTests.test_callbacks_invoked_on_set_result.
TEST_F(FuturesTest, DoneCallbacksRunOnTheNextIterationInRegistrationOrder) {
    std::vector<int> bag;
    Future<std::string> f = loop->create_future<std::string>();
    f.add_done_callback([&](const Future<std::string>&) { bag.push_back(42); });
    f.add_done_callback([&](const Future<std::string>&) { bag.push_back(17); });
    f.add_done_callback([&](const Future<std::string>&) { bag.push_back(100); });

    f.set_result("foo");
    EXPECT_TRUE(bag.empty()) << "done callbacks must not run inline in set_result()";

    run_briefly();
    EXPECT_EQ(bag, (std::vector<int>{42, 17, 100}));
    EXPECT_EQ(f.result(), "foo");
}

// Ports test_futures BaseFutureDoneCallbackTests.test_callbacks_invoked_on_set_exception.
TEST_F(FuturesTest, DoneCallbacksRunAfterSetException) {
    std::vector<int> bag;
    Future<int> f = loop->create_future<int>();
    f.add_done_callback([&](const Future<int>& done) {
        EXPECT_TRUE(done.done());
        bag.push_back(100);
    });
    f.set_exception(std::runtime_error("boom"));
    EXPECT_TRUE(bag.empty());
    run_briefly();
    EXPECT_EQ(bag, (std::vector<int>{100}));
    EXPECT_NE(f.exception(), nullptr);
}

TEST_F(FuturesTest, DoneCallbacksRunAfterCancel) {
    std::vector<std::string> seen;
    Future<int> f = loop->create_future<int>();
    f.add_done_callback([&](const Future<int>& done) {
        seen.push_back(done.cancelled() ? "cancelled" : "not cancelled");
    });
    f.cancel();
    EXPECT_TRUE(seen.empty());
    run_briefly();
    EXPECT_EQ(seen, (std::vector<std::string>{"cancelled"}));
}

TEST_F(FuturesTest, DoneCallbackReceivesTheSameFuture) {
    Future<int> f = loop->create_future<int>();
    bool same = false;
    int value = 0;
    f.add_done_callback([&](const Future<int>& done) {
        same = done == f;
        value = done.result();
    });
    f.set_result(7);
    run_briefly();
    EXPECT_TRUE(same);
    EXPECT_EQ(value, 7);
}

TEST_F(FuturesTest, AddDoneCallbackOnDoneFutureSchedulesItSoon) {
    Future<int> f = loop->create_future<int>();
    f.set_result(3);
    int calls = 0;
    f.add_done_callback([&](const Future<int>& done) {
        ++calls;
        EXPECT_EQ(done.result(), 3);
    });
    EXPECT_EQ(calls, 0) << "a callback on a done future must still go through call_soon";
    run_briefly();
    EXPECT_EQ(calls, 1);
}

// Ports test_futures BaseFutureDoneCallbackTests.test_remove_done_callback.
TEST_F(FuturesTest, RemoveDoneCallbackReturnsCountAndRemovedCallbackDoesNotRun) {
    std::vector<int> bag;
    Future<std::string> f = loop->create_future<std::string>();
    uint64_t cb1 = f.add_done_callback([&](const Future<std::string>&) { bag.push_back(1); });
    uint64_t cb2 = f.add_done_callback([&](const Future<std::string>&) { bag.push_back(2); });

    EXPECT_EQ(f.remove_done_callback(cb2), 1U);
    EXPECT_EQ(f.remove_done_callback(cb2), 0U) << "already removed";
    EXPECT_EQ(f.remove_done_callback(cb1 + cb2 + 1000), 0U) << "never added";

    uint64_t cb3 = f.add_done_callback([&](const Future<std::string>&) { bag.push_back(3); });
    EXPECT_EQ(f.remove_done_callback(cb1), 1U);

    f.set_result("foo");
    run_briefly();
    EXPECT_EQ(bag, (std::vector<int>{3}));
    EXPECT_EQ(f.remove_done_callback(cb3), 0U) << "callbacks leave the list once scheduled";
    EXPECT_EQ(f.result(), "foo");
}

// Ports test_futures BaseFutureDoneCallbackTests.test_callbacks_remove_first_callback,
// _remove_first_and_second_callback and _remove_third_callback.
TEST_F(FuturesTest, RemovingCallbacksAtAnyPositionKeepsTheOthersInOrder) {
    struct Case {
        std::vector<int> removed;
        std::vector<int> expected;
    };
    const std::vector<Case> cases = {
        {{0}, {17, 100}},
        {{0, 1}, {100}},
        {{2}, {42, 17}},
    };
    for (const Case& c : cases) {
        std::vector<int> bag;
        Future<std::string> f = loop->create_future<std::string>();
        std::vector<uint64_t> ids;
        for (int value : {42, 17, 100}) {
            ids.push_back(f.add_done_callback(
                [&bag, value](const Future<std::string>&) { bag.push_back(value); }));
        }
        for (int index : c.removed) {
            EXPECT_EQ(f.remove_done_callback(ids[index]), 1U);
            EXPECT_EQ(f.remove_done_callback(ids[index]), 0U);
        }
        EXPECT_TRUE(bag.empty());
        f.set_result("foo");
        run_briefly();
        EXPECT_EQ(bag, c.expected);
    }
}

// Ports test_futures BaseFutureDoneCallbackTests.test_remove_done_callbacks_list_mutation
// and test_remove_done_callbacks_list_clear. C++ callbacks are removed by id,
// so no user code (Python's evil __eq__) runs inside remove_done_callback;
// what remains to pin down is that many removals in any order, interleaved
// with additions, leave the list consistent.
TEST_F(FuturesTest, ManyRemovalsInterleavedWithAdditionsKeepTheListConsistent) {
    std::vector<int> bag;
    Future<int> f = loop->create_future<int>();
    std::vector<uint64_t> ids;
    for (int i = 0; i < 64; ++i) {
        ids.push_back(f.add_done_callback([&bag, i](const Future<int>&) { bag.push_back(i); }));
    }
    for (int i = 1; i < 64; i += 2) {
        EXPECT_EQ(f.remove_done_callback(ids[i]), 1U);
        ids.push_back(
            f.add_done_callback([&bag, i](const Future<int>&) { bag.push_back(1000 + i); }));
    }
    for (int i = 62; i >= 0; i -= 2) {
        if (i != 0) {
            EXPECT_EQ(f.remove_done_callback(ids[i]), 1U);
        }
    }
    f.set_result(1);
    run_briefly();
    std::vector<int> expected = {0};
    for (int i = 1; i < 64; i += 2) {
        expected.push_back(1000 + i);
    }
    EXPECT_EQ(bag, expected);
}

// Ports test_futures BaseFutureDoneCallbackTests.test_schedule_callbacks_list_mutation_1:
// a done callback removes later callbacks of the same future. asyncio copies
// the list when it schedules the callbacks, so the removal finds nothing
// and the "removed" callbacks still run.
TEST_F(FuturesTest, CallbackRemovingLaterCallbacksWhileRunningDoesNotUnscheduleThem) {
    std::vector<std::string> bag;
    Future<int> f = loop->create_future<int>();
    uint64_t str1 = 0;
    uint64_t str2 = 0;
    std::vector<std::size_t> removed;
    f.add_done_callback([&](Future<int> done) {
        bag.push_back("mut");
        removed.push_back(done.remove_done_callback(str1));
        removed.push_back(done.remove_done_callback(str2));
    });
    str1 = f.add_done_callback([&](const Future<int>&) { bag.push_back("str1"); });
    str2 = f.add_done_callback([&](const Future<int>&) { bag.push_back("str2"); });
    f.set_result(1);
    run_briefly();
    EXPECT_EQ(bag, (std::vector<std::string>{"mut", "str1", "str2"}));
    EXPECT_EQ(removed, (std::vector<std::size_t>{0, 0}));
}

// Ports test_futures BaseFutureDoneCallbackTests.test_schedule_callbacks_list_mutation_2:
// callbacks that add callbacks while the callbacks run. Each one added to
// the (now done) future is scheduled soon, i.e. on a later iteration; none
// is lost and nothing crashes.
TEST_F(FuturesTest, CallbacksAddingCallbacksToTheDoneFutureAreScheduledSoon) {
    Future<int> f = loop->create_future<int>();
    int plain_calls = 0;
    int extra_calls = 0;
    int extra_added = 0;
    constexpr int max_extra = 100;
    std::function<void(Future<int>)> add_more;
    add_more = [&](Future<int> done) {
        ++extra_calls;
        if (extra_added < max_extra) {
            ++extra_added;
            done.add_done_callback(add_more);
        }
    };
    f.add_done_callback([&](Future<int> done) {
        ++extra_added;
        done.add_done_callback(add_more);
    });
    for (int i = 0; i < 63; ++i) {
        f.add_done_callback([&](const Future<int>&) { ++plain_calls; });
    }
    f.set_result(1);

    run_briefly();
    EXPECT_EQ(plain_calls, 63);
    EXPECT_EQ(extra_calls, 0)
        << "a callback added while the callbacks run waits for the next batch";

    run_until([&] { return extra_calls == max_extra; });
    run_briefly();
    EXPECT_EQ(extra_calls, max_extra);
    EXPECT_EQ(extra_added, max_extra);
}

TEST_F(FuturesTest, CallbackThatThrowsIsReportedAndTheOthersStillRun) {
    record_reports();
    std::vector<int> bag;
    Future<int> f = loop->create_future<int>();
    f.add_done_callback([&](const Future<int>&) { bag.push_back(1); });
    f.add_done_callback([](const Future<int>&) { throw std::runtime_error("callback failed"); });
    f.add_done_callback([&](const Future<int>&) { bag.push_back(3); });
    f.set_result(0);
    run_briefly();
    EXPECT_EQ(bag, (std::vector<int>{1, 3}));
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].message.rfind("Exception in callback", 0), 0U) << reports[0].message;
}

// ---- "Future exception was never retrieved" ----

// Ports test_futures BaseFutureTests.test_tb_logger_exception_unretrieved.
TEST_F(FuturesTest, UnretrievedExceptionIsReportedWhenTheLastReferenceGoes) {
    record_reports();
    {
        Future<int> f = loop->create_future<int>();
        f.set_exception(std::runtime_error("boom"));
        Future<int> copy = f;
        f = Future<int>();
        EXPECT_TRUE(reports.empty()) << "a copy is still alive";
    }
    run_briefly();
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].message, "Future exception was never retrieved");
    ASSERT_NE(reports[0].exception, nullptr);
    expect_throw_with_message<std::runtime_error>(
        [&] { std::rethrow_exception(reports[0].exception); }, "boom");
    EXPECT_NE(reports[0].future_repr.find("<Future finished exception="), std::string::npos)
        << reports[0].future_repr;
}

TEST_F(FuturesTest, UnretrievedExceptionGoesToTheDefaultHandlerLog) {
    {
        Future<int> f = loop->create_future<int>();
        f.set_exception(std::runtime_error("logged boom"));
    }
    EXPECT_TRUE(log_capture.contains(LogLevel::error, "Future exception was never retrieved"));
    EXPECT_TRUE(log_capture.contains(LogLevel::error, "logged boom"));
}

// Ports test_futures BaseFutureTests.test_tb_logger_exception_retrieved.
TEST_F(FuturesTest, ExceptionRetrievedWithExceptionIsNotReported) {
    record_reports();
    {
        Future<int> f = loop->create_future<int>();
        f.set_exception(std::runtime_error("boom"));
        (void)f.exception();
    }
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

// Ports test_futures BaseFutureTests.test_tb_logger_exception_result_retrieved.
TEST_F(FuturesTest, ExceptionRetrievedThroughResultIsNotReported) {
    record_reports();
    {
        Future<int> f = loop->create_future<int>();
        f.set_exception(std::runtime_error("boom"));
        EXPECT_THROW((void)f.result(), std::runtime_error);
    }
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

// Ports test_futures BaseFutureTests.test_tb_logger_abandoned,
// test_tb_logger_result_unretrieved and test_tb_logger_result_retrieved.
TEST_F(FuturesTest, PendingOrSuccessfulFuturesAreNeverReported) {
    record_reports();
    {
        Future<int> abandoned = loop->create_future<int>();
        Future<int> unretrieved = loop->create_future<int>();
        unretrieved.set_result(42);
        Future<int> retrieved = loop->create_future<int>();
        retrieved.set_result(42);
        EXPECT_EQ(retrieved.result(), 42);
        Future<int> cancelled = loop->create_future<int>();
        cancelled.cancel();
    }
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

// Ports test_futures BaseFutureTests.test_tb_logger_not_called_after_cancel:
// cancel() of a failed future returns false but counts as handling it.
TEST_F(FuturesTest, CancelAfterSetExceptionSilencesTheReport) {
    record_reports();
    {
        Future<int> f = loop->create_future<int>();
        f.set_exception(std::runtime_error("boom"));
        EXPECT_FALSE(f.cancel());
    }
    run_briefly();
    EXPECT_TRUE(reports.empty());
}

TEST_F(FuturesTest, UnretrievedExceptionIsReportedAfterPendingCallbacksReleaseTheFuture) {
    record_reports();
    {
        Future<int> f = loop->create_future<int>();
        f.add_done_callback([](const Future<int>&) {});
        f.set_exception(std::runtime_error("boom"));
    }
    EXPECT_TRUE(reports.empty()) << "the scheduled callback still holds the future";
    run_briefly();
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].message, "Future exception was never retrieved");
}

// asyncio's __del__ hands the future to the handler, which may keep it:
// the report comes once, and the kept future is freed later without another.
TEST_F(FuturesTest, HandlerThatKeepsTheFutureGetsOneReport) {
    std::vector<AnyFuture> kept;
    int calls = 0;
    loop->set_exception_handler([&](EventLoop&, const ExceptionContext& context) {
        ++calls;
        kept.push_back(context.future);
    });
    {
        Future<int> f = loop->create_future<int>();
        f.set_exception(std::runtime_error("boom"));
    }
    ASSERT_EQ(calls, 1);
    ASSERT_EQ(kept.size(), 1U);
    EXPECT_TRUE(kept[0].done());
    kept.clear();
    run_briefly();
    EXPECT_EQ(calls, 1);
}

// ---- Result types ----

TEST_F(FuturesTest, MoveOnlyResultIsMovedToTheAwaitingTask) {
    Future<std::unique_ptr<int>> f = loop->create_future<std::unique_ptr<int>>();
    auto task = loop->create_task([f] {
        std::unique_ptr<int> value = await(f);
        return value ? *value : -1;
    });
    loop->call_soon([f]() mutable { f.set_result(std::make_unique<int>(7)); });
    EXPECT_EQ(loop->run_until_complete(task), 7);
}

TEST_F(FuturesTest, MoveOnlyResultCanBeReadInPlaceThroughResult) {
    Future<std::unique_ptr<int>> f = loop->create_future<std::unique_ptr<int>>();
    f.set_result(std::make_unique<int>(11));
    const std::unique_ptr<int>& value = f.result();
    ASSERT_NE(value, nullptr);
    EXPECT_EQ(*value, 11);
}

TEST_F(FuturesTest, VoidFutureCompletesWithSetResult) {
    Future<void> f = loop->create_future<void>();
    EXPECT_THROW(f.result(), InvalidStateError);
    int calls = 0;
    f.add_done_callback([&](const Future<void>& done) {
        done.result();
        ++calls;
    });
    f.set_result();
    EXPECT_TRUE(f.done());
    EXPECT_NO_THROW(f.result());
    EXPECT_EQ(f.exception(), nullptr);
    EXPECT_THROW(f.set_result(), InvalidStateError);
    run_briefly();
    EXPECT_EQ(calls, 1);
}

TEST_F(FuturesTest, VoidFutureCanCarryAnException) {
    Future<void> f = loop->create_future<void>();
    f.set_exception(std::runtime_error("void failure"));
    expect_throw_with_message<std::runtime_error>([&] { f.result(); }, "void failure");
}

TEST_F(FuturesTest, AwaitingVoidFutureInATaskReturnsOnceItIsSet) {
    Future<void> f = loop->create_future<void>();
    std::vector<std::string> steps;
    auto task = loop->create_task([&, f] {
        steps.push_back("before");
        await(f);
        steps.push_back("after");
    });
    run_briefly();
    EXPECT_EQ(steps, (std::vector<std::string>{"before"}));
    f.set_result();
    loop->run_until_complete(task);
    EXPECT_EQ(steps, (std::vector<std::string>{"before", "after"}));
}

// Ports test_futures BaseFutureTests.test_yield_from_twice: a done future
// awaited again gives the same result without waiting.
TEST_F(FuturesTest, AwaitingADoneFutureTwiceGivesTheSameResult) {
    Future<int> f = loop->create_future<int>();
    auto task = loop->create_task([f] {
        int first = await(f);
        int second = await(f);
        return first * 100 + second;
    });
    loop->call_soon([f]() mutable { f.set_result(42); });
    EXPECT_EQ(loop->run_until_complete(task), 4242);
}

TEST_F(FuturesTest, CopiesShareOneResult) {
    Future<int> f = loop->create_future<int>();
    Future<int> copy = f;
    EXPECT_TRUE(copy == f);
    copy.set_result(5);
    EXPECT_TRUE(f.done());
    EXPECT_EQ(f.result(), 5);
}

TEST_F(FuturesTest, FutureOfAClosedLoopCannotBeCreated) {
    loop->close();
    EXPECT_THROW(loop->create_future<int>(), RuntimeError);
}

}  // namespace
}  // namespace shardloop
