#pragma once

// Future<T>: asyncio.Future for C++. A shard-local result that is set once;
// tasks wait for it with await(fut), callbacks hear of it through
// add_done_callback. Copies of a Future refer to the same result. Every
// method must be called on the thread of the future's loop.

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "runtime/callback.hpp"
#include "runtime/errors.hpp"
#include "runtime/object_pool.hpp"
#include "runtime/ref.hpp"

namespace shardloop {

class EventLoop;
template <class T>
class Future;

namespace detail {

class TaskBase;

// What a Future<T> stores: T, or nothing for Future<void>.
template <class T>
using StoredValue = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// The untyped part of every future and task: state, exception, callbacks.
class FutureBase {
public:
    enum class State : uint8_t { pending, cancelled, finished };
    using DoneCallback = Callback<void(FutureBase&)>;

    FutureBase(EventLoop& loop, void* value_slot, bool is_task) noexcept
        : _loop(&loop), _value_slot(value_slot), _is_task(is_task) {}
    // Releases the tasks still waiting for it (a future dropped while pending).
    virtual ~FutureBase();
    FutureBase(const FutureBase&) = delete;
    FutureBase& operator=(const FutureBase&) = delete;

    // Futures and tasks come and go at a high rate: their memory is cached
    // per thread instead of going back to the heap each time.
    static void* operator new(std::size_t size) { return SizeClassPool::allocate(size); }
    static void operator delete(void* block, std::size_t size) noexcept {
        SizeClassPool::deallocate(block, size);
    }

    void add_ref() noexcept { ++_refs; }
    // Drops a reference. Before the last one goes, an exception that nobody
    // retrieved is reported to the loop's exception handler, as asyncio does
    // when it collects such a future.
    void release() noexcept {
        if (--_refs == 0) {
            release_last();
        }
    }

    EventLoop& loop() const noexcept { return *_loop; }
    State state() const noexcept { return _state; }
    bool done() const noexcept { return _state != State::pending; }
    bool cancelled() const noexcept { return _state == State::cancelled; }
    bool is_task() const noexcept { return _is_task; }
    void* value_slot() const noexcept { return _value_slot; }
    const std::string& cancel_message() const noexcept { return _cancel_message; }

    // asyncio's Future.cancel(); a Task cancels its body instead.
    virtual bool cancel(std::string message);

    // Returns the exception (null when the result is a value) and marks it
    // retrieved. Throws CancelledError when cancelled, InvalidStateError
    // while pending.
    std::exception_ptr exception();

    // Returns when the future holds a value; otherwise throws what
    // result() would: its exception, CancelledError, or InvalidStateError.
    void check_result();

    // Throws InvalidStateError when the future is already done.
    void set_exception(std::exception_ptr error);

    // Marks the future finished; its value was just stored in the slot.
    // Throws InvalidStateError when it is already done.
    void finish();

    // Throws InvalidStateError("invalid state") when the future is done.
    void ensure_pending() const;

    // Callbacks run through the loop's call_soon once the future is done
    // (at once, if it already is). Returns an id for remove_done_callback.
    uint64_t add_done_callback(DoneCallback callback);
    // Removes the callbacks added with `id`; returns how many (0 or 1).
    std::size_t remove_done_callback(uint64_t id);

    // The task to wake when this future is done (used by await).
    void add_waiter(TaskBase* task);

    // "<Future pending>", "<Future finished result>", "<Task cancelled name='Task-3'>"…
    virtual std::string repr() const;

protected:
    // asyncio's Future.cancel(), without a task's override.
    bool cancel_future(std::string message);
    void schedule_callbacks();
    // Runs callback(*this) soon, through the loop's call_soon.
    void schedule_callback(DoneCallback callback);
    // The last reference went: reports an unretrieved exception, then frees.
    void release_last() noexcept;
    // Hook for tasks, whose "never retrieved" message differs.
    virtual const char* unretrieved_message() const noexcept;

    EventLoop* _loop;
    void* _value_slot;
    uint32_t _refs = 1;
    State _state = State::pending;
    bool _is_task;
    bool _log_exception = false;  // set with an exception nobody has retrieved yet
    std::exception_ptr _exception;
    std::string _cancel_message;

private:
    struct CallbackEntry {
        uint64_t id;
        DoneCallback callback;
        TaskBase* waiter;  // when set, wakes this task instead of a callback (holds a reference)
    };
    std::vector<CallbackEntry> _callbacks;
    uint64_t _next_callback_id = 1;
};

template <class T>
class FutureState final : public FutureBase {
public:
    explicit FutureState(EventLoop& loop) noexcept : FutureBase(loop, &value, false) {}
    std::optional<StoredValue<T>> value;
};

template <class T>
std::optional<StoredValue<T>>& value_slot_of(FutureBase& state) {
    return *static_cast<std::optional<StoredValue<T>>*>(state.value_slot());
}

// Describes the exception behind an exception_ptr: "std::runtime_error: boom".
std::string describe_exception(const std::exception_ptr& error);

}  // namespace detail

// A future of any type: what exception handlers and gather/wait helpers see.
class AnyFuture {
public:
    AnyFuture() = default;
    explicit AnyFuture(detail::Ref<detail::FutureBase> state) : _state(std::move(state)) {}
    template <class T>
    AnyFuture(const Future<T>& future) : _state(future.state_ref()) {}  // NOLINT: widening

