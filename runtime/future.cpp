#include "runtime/future.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <typeinfo>

#include "runtime/event_loop.hpp"
#include "runtime/task.hpp"

namespace shardloop::detail {

std::string describe_exception(const std::exception_ptr& error) {
    if (!error) {
        return "None";
    }
    auto type_name = [](const std::type_info& type) {
        int status = 0;
        std::unique_ptr<char, void (*)(void*)> demangled(
            abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
        return status == 0 && demangled ? std::string(demangled.get()) : std::string(type.name());
    };
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return type_name(typeid(e)) + ": " + e.what();
    } catch (...) {
        const std::type_info* type = abi::__cxa_current_exception_type();
        return type != nullptr ? type_name(*type) : std::string("unknown exception");
    }
}

FutureBase::~FutureBase() {
    for (CallbackEntry& entry : _callbacks) {
        if (entry.waiter != nullptr) {
            entry.waiter->FutureBase::release();
        }
    }
}

void FutureBase::release_last() noexcept {
    if (_log_exception) {
        // Resurrect for the report, as asyncio's __del__ hands `self` over.
        _log_exception = false;
        _refs = 1;
        ExceptionContext context;
        context.message = unretrieved_message();
        context.exception = _exception;
        if (_is_task) {
            context.task = AnyFuture(Ref<FutureBase>(this));
        } else {
            context.future = AnyFuture(Ref<FutureBase>(this));
        }
        _loop->call_exception_handler(context);
        context = {};
        if (--_refs != 0) {
            return;  // the handler kept it
        }
    }
    delete this;
}

const char* FutureBase::unretrieved_message() const noexcept {
    return "Future exception was never retrieved";
}

bool FutureBase::cancel(std::string message) { return cancel_future(std::move(message)); }

bool FutureBase::cancel_future(std::string message) {
    _log_exception = false;
    if (_state != State::pending) {
        return false;
    }
    _state = State::cancelled;
    _cancel_message = std::move(message);
    schedule_callbacks();
    return true;
}

std::exception_ptr FutureBase::exception() {
    if (_state == State::cancelled) {
        throw CancelledError(_cancel_message);
    }
    if (_state != State::finished) {
        throw InvalidStateError("Exception is not set.");
    }
    _log_exception = false;
    return _exception;
}

void FutureBase::check_result() {
    if (_state == State::cancelled) {
        throw CancelledError(_cancel_message);
    }
    if (_state != State::finished) {
        throw InvalidStateError("Result is not set.");
    }
    _log_exception = false;
    if (_exception) {
        std::rethrow_exception(_exception);
    }
}

void FutureBase::ensure_pending() const {
    if (_state != State::pending) {
        throw InvalidStateError("invalid state: " + repr());
    }
}

void FutureBase::set_exception(std::exception_ptr error) {
    ensure_pending();
    if (!error) {
        throw std::invalid_argument("set_exception: the exception must not be null");
    }
    _exception = std::move(error);
    _state = State::finished;
    _log_exception = true;
    schedule_callbacks();
}

void FutureBase::finish() {
    ensure_pending();
    _state = State::finished;
    schedule_callbacks();
}

uint64_t FutureBase::add_done_callback(DoneCallback callback) {
    uint64_t id = _next_callback_id++;
    if (_state != State::pending) {
        schedule_callback(std::move(callback));
    } else {
        _callbacks.push_back(CallbackEntry{id, std::move(callback), nullptr});
    }
    return id;
}

std::size_t FutureBase::remove_done_callback(uint64_t id) {
    auto it = std::find_if(_callbacks.begin(), _callbacks.end(), [id](const CallbackEntry& e) {
        return e.id == id && e.waiter == nullptr;
    });
    if (it == _callbacks.end()) {
        return 0;
    }
    _callbacks.erase(it);
    return 1;
}

void FutureBase::add_waiter(TaskBase* task) {
    task->FutureBase::add_ref();
    _callbacks.push_back(CallbackEntry{0, nullptr, task});
}

void FutureBase::schedule_callback(DoneCallback callback) {
    _loop->call_soon(
        [self = Ref<FutureBase>(this), cb = std::move(callback)]() mutable { cb(*self); });
}

void FutureBase::schedule_callbacks() {
    // Take the list first: a callback may add or remove others while we go
    // (asyncio copies the list and clears it for the same reason).
    std::vector<CallbackEntry> callbacks = std::move(_callbacks);
    _callbacks.clear();
    for (CallbackEntry& entry : callbacks) {
        if (entry.waiter != nullptr) {
            _loop->schedule(entry.waiter);  // the queue takes the entry's reference
        } else {
            schedule_callback(std::move(entry.callback));
        }
    }
}

std::string FutureBase::repr() const {
    std::string text = "<Future ";
    switch (_state) {
        case State::pending:
            text += "pending";
            break;
        case State::cancelled:
            text += "cancelled";
            break;
        case State::finished:
            text += _exception ? "finished exception=" + describe_exception(_exception)
                               : std::string("finished result");
            break;
    }
    return text + ">";
}

}  // namespace shardloop::detail
