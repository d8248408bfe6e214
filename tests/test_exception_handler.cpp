// The loop's error handling API (runtime/exception_handler.cpp): where an
// exception goes when it escapes a callback or a task, what the default
// handler logs, and what a custom handler is given. Cases ported from
// CPython 3.13's Lib/test/test_asyncio/test_base_events.py name the original.

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using shardloop::testing::LoopTest;

// Stands in for Python's ZeroDivisionError: a type the logs must name.
class ZeroDivisionError : public std::runtime_error {
public:
    ZeroDivisionError() : std::runtime_error("division by zero") {}
};

// Stands in for the AttributeError('spam') of test_set_exc_handler_broken.
class AttributeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A named callable, so that the handle's repr names it as asyncio's names
// the function ("Exception in callback ...zero_error").
struct ZeroError {
    void operator()() const { throw ZeroDivisionError(); }
};

// What a custom handler was called with.
struct HandlerCall {
    EventLoop* loop;
    ExceptionContext context;
};

// A custom exception handler that records its calls. A named type, so that
// get_exception_handler() can be checked to return this very handler.
struct RecordingHandler {
    std::shared_ptr<std::vector<HandlerCall>> calls = std::make_shared<std::vector<HandlerCall>>();

    void operator()(EventLoop& loop, const ExceptionContext& context) const {
        calls->push_back(HandlerCall{&loop, context});
    }
};

// The type and what() of the exception behind `error`, as "type: what".
std::string describe(const std::exception_ptr& error) {
    if (!error) {
        return "<none>";
    }
    try {
        std::rethrow_exception(error);
    } catch (const ZeroDivisionError& e) {
        return std::string("ZeroDivisionError: ") + e.what();
    } catch (const AttributeError& e) {
        return std::string("AttributeError: ") + e.what();
    } catch (const std::exception& e) {
        return std::string("std::exception: ") + e.what();
    } catch (...) {
        return "unknown";
    }
}

class ExceptionHandlerTest : public LoopTest {
protected:
    // Runs exactly one iteration of the loop (asyncio's loop._run_once()).
    void run_once() {
        loop->stop();
        loop->run_forever();
    }

    // The first ERROR message that contains `text`, or "" when none does.
    std::string error_message_with(const std::string& text) const {
        for (const auto& [level, message] : log_capture.messages()) {
            if (level == LogLevel::error && message.find(text) != std::string::npos) {
                return message;
            }
        }
        return {};
    }

    std::size_t error_count() const {
        std::size_t count = 0;
        for (const auto& entry : log_capture.messages()) {
            if (entry.first == LogLevel::error) {
                ++count;
            }
        }
        return count;
    }
};

// Ports test_base_events.BaseEventLoopTests.test_default_exc_handler_callback
// (the call_soon half): the default handler logs an ERROR with the message,
// the handle, and the exception's type and what().
TEST_F(ExceptionHandlerTest, DefaultHandlerLogsExceptionEscapingCallSoonCallback) {
    Future<bool> fut = loop->create_future<bool>();
    loop->call_soon([fut]() mutable {
        fut.set_result(true);
        ZeroError{}();
    });
    fut.add_done_callback([this](const Future<bool>&) { loop->stop(); });
    loop->run_forever();

    std::string logged = error_message_with("Exception in callback");
    ASSERT_FALSE(logged.empty()) << "no ERROR logged for the failing callback";
    EXPECT_EQ(logged.rfind("Exception in callback <Handle ", 0), 0U) << logged;
    EXPECT_NE(logged.find("\nhandle: <Handle "), std::string::npos) << logged;
    EXPECT_NE(logged.find("ZeroDivisionError"), std::string::npos) << logged;
    EXPECT_NE(logged.find("division by zero"), std::string::npos) << logged;
}

