#pragma once

// The readiness loop behind the sock_* methods. asyncio's selector loop tries
// the non-blocking call, and when it would block registers a reader (or
// writer) that tries again once the fd is ready. Here the future a sock_*
// method returns is that operation: it waits through a one-shot io_uring
// poll and makes its call inside the poll's completion, on the loop thread.
//
// Because the call is only ever made there, and only while the future is
// still pending, cancelling the future leaves the socket untouched: nothing
// is read (or accepted, or sent) on behalf of a caller that gave up.
//
// Loop thread only, like every future.

#include <poll.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include "runtime/event_loop.hpp"
#include "runtime/future.hpp"

namespace shardloop::detail {

// Runs `call` (a system call returning -1 and errno on failure) again while a
// signal interrupts it; returns its result, or -errno.
template <class Call>
long retry_eintr(Call&& call) {
    for (;;) {
        long result = static_cast<long>(call());
        if (result >= 0) {
            return result;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

inline bool would_block(long result) { return result == -EAGAIN || result == -EWOULDBLOCK; }

// The untyped part: the poll, its cancellation, and the retry.
class FdOpBase : public FutureBase {
public:
    // Cancels the future, then the poll it waits on. The fd is not touched.
    bool cancel(std::string message) override;

    // Makes the first attempt now and, if it would block, starts waiting.
    // Throws only when the reactor refuses the poll.
    void start();

    // Fails the future with std::system_error(error, what).
    void fail(int error, const std::string& what);

protected:
    FdOpBase(EventLoop& loop, void* value_slot, int fd, uint32_t events) noexcept
        : FutureBase(loop, value_slot, false), _fd(fd), _events(events) {}
    // A pending operation nobody holds any more cancels its poll.
    ~FdOpBase() override;

    // Makes the call once. Returns true when the future is done (the body
    // set its result or exception), false when the call would block.
    virtual bool attempt() = 0;
    // The future was just cancelled (sendfile puts the file position right).
    virtual void cancelled() noexcept {}

private:
    struct PollSlot;
    static void on_poll(IoCompletion* self, int result, uint32_t flags);
    void arm();
    void on_ready(int result) noexcept;
    void run_attempt();

    int _fd;
    uint32_t _events;
    // The poll's completion sink lives apart from the future: a future that
    // is dropped while its poll is in the kernel leaves the slot behind,
    // and the slot frees itself when the poll's final completion arrives.
    PollSlot* _slot = nullptr;
    bool _armed = false;
};

template <class T>
class FdOp : public FdOpBase {
public:
    FdOp(EventLoop& loop, int fd, uint32_t events) noexcept : FdOpBase(loop, &value, fd, events) {}

    template <class... A>
    void succeed(A&&... result) {
        value.emplace(std::forward<A>(result)...);
        finish();
    }

    std::optional<StoredValue<T>> value;
};

// `Body` is callable as bool(FdOp<T>&) (see FdOpBase::attempt) and may have
// an on_cancel() noexcept member.
template <class T, class Body>
class FdOpImpl final : public FdOp<T> {
public:
    FdOpImpl(EventLoop& loop, int fd, uint32_t events, Body body)
        : FdOp<T>(loop, fd, events), _body(std::move(body)) {}

private:
    bool attempt() override { return _body(static_cast<FdOp<T>&>(*this)); }
    void cancelled() noexcept override {
        if constexpr (requires(Body & body) { body.on_cancel(); }) {
            _body.on_cancel();
        }
    }

    Body _body;
};

// Starts an operation on `fd` that waits for `events` (POLLIN or POLLOUT)
// whenever `body` reports that its call would block.
template <class T, class Body>
Future<T> start_fd_op(EventLoop& loop, int fd, uint32_t events, Body body) {
    auto* op = new FdOpImpl<T, Body>(loop, fd, events, std::move(body));
    Future<T> future(Ref<FutureBase>::adopt(op));
    op->start();
    return future;
}

}  // namespace shardloop::detail
