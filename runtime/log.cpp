#include "runtime/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>
#include <utility>

namespace shardloop {

namespace {

std::recursive_mutex& sink_mutex() {
    static std::recursive_mutex mutex;
    return mutex;
}

LogSink& current_sink() {
    static LogSink sink;
    return sink;
}

const char* level_name(LogLevel level) {
    switch (level) {
        case LogLevel::debug:
            return "DEBUG";
        case LogLevel::info:
            return "INFO";
        case LogLevel::warning:
            return "WARNING";
        case LogLevel::error:
            return "ERROR";
    }
    return "?";
}

}  // namespace

LogSink set_log_sink(LogSink sink) {
    std::lock_guard lock(sink_mutex());
    return std::exchange(current_sink(), std::move(sink));
}

void log(LogLevel level, std::string_view message) {
    std::lock_guard lock(sink_mutex());
    if (current_sink()) {
        current_sink()(level, message);
        return;
    }
    std::string line = std::string(level_name(level)) + ":shardloop:" + std::string(message) + "\n";
    std::fputs(line.c_str(), stderr);
}

}  // namespace shardloop