// Ports test_default_exc_handler_callback (the call_later half): a timer's
// exception is logged the same way, naming a TimerHandle.
TEST_F(ExceptionHandlerTest, DefaultHandlerLogsExceptionEscapingCallLaterCallback) {
    Future<bool> fut = loop->create_future<bool>();
    loop->call_later(0.01, [fut]() mutable {
        fut.set_result(true);
        ZeroError{}();
    });
    fut.add_done_callback([this](const Future<bool>&) { loop->stop(); });
    loop->run_forever();

    std::string logged = error_message_with("Exception in callback <TimerHandle ");
    ASSERT_FALSE(logged.empty()) << "no ERROR logged for the failing timer";
    EXPECT_NE(logged.find("\nhandle: <TimerHandle "), std::string::npos) << logged;
    EXPECT_NE(logged.find("ZeroDivisionError: division by zero"), std::string::npos) << logged;
}

// Ports test_default_exc_handler_coro: an exception escaping a task's
// function stays in the task; only when the task is dropped unretrieved does
// the default handler log "Task exception was never retrieved".
TEST_F(ExceptionHandlerTest, DefaultHandlerLogsTaskExceptionNeverRetrievedWhenTaskIsDropped) {
    Task<int> task = loop->create_task([]() -> int {
        await(sleep(0.01));
        throw ZeroDivisionError();
    });
    task.add_done_callback([this](const Future<int>&) { loop->stop(); });
    loop->run_forever();
    ASSERT_TRUE(task.done());
    EXPECT_EQ(error_count(), 0U) << "reported while the task is still referenced";

    task = Task<int>();  // the last reference: Python's `fut = None; gc_collect()`

    std::string logged = error_message_with("exception was never retrieved");
    ASSERT_FALSE(logged.empty()) << "no ERROR logged for the dropped task";
    EXPECT_EQ(logged.rfind("Task exception was never retrieved", 0), 0U) << logged;
    EXPECT_NE(logged.find("\ntask: <Task finished name='Task-1'"), std::string::npos) << logged;
    EXPECT_NE(logged.find("ZeroDivisionError: division by zero"), std::string::npos) << logged;
}

// asyncio's default_exception_handler: every key but message and exception
// is logged as "key: repr" in sorted order, the exception after them.
TEST_F(ExceptionHandlerTest, DefaultHandlerLogsEveryContextKeyInSortedOrder) {
    Future<int> fut = loop->create_future<int>();
    Handle handle = loop->call_soon([] {});
    ExceptionContext context;
    context.message = "Something went wrong";
    context.exception = std::make_exception_ptr(ZeroDivisionError());
    context.future = fut;
    context.handle = handle;
    context.socket = 7;
    context.extra["asyncgen"] = "<async_generator agen>";

    loop->default_exception_handler(context);

    std::string logged = error_message_with("Something went wrong");
    ASSERT_FALSE(logged.empty());
    std::size_t asyncgen = logged.find("\nasyncgen: <async_generator agen>");
    std::size_t future = logged.find("\nfuture: <Future pending>");
    std::size_t handle_line = logged.find("\nhandle: <Handle ");
    std::size_t socket = logged.find("\nsocket: <socket fd=7>");
    std::size_t exception = logged.find("ZeroDivisionError: division by zero");
    ASSERT_NE(asyncgen, std::string::npos) << logged;
    ASSERT_NE(future, std::string::npos) << logged;
    ASSERT_NE(handle_line, std::string::npos) << logged;
    ASSERT_NE(socket, std::string::npos) << logged;
    ASSERT_NE(exception, std::string::npos) << logged;
    EXPECT_LT(asyncgen, future) << logged;
    EXPECT_LT(future, handle_line) << logged;
    EXPECT_LT(handle_line, socket) << logged;
    EXPECT_LT(socket, exception) << logged;
    run_once();  // lets the no-op callback run
}

// asyncio: a context without a message is logged as "Unhandled exception in
// event loop".
TEST_F(ExceptionHandlerTest, DefaultHandlerNamesAnUnhandledExceptionWhenMessageIsEmpty) {
    ExceptionContext context;
    context.exception = std::make_exception_ptr(ZeroDivisionError());

    loop->call_exception_handler(context);

    std::string logged = error_message_with("Unhandled exception in event loop");
    ASSERT_FALSE(logged.empty());
    EXPECT_NE(logged.find("ZeroDivisionError: division by zero"), std::string::npos) << logged;
}

