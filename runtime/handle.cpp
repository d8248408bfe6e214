#include "runtime/handle.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

#include "runtime/event_loop.hpp"
#include "runtime/object_pool.hpp"

namespace shardloop {

namespace detail {

namespace {

// A threadsafe handle is shared between the posting thread and the loop, so
// its count and flag are touched atomically; every other handle stays on
// one thread and pays nothing for that.
template <class T>
std::atomic_ref<T> shared(T& value) {
    return std::atomic_ref<T>(value);
}

void run_handle(Runnable* runnable) {
    auto* handle = static_cast<HandleState*>(runnable);
    if (!handle->cancelled()) {
        handle->running = true;
        try {
            handle->callback();
        } catch (...) {
            ExceptionContext context;
            context.message = "Exception in callback " + handle->repr();
            context.exception = std::current_exception();
            context.handle = Handle(Ref<HandleState>(handle));
            handle->loop->call_exception_handler(context);
        }
        handle->running = false;
    }
    handle->release();
}

void release_handle(Runnable* runnable) { static_cast<HandleState*>(runnable)->release(); }

std::string demangle(const char* name) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(
        abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
    return status == 0 && demangled ? std::string(demangled.get()) : std::string(name);
}

}  // namespace

const Runnable::Ops HandleState::runnable_ops{&run_handle, &release_handle};

HandleState::HandleState(EventLoop* loop, Callback<void()> callback, bool threadsafe)
    : Runnable{&runnable_ops}, loop(loop), callback(std::move(callback)), threadsafe(threadsafe) {}

TimerState::TimerState(EventLoop* loop, int64_t when_ns, Callback<void()> callback)
    : HandleState(loop, std::move(callback), false), when_ns(when_ns) {
    is_timer = true;
}

void HandleState::add_ref() noexcept {
    if (threadsafe) {
        shared(_refs).fetch_add(1, std::memory_order_relaxed);
    } else {
        ++_refs;
    }
}

void HandleState::release() noexcept {
    bool last =
        threadsafe ? shared(_refs).fetch_sub(1, std::memory_order_acq_rel) == 1 : --_refs == 0;
    if (!last) {
        return;
    }
    if (is_timer) {
        auto* timer = static_cast<TimerState*>(this);
        timer->~TimerState();
        BlockCache<sizeof(TimerState)>::deallocate(timer);
    } else {
        this->~HandleState();
        BlockCache<sizeof(HandleState)>::deallocate(this);
    }
}

void HandleState::cancel() noexcept {
    if (threadsafe) {
        // The loop may be running the callback right now: only the flag is
        // touched from here; the callback is released with the handle.
        shared(_cancelled).store(true, std::memory_order_release);
        return;
    }
    if (_cancelled) {
        return;
    }
    _cancelled = true;
    if (is_timer && scheduled) {
        loop->note_timer_cancelled();  // lets the heap drop cancelled timers in bulk
    }
    if (!running) {
        callback.reset();  // like asyncio, drop what the callback holds at once
    }
}

bool HandleState::cancelled() const noexcept {
    if (threadsafe) {
        return std::atomic_ref<bool>(const_cast<bool&>(_cancelled)).load(std::memory_order_acquire);
    }
    return _cancelled;
}

std::string HandleState::repr() const {
    std::string text = is_timer ? "<TimerHandle " : "<Handle ";
    if (cancelled()) {
        text += "cancelled ";
    }
    text += demangle(callback.target_type().name());
    return text + ">";
}

}  // namespace detail

void Handle::cancel() {
    if (_state) {
        _state->cancel();
    }
}

bool Handle::cancelled() const { return _state && _state->cancelled(); }

EventLoop& Handle::get_loop() const { return *_state->loop; }

std::string Handle::repr() const { return _state ? _state->repr() : "<Handle empty>"; }

double TimerHandle::when() const {
    return static_cast<double>(static_cast<detail::TimerState*>(_state.get())->when_ns) * 1e-9;
}

}  // namespace shardloop
