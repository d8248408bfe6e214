#pragma once

// What an exception handler is told (asyncio's exception-handler context:
// a dict with the keys message, exception, future, task, handle, protocol,
// transport, socket, asyncgen).

#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "runtime/future.hpp"
#include "runtime/handle.hpp"

namespace shardloop {

class EventLoop;
class BaseTransport;
class BaseProtocol;

struct ExceptionContext {
    std::string message;
    std::exception_ptr exception;
    AnyFuture future;  // a Future, or a Task under "task" (asyncio puts tasks under "future" too)
    AnyFuture task;
    Handle handle;
    BaseProtocol* protocol = nullptr;
    BaseTransport* transport = nullptr;
    int socket = -1;
    // Any other key, already formatted (e.g. "asyncgen", "source_traceback").
    std::map<std::string, std::string> extra;
};

// Called as handler(loop, context), on the loop's thread.
using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

}  // namespace shardloop
