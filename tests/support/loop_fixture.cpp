#include "support/loop_fixture.hpp"

namespace shardloop::testing {

LogCapture::LogCapture() {
    _previous = set_log_sink([this](LogLevel level, std::string_view message) {
        std::lock_guard lock(_mutex);
        _messages.emplace_back(level, std::string(message));
    });
}

LogCapture::~LogCapture() { set_log_sink(std::move(_previous)); }

std::vector<std::pair<LogLevel, std::string>> LogCapture::messages() const {
    std::lock_guard lock(_mutex);
    return _messages;
}

bool LogCapture::contains(LogLevel level, const std::string& text) const {
    std::lock_guard lock(_mutex);
    for (const auto& [l, message] : _messages) {
        if (l == level && message.find(text) != std::string::npos) {
            return true;
        }
    }
    return false;
}

void LogCapture::clear() {
    std::lock_guard lock(_mutex);
    _messages.clear();
}

void LoopTest::SetUp() {
    leak_check = std::make_unique<FdLeakCheck>();
    loop = new_event_loop();
}

void LoopTest::run_briefly() {
    loop->call_soon([this] { loop->stop(); });
    loop->run_forever();
}

void LoopTest::record_reports() {
    loop->set_exception_handler([this](EventLoop&, const ExceptionContext& context) {
        auto asyncgen = context.extra.find("asyncgen");
        reports.push_back(Report{context.message, context.exception,
                                 context.future ? context.future.repr() : "",
                                 context.task ? context.task.repr() : "",
                                 asyncgen != context.extra.end() ? asyncgen->second : ""});
    });
}

void LoopTest::TearDown() {
    if (loop) {
        EXPECT_FALSE(loop->is_running());
        // Every task a test starts must have finished before teardown.
        EXPECT_EQ(loop->live_task_count(), 0U) << "tasks still pending at teardown";
        loop->close();
        EXPECT_EQ(loop->stack_pool().in_use(), 0U) << "fiber stacks leaked";
        loop.reset();
    }
    leak_check.reset();  // checks the fd count now that the loop is gone
}

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

}  // namespace shardloop::testing
