#include "runtime/fd_watcher.hpp"

#include <poll.h>

#include <cerrno>
#include <stdexcept>

#include "runtime/event_loop.hpp"
#include "runtime/object_pool.hpp"

namespace shardloop {

namespace detail {

const Runnable::Ops FdWatcher::runnable_ops{
    [](Runnable* self) { static_cast<FdWatcher*>(self)->run(); },
    [](Runnable* self) {
        auto* watcher = static_cast<FdWatcher*>(self);
        watcher->_queued = false;
        watcher->destroy_if_idle();
    },
};

FdWatcher::FdWatcher(EventLoop& loop, int fd, uint32_t events, Ref<HandleState> handle)
    : IoCompletion{&FdWatcher::on_poll},
      Runnable{&runnable_ops},
      _loop(loop),
      _fd(fd),
      _events(events),
      _handle(std::move(handle)) {
    arm();
}

void FdWatcher::replace(Ref<HandleState> handle) {
    if (_handle) {
        _handle->cancel();
    }
    _handle = std::move(handle);
    _failed = false;
    if (!_armed && !_queued) {
        arm();
    }
}

void FdWatcher::remove() noexcept {
    _removed = true;
    if (_handle) {
        _handle->cancel();
        _handle.reset();
    }
    if (_armed) {
        _loop.reactor().cancel(this);
    }
    destroy_if_idle();
}

void FdWatcher::arm() {
    _loop.reactor().submit(IoRequest::poll(_fd, _events), this);
    _armed = true;
}

void FdWatcher::on_poll(IoCompletion* self, int result, uint32_t /*flags*/) {
    auto* watcher = static_cast<FdWatcher*>(self);
    watcher->_armed = false;
    if (watcher->_removed) {
        watcher->destroy_if_idle();
        return;
    }
    if (result == -ECANCELED) {
        watcher->arm();  // cancelled by someone else (a ring-wide cancel): keep watching
        return;
    }
    // An error, or POLLNVAL/POLLERR, still runs the callback once, so that
    // the code reading the fd meets the error itself; the poll is not
    // re-armed then, or a closed fd would spin.
    if (result < 0 || (static_cast<uint32_t>(result) & (POLLNVAL | POLLERR)) != 0) {
        watcher->_failed = true;
    }
    watcher->_queued = true;
    watcher->_loop.schedule(watcher);
}

void FdWatcher::run() {
    // Still counted as queued while the callback runs: a callback that
    // removes its own watcher must not free it under our feet.
    if (!_removed) {
        Ref<HandleState> handle = _handle;  // the callback may replace or remove us
        if (handle && !handle->cancelled()) {
            HandleState::runnable_ops.run(handle.detach());  // runs it and drops that reference
        }
    }
    _queued = false;
    if (_removed) {
        destroy_if_idle();
    } else if (!_armed && !_failed) {
        arm();
    }
}

void FdWatcher::destroy_if_idle() noexcept {
    if (_removed && !_armed && !_queued) {
        delete this;
    }
}

}  // namespace detail

void EventLoop::add_reader(int fd, detail::Callback<void()> fn) {
    set_fd_watcher(fd, false, std::move(fn));
}
void EventLoop::add_writer(int fd, detail::Callback<void()> fn) {
    set_fd_watcher(fd, true, std::move(fn));
}
bool EventLoop::remove_reader(int fd) { return remove_fd_watcher(fd, false); }
bool EventLoop::remove_writer(int fd) { return remove_fd_watcher(fd, true); }

void EventLoop::set_fd_watcher(int fd, bool write, detail::Callback<void()> fn) {
    check_closed();
    if (_debug) {
        check_thread();
    }
    if (fd < 0) {
        throw std::invalid_argument("Invalid file descriptor: " + std::to_string(fd));
    }
    if (_net) {
        _net->ensure_fd_no_transport(fd);
    }
    auto* state = new (detail::BlockCache<sizeof(detail::HandleState)>::allocate())
        detail::HandleState(this, std::move(fn), false);
    auto handle = detail::Ref<detail::HandleState>::adopt(state);
    auto& watchers = write ? _writers : _readers;
    auto it = watchers.find(fd);
    if (it != watchers.end()) {
        it->second->replace(std::move(handle));
        return;
    }
    watchers.emplace(fd,
                     new detail::FdWatcher(*this, fd, write ? POLLOUT : POLLIN, std::move(handle)));
}

bool EventLoop::remove_fd_watcher(int fd, bool write) {
    if (_closed) {
        return false;
    }
    if (_debug) {
        check_thread();
    }
    if (_net) {
        _net->ensure_fd_no_transport(fd);
    }
    auto& watchers = write ? _writers : _readers;
    auto it = watchers.find(fd);
    if (it == watchers.end()) {
        return false;
    }
    detail::FdWatcher* watcher = it->second;
    watchers.erase(it);
    watcher->remove();
    return true;
}

void EventLoop::close_fd_watchers() {
    for (auto* watchers : {&_readers, &_writers}) {
        for (auto& [fd, watcher] : *watchers) {
            watcher->remove();
        }
        watchers->clear();
    }
}

}  // namespace shardloop
