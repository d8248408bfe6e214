#pragma once

// shardloop's logger (asyncio logs through the "asyncio" logger). Messages
// go to stderr unless a sink is installed, for instance by a test that
// checks what was logged.

#include <functional>
#include <string_view>

namespace shardloop {

enum class LogLevel { debug, info, warning, error };

using LogSink = std::function<void(LogLevel, std::string_view message)>;

// Installs `sink` for every thread (nullptr restores stderr); returns the
// previous one. Any thread.
LogSink set_log_sink(LogSink sink);

// Logs one message. Any thread; calls into the sink are serialised.
void log(LogLevel level, std::string_view message);

}  // namespace shardloop
