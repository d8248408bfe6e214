// The io_uring backend of the reactor interface (runtime/reactor.hpp). With
// runtime/io_uring_setup.cpp (ring creation and its errors), the only code in
// shardloop that includes <liburing.h>.
//
// One ring per reactor. Every operation becomes one SQE whose user_data is
// the operation's IoCompletion; wait() is one io_uring_enter that submits
// everything queued and waits, then a batched reap of the CQ.
//
// Lifetime: the destructor exits the ring without waiting for operations
// still in flight, and their completions are never delivered. The kernel
// cancels them as it tears the ring down; poll-driven operations (sockets,
// pipes, eventfds) stop touching their buffers at once, but a blocking
// operation already running on an io-wq worker (a regular-file read, say)
// may finish after the destructor returns. Owners should therefore let their
// operations complete (cancel, then wait) before destroying the reactor, and
// destroy it on the loop thread (the registered ring fd belongs to that
// thread).

#include <liburing.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/errors.hpp"
#include "runtime/io_uring_setup.hpp"
#include "runtime/reactor.hpp"

namespace shardloop::detail {
namespace {

// The user_data of the reactor's own cancel SQEs. IoCompletion holds a
// function pointer, so no IoCompletion can live at an odd address: a
// completion carrying this value is the reactor's and is swallowed.
constexpr uint64_t cancel_user_data = 1;

// How many CQEs one peek at the CQ takes.
constexpr unsigned reap_batch = 256;

// How often a flush of a full SQ may fail with a transient error (-EAGAIN:
// the kernel could not allocate requests; -EBUSY: older kernels refuse to
// submit while CQEs wait in the overflow list) before submit() gives up and
// throws rather than spin.
constexpr int max_flush_retries = 1000;

// io_uring_enter results that mean "try again later", not failure.
bool is_transient(int result) { return result == -EINTR || result == -EAGAIN || result == -EBUSY; }

__kernel_timespec to_timespec(std::chrono::nanoseconds duration) {
    int64_t ns = std::max<int64_t>(duration.count(), 0);
    return {.tv_sec = ns / 1'000'000'000, .tv_nsec = ns % 1'000'000'000};
}

uint32_t translate_flags(uint32_t cqe_flags) {
    uint32_t flags = 0;
    if ((cqe_flags & IORING_CQE_F_MORE) != 0) {
        flags |= io_flags::more;
    }
    if ((cqe_flags & IORING_CQE_F_BUFFER) != 0) {
        uint32_t id = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
        flags |= io_flags::buffer | (id << io_flags::buffer_id_shift);
    }
    return flags;
}

// Owns the ring, so that a constructor throwing after setup still exits it.
struct Ring {
    io_uring ring{};
    bool live = false;

    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring() {
        if (live) {
            io_uring_queue_exit(&ring);
        }
    }
};

struct UniqueFd {
    int fd = -1;

