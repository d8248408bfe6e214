// EventLoop's error handling API: what happens to exceptions that escape
// callbacks and tasks.

#include <sstream>

#include "runtime/event_loop.hpp"
#include "runtime/log.hpp"

namespace shardloop {

namespace {

// "key: value" lines for every key the context carries, sorted by key as
// asyncio's default handler prints them.
std::map<std::string, std::string> context_fields(const ExceptionContext& context) {
    std::map<std::string, std::string> fields = context.extra;
    if (context.future) {
        fields["future"] = context.future.repr();
    }
    if (context.task) {
        fields["task"] = context.task.repr();
    }
    if (context.handle) {
        fields["handle"] = context.handle.repr();
    }
    if (context.protocol != nullptr) {
        std::ostringstream text;
        text << "<protocol at " << static_cast<const void*>(context.protocol) << ">";
        fields["protocol"] = text.str();
    }
    if (context.transport != nullptr) {
        std::ostringstream text;
        text << "<transport at " << static_cast<const void*>(context.transport) << ">";
        fields["transport"] = text.str();
    }
    if (context.socket >= 0) {
        fields["socket"] = "<socket fd=" + std::to_string(context.socket) + ">";
    }
    return fields;
}

std::string format_context(const ExceptionContext& context) {
    std::string text =
        context.message.empty() ? "Unhandled exception in event loop" : context.message;
    for (const auto& [key, value] : context_fields(context)) {
        text.append("\n").append(key).append(": ").append(value);
    }
    if (context.exception) {
        text += "\nexception: " + detail::describe_exception(context.exception);
    }
    return text;
}

}  // namespace

void EventLoop::set_exception_handler(ExceptionHandler handler) {
    _exception_handler = std::move(handler);
}

void EventLoop::default_exception_handler(const ExceptionContext& context) {
    log(LogLevel::error, format_context(context));
}

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
    if (!_exception_handler) {
        try {
            default_exception_handler(context);
        } catch (...) {
            // asyncio: "Guard 'default_exception_handler' in case it is overloaded."
            log(LogLevel::error, "Exception in default exception handler");
        }
        return;
    }
    try {
        _exception_handler(*this, context);
    } catch (...) {
        try {
            ExceptionContext report;
            report.message = "Unhandled error in exception handler";
            report.exception = std::current_exception();
            report.extra["context"] = format_context(context);
            default_exception_handler(report);
        } catch (...) {
            log(LogLevel::error,
                "Exception in default exception handler while handling an unexpected error in "
                "custom exception handler");
        }
    }
}

}  // namespace shardloop
