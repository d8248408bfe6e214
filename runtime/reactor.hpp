#pragma once

// The reactor: the narrow interface between the event loop and the kernel.
//
// An operation is a plain value (IoRequest) plus a completion sink
// (IoCompletion). The loop queues operations with submit(), and once per
// iteration calls wait(), which hands everything queued to the kernel, waits
// for completions up to a timeout, and calls each completion's function.
// Nothing outside the backend's own .cpp file sees liburing.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace shardloop::detail {

enum class IoOpcode : uint8_t {
    nop,
    read,      // fd, addr=buffer, len, offset (-1: current position)
    write,     // fd, addr=buffer, len, offset (-1: current position)
    recv,      // fd, addr=buffer, len, op_flags=MSG_*; multishot needs select_buffer
    send,      // fd, addr=buffer, len, op_flags=MSG_*
    recvmsg,   // fd, addr=msghdr*, op_flags=MSG_*
    sendmsg,   // fd, addr=msghdr*, op_flags=MSG_*
    accept,    // fd, addr=sockaddr*, addr2=socklen_t*, op_flags=accept4 flags
    connect,   // fd, addr=sockaddr*, len=socklen
    close,     // fd
    shutdown,  // fd, op_flags=how
    poll_add,  // fd, op_flags=poll mask (POLLIN...)
    timeout,   // offset=relative nanoseconds; completes -ETIME when it fires
    splice,    // fd=in, offset=in offset (-1: none), fd_out, offset_out, len, op_flags=SPLICE_F_*
};

// One operation, described as data. The backend turns it into exactly one
// submission queue entry. Pointers it carries (buffers, addresses, headers)
// must stay valid until the operation's final completion arrives, even when
// it is cancelled: the kernel may still be writing into them.
struct IoRequest {
    IoOpcode opcode = IoOpcode::nop;
    int fd = -1;
    void* addr = nullptr;
    void* addr2 = nullptr;
    uint32_t len = 0;
    uint64_t offset = 0;
    int fd_out = -1;
    uint64_t offset_out = 0;
    uint32_t op_flags = 0;
    bool multishot = false;      // accept, recv, poll_add
    bool select_buffer = false;  // recv from the provided buffer group `buffer_group`
    uint16_t buffer_group = 0;

    static IoRequest nop() { return {}; }
    static IoRequest read(int fd, void* buf, uint32_t len, uint64_t offset = UINT64_MAX) {
        return {.opcode = IoOpcode::read, .fd = fd, .addr = buf, .len = len, .offset = offset};
    }
    static IoRequest write(int fd, const void* buf, uint32_t len, uint64_t offset = UINT64_MAX) {
        return {.opcode = IoOpcode::write,
                .fd = fd,
                .addr = const_cast<void*>(buf),
                .len = len,
                .offset = offset};
    }
    static IoRequest poll(int fd, uint32_t events, bool multishot = false) {
        return {.opcode = IoOpcode::poll_add, .fd = fd, .op_flags = events, .multishot = multishot};
    }
    static IoRequest timeout(std::chrono::nanoseconds after) {
        return {.opcode = IoOpcode::timeout, .offset = static_cast<uint64_t>(after.count())};
    }
    static IoRequest close(int fd) { return {.opcode = IoOpcode::close, .fd = fd}; }
};

// Flags a completion carries, independent of the backend's encoding.
namespace io_flags {
inline constexpr uint32_t more = 1U << 0;    // a multishot operation stays armed
inline constexpr uint32_t buffer = 1U << 1;  // a provided buffer was used; see buffer_id()
inline constexpr uint32_t buffer_id_shift = 16;
inline constexpr uint16_t buffer_id(uint32_t flags) {
    return static_cast<uint16_t>(flags >> buffer_id_shift);
}
}  // namespace io_flags

// Where a completion goes. The owner embeds this in whatever object owns the
// operation's buffers and frees that object from `on_complete` once the
// final completion (one without io_flags::more) has arrived.
struct IoCompletion {
    using Fn = void (*)(IoCompletion* self, int result, uint32_t flags);
    Fn on_complete = nullptr;
};

