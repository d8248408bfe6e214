#pragma once

// The loop's door for other threads: call_soon_threadsafe pushes a handle
// here and wakes the loop only if it is asleep. Shared (by shared_ptr) with
// every PostedCallback, so a late post from a worker thread never touches a
// destroyed loop.

#include <atomic>
#include <memory>

#include "runtime/mpsc_queue.hpp"
#include "runtime/reactor.hpp"

namespace shardloop::detail {

class LoopInbox {
public:
    explicit LoopInbox(std::shared_ptr<Reactor> reactor) : _reactor(std::move(reactor)) {}
    ~LoopInbox();

    // Any thread: queues `handle` (the queue takes the caller's reference)
    // and wakes the loop when it sleeps. A loop that is awake costs no
    // system call: it drains the queue at its next iteration.
    void post(HandleState* handle) noexcept {
        _queue.push(handle);
        wake_if_sleeping();
    }

    // Any thread, after making work visible with a sequentially consistent
    // store (the queue's exchange, a cross-shard ring's publish_seq_cst()):
    // wakes the loop if it sleeps. Pairs with the seq_cst store of
    // `_sleeping` in prepare_to_sleep(): either the loop sees the work, or
    // we see it asleep (Dekker). One wake per sleep, however many senders.
    void wake_if_sleeping() noexcept {
        if (_sleeping.load(std::memory_order_seq_cst) &&
            _sleeping.exchange(false, std::memory_order_seq_cst)) {
            wakes.fetch_add(1, std::memory_order_relaxed);
            _reactor->wake();
        }
    }

    // Wake-ups sent so far (system calls other threads paid to wake it).
    std::atomic<uint64_t> wakes{0};

    // Loop thread, before a blocking wait: returns false (do not block)
    // when something was posted meanwhile.
    bool prepare_to_sleep() noexcept {
        _sleeping.store(true, std::memory_order_seq_cst);
        if (!_queue.empty()) {
            _sleeping.store(false, std::memory_order_relaxed);
            return false;
        }
        return true;
    }
    void woke_up() noexcept { _sleeping.store(false, std::memory_order_relaxed); }

    // Loop thread: the next posted handle, or null.
    HandleState* pop() noexcept { return static_cast<HandleState*>(_queue.pop()); }
    bool empty() const noexcept { return _queue.empty(); }

    // Set once the loop is closed: call_soon_threadsafe then throws.
    std::atomic<bool> closed{false};

private:
    MpscQueue _queue;
    std::atomic<bool> _sleeping{false};
    std::shared_ptr<Reactor> _reactor;
};

// A callback prepared on the loop thread and posted to it, exactly once,
// from any thread: explicitly with post(), or by the destructor. The
// callback is only ever run or destroyed on the loop thread, so what it
// captures (futures) need not be thread-safe.
class PostedCallback {
public:
    PostedCallback(std::shared_ptr<LoopInbox> inbox, HandleState* handle) noexcept
        : _inbox(std::move(inbox)), _handle(handle) {}
    PostedCallback(PostedCallback&& other) noexcept
        : _inbox(std::move(other._inbox)), _handle(std::exchange(other._handle, nullptr)) {}
    PostedCallback& operator=(PostedCallback&&) = delete;
    ~PostedCallback() { post(); }

    void post() noexcept {
        HandleState* handle = std::exchange(_handle, nullptr);
        if (handle != nullptr && _inbox) {
            _inbox->post(handle);
        }
    }

private:
    std::shared_ptr<LoopInbox> _inbox;
    HandleState* _handle;
};

}  // namespace shardloop::detail
