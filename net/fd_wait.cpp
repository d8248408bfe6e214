#include "net/fd_wait.hpp"

#include <exception>
#include <system_error>

#include "runtime/reactor.hpp"

namespace shardloop::detail {

struct FdOpBase::PollSlot final : IoCompletion {
    explicit PollSlot(FdOpBase* op) noexcept : IoCompletion{&FdOpBase::on_poll}, owner(op) {}
    FdOpBase* owner;  // null once the operation has gone
};

FdOpBase::~FdOpBase() {
    if (_slot == nullptr) {
        return;
    }
    if (!_armed) {
        delete _slot;
        return;
    }
    _slot->owner = nullptr;
    try {
        _loop->reactor().cancel(_slot);
    } catch (...) {
        // The ring refused even a cancel: the poll ends when the fd is ready
        // or the ring goes, and the orphaned slot is freed then (or leaks
        // with the ring). Nothing better can be done in a destructor.
    }
}

bool FdOpBase::cancel(std::string message) {
    if (!cancel_future(std::move(message))) {
        return false;
    }
    cancelled();
    if (_armed) {
        _loop->reactor().cancel(_slot);
    }
    return true;
}

void FdOpBase::fail(int error, const std::string& what) {
    set_exception(std::make_exception_ptr(std::system_error(error, std::generic_category(), what)));
}

void FdOpBase::start() { run_attempt(); }

void FdOpBase::run_attempt() {
    bool finished = true;
    try {
        finished = attempt();
    } catch (...) {
        if (!done()) {
            set_exception(std::current_exception());
        }
    }
    if (!finished && !done()) {
        arm();
    }
}

void FdOpBase::arm() {
    if (_slot == nullptr) {
        _slot = new PollSlot(this);
    }
    _loop->reactor().submit(IoRequest::poll(_fd, _events), _slot);
    _armed = true;
}

void FdOpBase::on_poll(IoCompletion* self, int result, uint32_t /*flags*/) {
    auto* slot = static_cast<PollSlot*>(self);
    if (slot->owner == nullptr) {
        delete slot;
        return;
    }
    slot->owner->on_ready(result);
}

void FdOpBase::on_ready(int result) noexcept {
    _armed = false;
    if (done()) {
        return;  // cancelled meanwhile: the fd stays as it is
    }
    // The body may complete the future, and a done callback may drop the
    // last other reference before we are through.
    Ref<FutureBase> keep(this);
    try {
        if (result == -ECANCELED) {
            arm();  // cancelled by someone else (a ring-wide cancel): keep waiting
        } else if (result < 0) {
            fail(-result, "poll");
        } else {
            // POLLERR and POLLHUP included: the call itself reports the
            // error or the end of the stream.
            run_attempt();
        }
    } catch (...) {
        // Only arm() throws here (the reactor refused the poll). A
        // completion handler must not throw, so the error goes to the future.
        if (!done()) {
            set_exception(std::current_exception());
        }
    }
}

}  // namespace shardloop::detail