struct ReactorOptions {
    unsigned sq_entries = 256;
    unsigned cq_entries = 0;  // 0: four times sq_entries
    // Ask for IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN; the
    // backend falls back without them when the kernel refuses.
    bool single_issuer = true;
};

// A provided-buffer ring: `count` buffers of `size` bytes that the kernel
// picks from for operations submitted with select_buffer in its group (a
// multishot recv takes one per completion and reports its id in the
// completion's flags). The taker gives each buffer back with recycle() once
// it is done with the bytes. Loop thread only; the reactor must outlive it.
//
// The buffers are one block of `count * size` bytes, buffer `id` at
// `id * size`, so that finding a buffer (on every receive) is arithmetic
// rather than a call into the backend.
class BufferRing {
public:
    virtual ~BufferRing() = default;
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;

    uint16_t group() const noexcept { return _group; }
    uint32_t buffer_size() const noexcept { return _size; }
    char* buffer(uint16_t id) const noexcept {
        return _buffers + static_cast<std::size_t>(id) * _size;
    }
    virtual void recycle(uint16_t id) noexcept = 0;

protected:
    BufferRing(uint16_t group, uint32_t size) : _group(group), _size(size) {}
    // The backend sets this once it has allocated the buffers.
    char* _buffers = nullptr;

private:
    uint16_t _group;
    uint32_t _size;
};

class Reactor {
public:
    virtual ~Reactor() = default;

    // The reactor is destroyed on the loop thread, after the operations it
    // carried have completed (the loop drains them at close).

    // Queues an operation. It reaches the kernel at the next wait(), or at
    // once when the submission queue is full (the queue is flushed and the
    // operation queued behind it: nothing is dropped). `completion` must
    // outlive the operation's final completion. Loop thread only.
    virtual void submit(const IoRequest& request, IoCompletion* completion) = 0;

    // Asks the kernel to cancel the operation that reports to `target`. The
    // target still gets its final completion (usually -ECANCELED, or its
    // result when it won the race); only then may its buffers be freed.
    // Loop thread only.
    virtual void cancel(IoCompletion* target) = 0;

    // Hands queued operations to the kernel, waits until at least one
    // completion arrives, wake() is called, or `timeout` passes (zero: do
    // not wait; negative: no limit), then dispatches every completion that
    // arrived. Returns the number of completions dispatched, or -errno. A
    // completion handler that throws ends the call; the completions behind
    // it are dispatched by the next wait().
    // When nothing is queued or in flight and timeout is zero, it makes no
    // system call. Loop thread only; never re-entered from a completion.
    virtual int wait(std::chrono::nanoseconds timeout) = 0;

    // Makes a wait() in progress (or the next one) return promptly. Any
    // thread may call it; it costs one system call.
    virtual void wake() = 0;

    // Operations queued or in flight, not counting the reactor's own.
    virtual std::size_t in_flight() const = 0;

    // True when the next wait() has something to do at once: operations
    // queued but not yet submitted, completions waiting in the completion
    // queue, or work the kernel holds for this thread (deferred task work,
    // overflowed completions). Reads shared memory only, no system call, so
    // a loop that polls before sleeping can call it in a tight loop.
    virtual bool has_pending_events() const noexcept = 0;

    // Registers a ring of `count` (a power of two) buffers of `size` bytes as
    // buffer group `group`. Throws std::system_error when the kernel refuses.
    virtual std::unique_ptr<BufferRing> make_buffer_ring(uint16_t group, uint16_t count,
                                                         uint32_t size) = 0;

    // A short description for logs: backend and the setup flags in use.
    virtual std::string name() const = 0;

    // Operations handed to the kernel and trips into it, since creation.
    // Loop thread only.
    virtual uint64_t submissions() const = 0;
    virtual uint64_t kernel_entries() const = 0;
};

// Creates the io_uring backend: one ring, bound to the first thread that
// submits to it. Throws std::system_error naming the cause when io_uring
// cannot be set up here (disabled by sysctl, refused by seccomp, old kernel).
std::unique_ptr<Reactor> make_io_uring_reactor(const ReactorOptions& options = {});

}  // namespace shardloop::detail
