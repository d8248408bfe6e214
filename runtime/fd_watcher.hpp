#pragma once

// add_reader / add_writer: one io_uring poll per watched (fd, direction).
// The poll is one-shot and re-armed after the callback has run, which gives
// asyncio's level-triggered behaviour: while the fd stays ready the callback
// runs once per iteration, and never twice in one.

#include <string>

#include "runtime/handle.hpp"
#include "runtime/reactor.hpp"

namespace shardloop::detail {

class FdWatcher final : public IoCompletion, public Runnable {
public:
    FdWatcher(EventLoop& loop, int fd, uint32_t events, Ref<HandleState> handle);

    // Replaces the callback; the previous handle is cancelled.
    void replace(Ref<HandleState> handle);

    // Stops watching. The watcher frees itself once its poll completion has
    // arrived and it is not queued; call this instead of deleting it.
    void remove() noexcept;

    int fd() const noexcept { return _fd; }

    static bool is_watcher(const Runnable* runnable) noexcept {
        return runnable->ops == &runnable_ops;
    }
    // Its callback's repr (debug mode's slow-callback log).
    std::string repr() const { return _handle ? _handle->repr() : "<fd watcher>"; }

private:
    static const Runnable::Ops runnable_ops;
    static void on_poll(IoCompletion* self, int result, uint32_t flags);
    void arm();
    void run();
    void destroy_if_idle() noexcept;

    EventLoop& _loop;
    int _fd;
    uint32_t _events;
    Ref<HandleState> _handle;
    bool _armed = false;   // a poll is in the kernel
    bool _queued = false;  // waiting in the ready queue
    bool _removed = false;
    bool _failed = false;  // the poll itself failed (bad fd): not re-armed
};

}  // namespace shardloop::detail
