#pragma once

// Handle and TimerHandle: what call_soon, call_later and call_at return
// (asyncio.Handle and asyncio.TimerHandle).

#include <atomic>
#include <cstdint>
#include <string>

#include "runtime/callback.hpp"
#include "runtime/ref.hpp"

namespace shardloop {

class EventLoop;

namespace detail {

// Something the ready queue can run: a callback's handle or a task's next
// step. The queue holds one reference to it while it waits.
struct Runnable {
    struct Ops {
        void (*run)(Runnable* self);      // runs it, then releases the queue's reference
        void (*release)(Runnable* self);  // drops the queue's reference without running
    };
    const Ops* ops;
};

// A node of the loop's multi-producer queue of thread-safe callbacks.
struct MpscNode {
    std::atomic<MpscNode*> mpsc_next{nullptr};
};

class HandleState : public Runnable, public MpscNode {
public:
    HandleState(EventLoop* loop, Callback<void()> callback, bool threadsafe);

    void add_ref() noexcept;
    void release() noexcept;

    // Cancels the callback: it will not run. The callback (and what it
    // captured) is released at once, like asyncio drops its references.
    void cancel() noexcept;
    bool cancelled() const noexcept;

    // "<Handle main::{lambda()#1}>" style description for logs.
    std::string repr() const;

    EventLoop* loop;
    Callback<void()> callback;
    bool is_timer = false;
    bool threadsafe;
    // TimerState: still in the loop's timer heap.
    bool scheduled = false;
    // Its callback is running: cancel() must not destroy it under its feet.
    bool running = false;

    static const Ops runnable_ops;

protected:
    ~HandleState() = default;

private:
    uint32_t _refs = 1;
    bool _cancelled = false;
};

class TimerState final : public HandleState {
public:
    TimerState(EventLoop* loop, int64_t when_ns, Callback<void()> callback);

    int64_t when_ns;
    uint64_t sequence = 0;  // breaks ties between equal deadlines: FIFO
};

}  // namespace detail

// A scheduled callback. Copies refer to the same callback. A default Handle
// refers to nothing. Loop thread only, like the loop it came from (except a
// handle from call_soon_threadsafe, which may be cancelled from any thread).
class Handle {
public:
    Handle() = default;
    explicit Handle(detail::Ref<detail::HandleState> state) : _state(std::move(state)) {}

    // Stops the callback from running if it has not run yet, and releases
    // what it captured. A cancelled timer tells its loop, so that cancelled
    // timers do not pile up in the heap. Idempotent.
    void cancel();
    // True once cancel() was called.
    bool cancelled() const;
    // The loop the callback was scheduled on.
    EventLoop& get_loop() const;
    std::string repr() const;

    explicit operator bool() const noexcept { return static_cast<bool>(_state); }
    friend bool operator==(const Handle& a, const Handle& b) noexcept {
        return a._state == b._state;
    }
    detail::HandleState* state() const noexcept { return _state.get(); }

protected:
    detail::Ref<detail::HandleState> _state;
};

// A callback scheduled for a time: what call_later and call_at return.
class TimerHandle : public Handle {
public:
    TimerHandle() = default;
    explicit TimerHandle(detail::Ref<detail::HandleState> state) : Handle(std::move(state)) {}

    // The time (on the loop's clock, see EventLoop::time()) the callback is
    // scheduled for, in seconds.
    double when() const;
};

}  // namespace shardloop