// Ports test_set_exc_handler_custom: the custom handler gets (loop, context)
// with the handle and the "Exception in callback ..." message, nothing is
// logged; get_exception_handler returns it; resetting with nullptr brings
// the default handler's logging back and the custom one is not called.
TEST_F(ExceptionHandlerTest, CustomHandlerReceivesLoopAndContextOfFailingCallback) {
    loop->set_debug(true);
    EXPECT_FALSE(loop->get_exception_handler());

    RecordingHandler handler;
    loop->set_exception_handler(handler);
    const RecordingHandler* installed = loop->get_exception_handler().target<RecordingHandler>();
    ASSERT_NE(installed, nullptr);
    EXPECT_EQ(installed->calls, handler.calls);

    Handle handle = loop->call_soon(ZeroError{});
    run_once();

    ASSERT_EQ(handler.calls->size(), 1U);
    const HandlerCall& call = handler.calls->front();
    EXPECT_EQ(call.loop, loop.get());
    EXPECT_EQ(call.context.message.rfind("Exception in callback <Handle ", 0), 0U)
        << call.context.message;
    EXPECT_NE(call.context.message.find("ZeroError"), std::string::npos) << call.context.message;
    EXPECT_TRUE(call.context.handle == handle);
    EXPECT_EQ(describe(call.context.exception), "ZeroDivisionError: division by zero");
    EXPECT_FALSE(call.context.future);
    EXPECT_FALSE(call.context.task);
    EXPECT_EQ(error_count(), 0U) << "a custom handler replaces the logging";

    handler.calls->clear();
    loop->set_exception_handler(nullptr);
    EXPECT_FALSE(loop->get_exception_handler());
    loop->call_soon(ZeroError{});
    run_once();

    EXPECT_TRUE(handler.calls->empty());
    std::string logged = error_message_with("Exception in callback");
    ASSERT_FALSE(logged.empty());
    EXPECT_NE(logged.find("ZeroError"), std::string::npos) << logged;
    EXPECT_NE(logged.find("ZeroDivisionError: division by zero"), std::string::npos) << logged;
}

// asyncio's documented pattern: a custom handler may hand the context on to
// loop.default_exception_handler(context).
TEST_F(ExceptionHandlerTest, CustomHandlerMayDelegateToDefaultHandler) {
    int calls = 0;
    loop->set_exception_handler([&calls](EventLoop& l, const ExceptionContext& context) {
        ++calls;
        l.default_exception_handler(context);
    });
    loop->call_soon(ZeroError{});
    run_once();

    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(error_message_with("Exception in callback").empty());
}

// Ports test_set_exc_handler_broken: a handler that throws is reported
// through the default handler as "Unhandled error in exception handler",
// with the handler's own exception; nothing escapes the loop.
TEST_F(ExceptionHandlerTest, BrokenHandlerIsReportedThroughDefaultHandler) {
    loop->set_exception_handler(
        [](EventLoop&, const ExceptionContext&) { throw AttributeError("spam"); });
    loop->call_soon(ZeroError{});
    EXPECT_NO_THROW(run_once());

    std::string logged = error_message_with("Unhandled error in exception handler");
    ASSERT_FALSE(logged.empty()) << "the broken handler was not reported";
    EXPECT_NE(logged.find("AttributeError: spam"), std::string::npos) << logged;
    // The context the handler failed on is part of the report.
    EXPECT_NE(logged.find("Exception in callback"), std::string::npos) << logged;
}

// A broken handler does not stop the loop: callbacks after the failing one
// still run, and the handler keeps being called for later errors.
TEST_F(ExceptionHandlerTest, LoopKeepsRunningAfterBrokenHandler) {
    int handler_calls = 0;
    loop->set_exception_handler([&handler_calls](EventLoop&, const ExceptionContext&) {
        ++handler_calls;
        throw AttributeError("spam");
    });
    bool later_ran = false;
    loop->call_soon(ZeroError{});
    loop->call_soon([&later_ran] { later_ran = true; });
    run_once();
    loop->call_soon(ZeroError{});
    run_once();

    EXPECT_TRUE(later_ran);
    EXPECT_EQ(handler_calls, 2);
}

