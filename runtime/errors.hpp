#pragma once

// The exceptions of the asyncio-facing API, and the one place where a
// negative errno from below becomes an exception.

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace shardloop {

// asyncio.CancelledError: a future or task was cancelled. Deliberately not
// derived from std::runtime_error's subtypes that user code commonly catches
// for "real" errors, mirroring asyncio, where CancelledError is a
// BaseException.
class CancelledError : public std::exception {
public:
    explicit CancelledError(std::string message = {}) : _message(std::move(message)) {}
    const char* what() const noexcept override {
        return _message.empty() ? "CancelledError" : _message.c_str();
    }
    // The message given to cancel(), empty when none was given.
    const std::string& message() const noexcept { return _message; }

private:
    std::string _message;
};

// asyncio.InvalidStateError: a future's result asked for or set at the wrong time.
class InvalidStateError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// TimeoutError, raised by wait_for() and friends.
class TimeoutError : public std::runtime_error {
public:
    TimeoutError() : std::runtime_error("TimeoutError") {}
    using std::runtime_error::runtime_error;
};

// Python's RuntimeError, used with asyncio's exact messages ("Event loop is
// closed", "This event loop is already running", ...).
class RuntimeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// asyncio.SendfileNotAvailableError.
class SendfileNotAvailableError : public RuntimeError {
public:
    using RuntimeError::RuntimeError;
};

// Python's ExceptionGroup: several errors at once (create_connection with
// all_errors). what() lists theirs.
class ExceptionGroup : public std::runtime_error {
public:
    ExceptionGroup(const std::string& message, std::vector<std::exception_ptr> exceptions);
    const std::vector<std::exception_ptr>& exceptions() const noexcept { return _exceptions; }

private:
    std::vector<std::exception_ptr> _exceptions;
};

namespace detail {

// Throws std::system_error for a negative errno returned from below, with
// `what` naming the operation ("io_uring_setup", "eventfd", ...).
[[noreturn]] void throw_errno(int negative_errno, const std::string& what);

// Returns `result` when it is not negative, otherwise throws as throw_errno.
inline long check_errno(long result, const char* what) {
    if (result < 0) {
        throw_errno(static_cast<int>(result), what);
    }
    return result;
}

}  // namespace detail
}  // namespace shardloop