    UniqueFd() = default;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

// The ring's entries and the buffers are one mapping each, so that they are
// page-aligned (the kernel requires it of the entries) and given back whole.
class IoUringBufferRing final : public BufferRing {
public:
    IoUringBufferRing(io_uring* ring, uint16_t group, uint16_t count, uint32_t size)
        : BufferRing(group, size), _ring(ring), _count(count) {
        if (count == 0 || (count & (count - 1)) != 0 || size == 0) {
            throw std::invalid_argument("buffer ring: count must be a power of two, size > 0");
        }
        _entries_bytes = sizeof(io_uring_buf) * count;
        _buffers_bytes = static_cast<std::size_t>(count) * size;
        void* entries = ::mmap(nullptr, _entries_bytes, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (entries == MAP_FAILED) {
            throw_errno(-errno, "mmap (buffer ring)");
        }
        _entries = static_cast<io_uring_buf_ring*>(entries);
        void* buffers = ::mmap(nullptr, _buffers_bytes, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buffers == MAP_FAILED) {
            int error = errno;
            ::munmap(_entries, _entries_bytes);
            throw_errno(-error, "mmap (receive buffers)");
        }
        _buffers = static_cast<char*>(buffers);
        io_uring_buf_reg registration{};
        registration.ring_addr = reinterpret_cast<uintptr_t>(_entries);
        registration.ring_entries = count;
        registration.bgid = group;
        if (int rc = io_uring_register_buf_ring(_ring, &registration, 0); rc < 0) {
            ::munmap(_buffers, _buffers_bytes);
            ::munmap(_entries, _entries_bytes);
            throw_errno(rc, "io_uring_register_buf_ring (Linux 5.19+)");
        }
        io_uring_buf_ring_init(_entries);
        int mask = io_uring_buf_ring_mask(count);
        for (uint16_t id = 0; id < count; ++id) {
            io_uring_buf_ring_add(_entries, buffer(id), size, id, mask, id);
        }
        io_uring_buf_ring_advance(_entries, count);
    }

    ~IoUringBufferRing() override {
        io_uring_unregister_buf_ring(_ring, group());
        ::munmap(_buffers, _buffers_bytes);
        ::munmap(_entries, _entries_bytes);
    }

    IoUringBufferRing(const IoUringBufferRing&) = delete;
    IoUringBufferRing& operator=(const IoUringBufferRing&) = delete;

    void recycle(uint16_t id) noexcept override {
        io_uring_buf_ring_add(_entries, buffer(id), buffer_size(), id,
                              io_uring_buf_ring_mask(_count), 0);
        io_uring_buf_ring_advance(_entries, 1);
    }

private:
    io_uring* _ring;
    uint16_t _count;
    io_uring_buf_ring* _entries = nullptr;
    std::size_t _entries_bytes = 0;
    std::size_t _buffers_bytes = 0;
};

class IoUringReactor final : public Reactor {
public:
    explicit IoUringReactor(const ReactorOptions& options);

    void submit(const IoRequest& request, IoCompletion* completion) override;
    void cancel(IoCompletion* target) override;
    int wait(std::chrono::nanoseconds timeout) override;
    void wake() override;
    std::size_t in_flight() const override { return _in_flight; }
    bool has_pending_events() const noexcept override;
    std::unique_ptr<BufferRing> make_buffer_ring(uint16_t group, uint16_t count,
                                                 uint32_t size) override {
        return std::make_unique<IoUringBufferRing>(&_ring.ring, group, count, size);
    }
    std::string name() const override;
    uint64_t submissions() const override { return _submissions; }
    uint64_t kernel_entries() const override { return _kernel_entries; }

private:
    int start();
    int flush();
    io_uring_sqe* get_sqe();
    void prepare(io_uring_sqe* sqe, const IoRequest& request);
    void arm_wake_read();
    int reap();