    bool done() const { return _state->done(); }
    bool cancelled() const { return _state->cancelled(); }
    bool cancel(std::string message = {}) { return _state->cancel(std::move(message)); }
    std::exception_ptr exception() const { return _state->exception(); }
    bool is_task() const { return _state->is_task(); }
    std::string repr() const { return _state ? _state->repr() : "<no future>"; }
    EventLoop& get_loop() const { return _state->loop(); }

    explicit operator bool() const noexcept { return static_cast<bool>(_state); }
    friend bool operator==(const AnyFuture& a, const AnyFuture& b) noexcept {
        return a._state == b._state;
    }
    detail::FutureBase* state() const noexcept { return _state.get(); }

protected:
    detail::Ref<detail::FutureBase> _state;
};

template <class T>
class Future {
public:
    using value_type = T;

    // An empty handle; use EventLoop::create_future() to make a real one.
    Future() = default;
    explicit Future(detail::Ref<detail::FutureBase> state) : _state(std::move(state)) {}

    // The result. Throws the future's exception, CancelledError when it was
    // cancelled, or InvalidStateError("Result is not set.") while pending.
    const detail::StoredValue<T>& result() const requires(!std::is_void_v<T>) {
        _state->check_result();
        return *detail::value_slot_of<T>(*_state);
    }
    void result() const requires std::is_void_v<T> { _state->check_result(); }

    // The exception (null when there is a value). Throws CancelledError when
    // cancelled, InvalidStateError("Exception is not set.") while pending.
    std::exception_ptr exception() const { return _state->exception(); }

    bool done() const { return _state->done(); }
    bool cancelled() const { return _state->cancelled(); }

    // Cancels the future (and, for a task, its body). Returns false when it
    // is already done. `message` reaches the CancelledError.
    bool cancel(std::string message = {}) { return _state->cancel(std::move(message)); }

    // Schedules fn(future) with the loop's call_soon once the future is done
    // (soon, if it already is). Returns an id for remove_done_callback.
    template <class F>
    uint64_t add_done_callback(F&& fn) {
        return _state->add_done_callback(
            [fn = std::forward<F>(fn)](detail::FutureBase& state) mutable {
                fn(Future<T>(detail::Ref<detail::FutureBase>(&state)));
            });
    }
    // Removes the callback added with `id`; returns how many were removed.
    std::size_t remove_done_callback(uint64_t id) { return _state->remove_done_callback(id); }

    // Sets the result. Throws InvalidStateError when the future is done.
    template <class U = detail::StoredValue<T>>
    void set_result(U&& value) requires(!std::is_void_v<T>) {
        _state->ensure_pending();
        detail::value_slot_of<T>(*_state).emplace(std::forward<U>(value));
        _state->finish();
    }
    void set_result() requires std::is_void_v<T> { _state->finish(); }

    // Sets an exception. Throws InvalidStateError when the future is done.
    void set_exception(std::exception_ptr error) { _state->set_exception(std::move(error)); }
    template <class E>
    void set_exception(E error) requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>) {
        set_exception(std::make_exception_ptr(std::move(error)));
    }

    EventLoop& get_loop() const { return _state->loop(); }
    std::string repr() const { return _state->repr(); }

    bool valid() const noexcept { return static_cast<bool>(_state); }
    detail::FutureBase* state() const noexcept { return _state.get(); }
    const detail::Ref<detail::FutureBase>& state_ref() const noexcept { return _state; }
    friend bool operator==(const Future& a, const Future& b) noexcept {
        return a._state == b._state;
    }

protected:
    detail::Ref<detail::FutureBase> _state;
};

namespace detail {
// What await() and run_until_complete() hand out for a done future: a copy
// of its result, or the result itself when the type is move-only. Throws
// what result() throws.
template <class T>
T take_result(FutureBase& state) {
    state.check_result();
    if constexpr (!std::is_void_v<T>) {
        auto& slot = value_slot_of<T>(state);
        if constexpr (std::is_copy_constructible_v<T>) {
            return *slot;
        } else {
            return std::move(*slot);
        }
    }
}

// A done future's result as a value: a copy of it, or std::monostate for void.
template <class T>
StoredValue<T> stored_result(const Future<T>& future) {
    if constexpr (std::is_void_v<T>) {
        future.result();
        return {};
    } else {
        return future.result();
    }
}
}  // namespace detail

}  // namespace shardloop
