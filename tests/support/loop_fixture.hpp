#pragma once

// The fixture most loop tests use: a fresh loop per test, torn down with a
// check that nothing leaked (file descriptors, tasks, fiber stacks), and a
// log sink that records what the loop logged.

#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shardloop.hpp"
#include "support/leak_check.hpp"

namespace shardloop::testing {

// Records log messages while alive (restores the previous sink after).
class LogCapture {
public:
    LogCapture();
    ~LogCapture();
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    std::vector<std::pair<LogLevel, std::string>> messages() const;
    // True when some message of `level` contains `text`.
    bool contains(LogLevel level, const std::string& text) const;
    void clear();

private:
    mutable std::mutex _mutex;
    std::vector<std::pair<LogLevel, std::string>> _messages;
    LogSink _previous;
};

// What an exception handler was told, as recorded by LoopTest::record_reports.
struct Report {
    std::string message;
    std::exception_ptr exception;
    std::string future_repr;
    std::string task_repr;
    std::string asyncgen;
};

class LoopTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

    // One iteration of the loop (asyncio's test_utils.run_briefly).
    void run_briefly();

    // Routes the loop's exception handler into `reports`.
    void record_reports();
    std::vector<Report> reports;

    // Runs the loop until `condition` holds or `seconds` pass (then fails).
    template <class Condition>
    void run_until(Condition condition, double seconds = 5.0) {
        double give_up = loop->time() + seconds;
        while (!condition()) {
            ASSERT_LT(loop->time(), give_up) << "condition not reached in time";
            loop->call_soon([this] { loop->stop(); });
            loop->run_forever();
        }
    }

    std::unique_ptr<FdLeakCheck> leak_check;
    std::shared_ptr<EventLoop> loop;
    LogCapture log_capture;
};

// Fails the test unless `fn` throws E whose what() is exactly `message`.
template <class E, class F>
void expect_throw_with_message(F&& fn, const std::string& message) {
    try {
        fn();
        ADD_FAILURE() << "no exception thrown; expected: " << message;
    } catch (const E& e) {
        EXPECT_EQ(std::string(e.what()), message);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
    }
}

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
std::string what_of(const std::exception_ptr& error);

}  // namespace shardloop::testing