// call_exception_handler with a context built by the caller: the custom
// handler gets exactly that context.
TEST_F(ExceptionHandlerTest, CallExceptionHandlerPassesCustomContextThrough) {
    RecordingHandler handler;
    loop->set_exception_handler(handler);
    Future<void> fut = loop->create_future<void>();
    ExceptionContext context;
    context.message = "custom failure";
    context.exception = std::make_exception_ptr(AttributeError("spam"));
    context.future = fut;
    context.socket = 3;
    context.extra["protocol_name"] = "EchoProtocol";

    loop->call_exception_handler(context);

    ASSERT_EQ(handler.calls->size(), 1U);
    const HandlerCall& call = handler.calls->front();
    EXPECT_EQ(call.loop, loop.get());
    EXPECT_EQ(call.context.message, "custom failure");
    EXPECT_EQ(describe(call.context.exception), "AttributeError: spam");
    EXPECT_TRUE(call.context.future == AnyFuture(fut));
    EXPECT_FALSE(call.context.handle);
    EXPECT_EQ(call.context.socket, 3);
    EXPECT_EQ(call.context.extra.at("protocol_name"), "EchoProtocol");
    EXPECT_EQ(error_count(), 0U);
}

// An exception escaping a task's function is stored in the task, not sent to
// the handler; the handler hears of it only when the task is dropped with
// the exception unretrieved ("Task exception was never retrieved").
TEST_F(ExceptionHandlerTest, TaskExceptionGoesToHandlerOnlyWhenDroppedUnretrieved) {
    RecordingHandler handler;
    loop->set_exception_handler(handler);
    Task<void> task = loop->create_task([] { throw ZeroDivisionError(); });
    run_until([&] { return task.done(); });

    EXPECT_TRUE(handler.calls->empty()) << "the exception belongs to the task until dropped";
    EXPECT_FALSE(task.cancelled());

    task = Task<void>();

    ASSERT_EQ(handler.calls->size(), 1U);
    const ExceptionContext& context = handler.calls->front().context;
    EXPECT_EQ(context.message, "Task exception was never retrieved");
    EXPECT_EQ(describe(context.exception), "ZeroDivisionError: division by zero");
    ASSERT_TRUE(context.task);
    EXPECT_TRUE(context.task.is_task());
    EXPECT_NE(context.task.repr().find("<Task finished"), std::string::npos) << context.task.repr();
    EXPECT_FALSE(context.future);
}

// A task whose exception was retrieved (result() or exception()) is dropped
// silently, as asyncio clears __log_traceback on retrieval.
TEST_F(ExceptionHandlerTest, RetrievedTaskExceptionIsNotReported) {
    RecordingHandler handler;
    loop->set_exception_handler(handler);
    Task<void> by_result = loop->create_task([] { throw ZeroDivisionError(); });
    Task<void> by_exception = loop->create_task([] { throw ZeroDivisionError(); });
    run_until([&] { return by_result.done() && by_exception.done(); });

    EXPECT_THROW(by_result.result(), ZeroDivisionError);
    EXPECT_EQ(describe(by_exception.exception()), "ZeroDivisionError: division by zero");
    by_result = Task<void>();
    by_exception = Task<void>();

    EXPECT_TRUE(handler.calls->empty());
}

// The same for a plain future: set_exception, then dropped unretrieved, is
// reported as "Future exception was never retrieved" with the future.
TEST_F(ExceptionHandlerTest, FutureExceptionNeverRetrievedIsReportedWithFuture) {
    RecordingHandler handler;
    loop->set_exception_handler(handler);
    Future<int> fut = loop->create_future<int>();
    fut.set_exception(ZeroDivisionError());
    EXPECT_TRUE(handler.calls->empty());

    fut = Future<int>();

    ASSERT_EQ(handler.calls->size(), 1U);
    const ExceptionContext& context = handler.calls->front().context;
    EXPECT_EQ(context.message, "Future exception was never retrieved");
    EXPECT_EQ(describe(context.exception), "ZeroDivisionError: division by zero");
    EXPECT_TRUE(context.future);
    EXPECT_FALSE(context.task);
}

}  // namespace
}  // namespace shardloop