    // Declared before _ring so that it is closed after the ring has exited:
    // the ring's pending read on it must go first.
    UniqueFd _wake_fd;
    uint64_t _wake_buffer = 0;
    IoCompletion _wake_completion;  // a tag: its CQEs are handled in reap()
    Ring _ring;
    unsigned _setup_flags = 0;
    // One timespec per SQ slot, for timeout SQEs. The kernel copies the
    // timespec when it prepares the SQE (IORING_FEAT_SUBMIT_STABLE), and the
    // SQ slot is not handed out again before the kernel has consumed it, so
    // the slot's timespec lives exactly as long as it must, with no
    // per-operation allocation and nothing asked of the caller.
    std::vector<__kernel_timespec> _timespecs;
    std::size_t _in_flight = 0;
    uint64_t _submissions = 0;  // SQEs filled
    uint64_t _kernel_entries = 0;
    bool _started = false;
    bool _in_wait = false;
};

IoUringReactor::IoUringReactor(const ReactorOptions& options) {
    _setup_flags = setup_io_uring(options, &_ring.ring);
    _ring.live = true;
    _timespecs.resize(_ring.ring.sq.ring_entries);

    // Non-blocking, so that io_uring waits for it by polling rather than by
    // parking an io-wq worker in read(2).
    _wake_fd.fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (_wake_fd.fd < 0) {
        throw_errno(-errno, "shardloop: cannot create an event loop: eventfd");
    }
    // Queued now but submitted with the first flush: a disabled ring takes
    // SQEs into its memory, it only refuses io_uring_enter until enabled.
    arm_wake_read();
}

// Binds the ring to the calling thread on first use. With R_DISABLED the
// SINGLE_ISSUER owner is the thread that enables the ring, not the one that
// created it, so a loop may be built on one thread and run on another.
int IoUringReactor::start() {
    if (_started) {
        return 0;
    }
    if ((_setup_flags & IORING_SETUP_R_DISABLED) != 0) {
        // Not io_uring_enable_rings(): liburing 2.3 declares it but forgot to
        // export it (fixed in 2.4), so Debian 12's library fails to link.
        int result =
            io_uring_register(_ring.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
        if (result < 0) {
            return result;
        }
    }
    // Linux 5.18+: io_uring_enter then skips the fdget/fdput of the ring fd.
    // The registration lives in this thread's io_uring context, which is why
    // it is made here and not in the constructor. Failure only costs speed.
    (void)io_uring_register_ring_fd(&_ring.ring);
    _started = true;
    return 0;
}

int IoUringReactor::flush() {
    int result = start();
    if (result < 0) {
        return result;
    }
    ++_kernel_entries;
    return io_uring_submit(&_ring.ring);
}

// Never returns null: a full SQ is flushed to the kernel and the SQE taken
// from the room that makes, so no operation is ever dropped.
io_uring_sqe* IoUringReactor::get_sqe() {
    int transient_failures = 0;
    for (;;) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&_ring.ring)) {
            ++_submissions;
            return sqe;
        }
        int result = flush();
        if (result >= 0 || result == -EINTR) {
            continue;
        }
        if (!is_transient(result) || ++transient_failures > max_flush_retries) {
            throw_errno(result, "shardloop: io_uring_enter (flushing a full submission queue)");
        }
        sched_yield();
    }
}

void IoUringReactor::submit(const IoRequest& request, IoCompletion* completion) {
    assert(completion != nullptr && completion->on_complete != nullptr);
    io_uring_sqe* sqe = get_sqe();
    prepare(sqe, request);
    io_uring_sqe_set_data(sqe, completion);
    ++_in_flight;
}

void IoUringReactor::prepare(io_uring_sqe* sqe, const IoRequest& request) {
    const IoRequest& r = request;
    auto int_flags = static_cast<int>(r.op_flags);
    switch (r.opcode) {
        case IoOpcode::nop:
            io_uring_prep_nop(sqe);
            break;
        case IoOpcode::read:
            io_uring_prep_read(sqe, r.fd, r.addr, r.len, r.offset);
            break;
        case IoOpcode::write:
            io_uring_prep_write(sqe, r.fd, r.addr, r.len, r.offset);
            break;
        case IoOpcode::recv:
            if (r.multishot) {
                // Linux 6.0; the kernel requires a provided buffer group with it.
                io_uring_prep_recv_multishot(sqe, r.fd, r.addr, r.len, int_flags);
            } else {
                io_uring_prep_recv(sqe, r.fd, r.addr, r.len, int_flags);
            }
            break;
        case IoOpcode::send:
            io_uring_prep_send(sqe, r.fd, r.addr, r.len, int_flags);
            break;
        case IoOpcode::recvmsg:
            io_uring_prep_recvmsg(sqe, r.fd, static_cast<msghdr*>(r.addr), r.op_flags);
            break;
        case IoOpcode::sendmsg:
            io_uring_prep_sendmsg(sqe, r.fd, static_cast<const msghdr*>(r.addr), r.op_flags);
            break;
        case IoOpcode::accept: {
            auto* address = static_cast<sockaddr*>(r.addr);
            auto* length = static_cast<socklen_t*>(r.addr2);
            if (r.multishot) {
                io_uring_prep_multishot_accept(sqe, r.fd, address, length, int_flags);  // 5.19
            } else {
                io_uring_prep_accept(sqe, r.fd, address, length, int_flags);
            }
            break;
        }
        case IoOpcode::connect:
            io_uring_prep_connect(sqe, r.fd, static_cast<const sockaddr*>(r.addr), r.len);
            break;
        case IoOpcode::close:
            io_uring_prep_close(sqe, r.fd);
            break;
        case IoOpcode::shutdown:
            io_uring_prep_shutdown(sqe, r.fd, int_flags);
            break;
        case IoOpcode::poll_add:
            if (r.multishot) {
                io_uring_prep_poll_multishot(sqe, r.fd, r.op_flags);  // 5.13
            } else {
                io_uring_prep_poll_add(sqe, r.fd, r.op_flags);
            }
            break;
        case IoOpcode::timeout: {
            // `offset` holds the delay in nanoseconds; see _timespecs for where
            // the timespec lives. A pure timeout (count 0) completes with -ETIME
            // when it fires and -ECANCELED when cancelled.
            auto slot = static_cast<std::size_t>(sqe - _ring.ring.sq.sqes);
            _timespecs[slot] =
                to_timespec(std::chrono::nanoseconds(static_cast<int64_t>(r.offset)));
            io_uring_prep_timeout(sqe, &_timespecs[slot], 0, 0);
            break;
        }
        case IoOpcode::splice:
            // UINT64_MAX reads as -1 here: "no offset, use the pipe / position".
            io_uring_prep_splice(sqe, r.fd, static_cast<int64_t>(r.offset), r.fd_out,
                                 static_cast<int64_t>(r.offset_out), r.len, r.op_flags);
            break;
    }
    if (r.select_buffer) {
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = r.buffer_group;
    }
}

void IoUringReactor::cancel(IoCompletion* target) {
    io_uring_sqe* sqe = get_sqe();
    // Matching on user_data finds the target whether it waits on a poll, on
    // a timer or in io-wq; a multishot target gets its final CQE (no MORE).
    io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(target), 0);
    io_uring_sqe_set_data64(sqe, cancel_user_data);
    // Linux 5.17+: a cancel that succeeds posts no CQE at all; the ones that
    // fail (-ENOENT: the target already finished) still come and are dropped.
    if ((_ring.ring.features & IORING_FEAT_CQE_SKIP) != 0) {
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
}

void IoUringReactor::arm_wake_read() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_read(sqe, _wake_fd.fd, &_wake_buffer, sizeof(_wake_buffer), 0);
    io_uring_sqe_set_data(sqe, &_wake_completion);
}

bool IoUringReactor::has_pending_events() const noexcept {
    // IORING_SQ_TASKRUN is raised by the kernel when it queues deferred
    // task work for us (the rings are set up with IORING_SETUP_TASKRUN_FLAG):
    // with DEFER_TASKRUN a completion is only that until an enter runs it.
    // The ring is not modified; liburing's accessors just take it non-const.
    auto* ring =
        const_cast<io_uring*>(&_ring.ring);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
    unsigned kernel_flags = IO_URING_READ_ONCE(*ring->sq.kflags);
    // Queued SQEs count only when they include the caller's: the reactor's
    // own (the wake read) wait until the loop really sleeps, since wait(0)
    // skips the kernel for them.
    bool queued = _in_flight != 0 && io_uring_sq_ready(ring) != 0;
    return queued || io_uring_cq_ready(ring) != 0 ||
           (kernel_flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

int IoUringReactor::wait(std::chrono::nanoseconds timeout) {
    // Nothing of the caller's can complete, so skip the kernel altogether.
    // Only the reactor's own SQEs (the wake read, a cancel whose target has
    // already finished) can be queued now, and the next wait submits them.
    if (timeout.count() == 0 && _in_flight == 0) {
        return 0;
    }
    assert(!_in_wait && "Reactor::wait() re-entered from a completion");
    int result = start();
    if (result < 0) {
        return result;
    }
    // Exactly one io_uring_enter submits and waits. With DEFER_TASKRUN the
    // kernel only posts completions while we are inside io_uring_enter with
    // GETEVENTS, so even the zero timeout must ask for events.
    io_uring* ring = &_ring.ring;
    if (timeout.count() == 0) {
        result = io_uring_submit_and_get_events(ring);
    } else if (timeout.count() > 0) {
        // EXT_ARG (5.11) passes the timeout in the same call; older kernels
        // get a timeout SQE from liburing, whose CQE reap() drops.
        __kernel_timespec ts = to_timespec(timeout);
        io_uring_cqe* cqe = nullptr;
        result = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
    } else {
        result = io_uring_submit_and_wait(ring, 1);
    }
    ++_kernel_entries;
    if (result < 0 && result != -ETIME && !is_transient(result)) {
        return result;
    }
    struct InWait {
        bool& flag;
        explicit InWait(bool& in_wait) : flag(in_wait) { flag = true; }
        ~InWait() { flag = false; }
    } in_wait(_in_wait);
    return reap();
}

// Up to reap_batch CQEs already in the CQ, without entering the kernel.
// liburing's io_uring_peek_batch_cqe enters it when the CQ is empty and the
// kernel flags pending task work (IORING_SQ_TASKRUN, which our rings raise
// for idle polling): reap() would then keep running completions that keep
// arriving, and one iteration could last as long as the traffic does, with
// timers, ready callbacks and submissions waiting behind it.
unsigned peek_ready(io_uring* ring, std::array<io_uring_cqe*, reap_batch>& cqes) {
    unsigned count = 0;
    unsigned head = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(ring, head, cqe) {
        cqes[count] = cqe;
        if (++count == reap_batch) {
            break;
        }
    }
    return count;
}

// Dispatches every CQE until the CQ is empty. Each CQE is copied out and its
// slot released before its handler runs: a handler may submit, a full SQ then
// enters the kernel, and new CQEs may land in released slots. Slots not yet
// released stay ours, so if a handler throws, the exception leaves wait()
// and the CQEs behind it are dispatched by the next wait(), not lost.
int IoUringReactor::reap() {
    std::array<io_uring_cqe*, reap_batch> cqes;
    io_uring* ring = &_ring.ring;
    int dispatched = 0;
    bool flushed_overflow = false;
    for (;;) {
        unsigned count = peek_ready(ring, cqes);
        if (count == 0) {
            // With IORING_FEAT_NODROP (5.5) CQEs that found the CQ full wait
            // in a kernel list; IORING_SQ_CQ_OVERFLOW says so, and an enter
            // with GETEVENTS moves them over. Once per empty CQ is enough.
            if (flushed_overflow || !io_uring_cq_has_overflow(ring)) {
                break;
            }
            io_uring_get_events(ring);
            flushed_overflow = true;
            continue;
        }
        flushed_overflow = false;
        // Each completion's object (a transport, say) is usually out of the
        // cache by the time its CQE arrives: ask for them all at once, so
        // that their misses overlap instead of coming one after another.
        for (unsigned i = 0; i < count; ++i) {
            __builtin_prefetch(reinterpret_cast<const void*>(  // NOLINT(performance-no-int-to-ptr)
                static_cast<uintptr_t>(cqes[i]->user_data)));
        }
        for (unsigned i = 0; i < count; ++i) {
            uint64_t user_data = cqes[i]->user_data;
            int result = cqes[i]->res;
            uint32_t cqe_flags = cqes[i]->flags;
            io_uring_cq_advance(ring, 1);

            if (user_data == cancel_user_data || user_data == LIBURING_UDATA_TIMEOUT) {
                continue;
            }
            // user_data is the IoCompletion pointer submit() stored: the cast is the design.
            auto* completion =
                reinterpret_cast<IoCompletion*>(user_data);  // NOLINT(performance-no-int-to-ptr)
            if (completion == &_wake_completion) {
                arm_wake_read();
                continue;
            }
            if ((cqe_flags & IORING_CQE_F_MORE) == 0) {
                --_in_flight;
            }
            ++dispatched;
            completion->on_complete(completion, result, translate_flags(cqe_flags));
        }
    }
    return dispatched;
}

void IoUringReactor::wake() {
    uint64_t one = 1;
    // EAGAIN means the counter is about to overflow, i.e. a wake is already
    // pending; nothing else can fail on a valid eventfd.
    while (::write(_wake_fd.fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

std::string IoUringReactor::name() const {
    return "io_uring (" + describe_io_uring_setup_flags(_setup_flags) + "; sq " +
           std::to_string(_ring.ring.sq.ring_entries) + ", cq " +
           std::to_string(_ring.ring.cq.ring_entries) + ")";
}

}  // namespace

std::unique_ptr<Reactor> make_io_uring_reactor(const ReactorOptions& options) {
    return std::make_unique<IoUringReactor>(options);
}

}  // namespace shardloop::detail
