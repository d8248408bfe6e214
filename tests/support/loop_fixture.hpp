#pragma once

// The fixture most loop tests use: a fresh loop per test, torn down with a
// check that nothing leaked (file descriptors, tasks, fiber stacks), and a
// log sink that records what the loop logged.

#include <gtest/gtest.h>

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

class LoopTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

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

}  // namespace shardloop::testing
