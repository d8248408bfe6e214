#pragma once

// sleep() and yield_now(): the task helpers that give the loop back.

#include "runtime/event_loop.hpp"

namespace shardloop {

// A future that completes `delay` seconds from now on the running loop
// (asyncio.sleep). Await it in a task: await(sleep(0.5)). Throws
// RuntimeError when no loop runs, std::invalid_argument for a NaN delay.
inline Future<void> sleep(double delay) {
    EventLoop& loop = get_running_loop();
    Future<void> done = loop.create_future<void>();
    TimerHandle timer = loop.call_later(delay, [done]() mutable {
        if (!done.done()) {
            done.set_result();
        }
    });
    // A cancelled sleep takes its timer out of the heap's way at once.
    done.add_done_callback([timer](const Future<void>& f) mutable {
        if (f.cancelled()) {
            timer.cancel();
        }
    });
    return done;
}

// Inside a task: lets every other ready callback run, then continues
// (asyncio's `await asyncio.sleep(0)`, without allocating a future).
// Throws CancelledError when the task was cancelled; RuntimeError outside a task.
inline void yield_now() {
    detail::TaskBase* task = detail::TaskBase::current();
    if (task == nullptr) {
        throw RuntimeError("yield_now() called outside a task");
    }
    task->yield_now();
}

}  // namespace shardloop
