#include "loadgen_worker.hpp"

#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <string>

#include "echo_common.hpp"

namespace echo_bench {
namespace {

constexpr const char* program_name = "echo_loadgen";
constexpr unsigned ring_entries = 4096;
constexpr int buffer_group = 0;
// A connection that saw no byte move either way for this long when the run
// ends has most likely lost bytes (a closed loop never recovers from that):
// it counts as an error. Generous, because under 1,000 connections of 100 KB
// a fair server still leaves a connection waiting for most of a second.
constexpr uint64_t stall_ns = 2'000'000'000;

// One message in flight per connection. Its first and last 8 bytes carry
// the message number (and its complement), checked as the echo streams in;
// a lost, extra or reordered byte shifts them and is caught. The middle
// comes from a shared filler and only its length is checked.
struct Connection {
    explicit Connection(int socket) : fd(socket) {}

    int fd;
    bool dead = false;
    bool recv_armed = false;
    uint64_t seq = 0;
    uint64_t started_ns = 0;
    uint64_t progress_ns = 0;  // when a send or recv last moved bytes
    uint32_t sent = 0;
    uint32_t received = 0;
    unsigned char stamp[16];
    iovec iov[3];
    msghdr msg{};
};

enum class Op : uint32_t { recv = 1, send };

class Worker {
public:
    Worker(const WorkerConfig& config, const std::vector<int>& fds)
        : _size(config.size),
          _window_start(config.window_start_ns),
          _window_end(config.window_end_ns) {
        _connections.reserve(fds.size());
        for (int fd : fds) {
            _connections.emplace_back(fd);
        }
        // Echoes are consumed as soon as they arrive, so about one buffer
        // per connection covers a whole batch of completions; a buffer
        // near the message size keeps a message to one or two completions.
        _buf_size = std::clamp<uint32_t>(std::bit_ceil(_size), 4096, 64 * 1024);
        _buf_count =
            std::clamp<uint32_t>(std::bit_ceil(2 * static_cast<uint32_t>(fds.size())), 64, 8192);
        _filler.assign(_size > 16 ? _size - 16 : 0, 'x');
    }

    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    ~Worker() {
        for (const Connection& c : _connections) {
            ::close(c.fd);
        }
        if (_ring_ready) {
            io_uring_queue_exit(&_ring);
            munmap(_buf_ring, _buf_count * sizeof(io_uring_buf));
            munmap(_buffers, static_cast<size_t>(_buf_count) * _buf_size);
        }
    }

    const WorkerResults& results() const { return _results; }

    void run() {
        setup();
        _now = now_ns();
        for (Connection& c : _connections) {
            arm_recv(c);
            start_message(c);
        }
        _live = _connections.size();
        while (_now < _window_end && _live > 0) {
            uint64_t wait = std::min<uint64_t>(_window_end - _now, 100'000'000);
            __kernel_timespec ts{static_cast<int64_t>(wait / 1'000'000'000u),
                                 static_cast<long long>(wait % 1'000'000'000u)};
            io_uring_cqe* first = nullptr;
            int ret = io_uring_submit_and_wait_timeout(&_ring, &first, 1, &ts, nullptr);
            if (ret < 0 && ret != -ETIME && ret != -EINTR) {
                die(program_name, "io_uring_submit_and_wait_timeout", -ret);
            }
            // One clock read per batch: every completion in it is stamped
            // with the time the thread woke up to see it.
            _now = now_ns();
            unsigned head;
            unsigned seen = 0;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(&_ring, head, cqe) {
                handle(cqe);
                ++seen;
            }
            io_uring_cq_advance(&_ring, seen);
            // Buffers go back before starved receives re-arm, or those
            // would fail again at once.
            if (_unpublished > 0) {
                io_uring_buf_ring_advance(_buf_ring, static_cast<int>(_unpublished));
                _unpublished = 0;
                rearm_starved();
            }
        }
        for (const Connection& c : _connections) {
            if (!c.dead && _now - c.progress_ns > stall_ns) {
                ++_results.stalled;
            }
        }
    }

private:
    void setup() {
        io_uring_params params{};
        params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        int ret = io_uring_queue_init_params(ring_entries, &_ring, &params);
        if (ret == -EINVAL) {
            params = {};
            ret = io_uring_queue_init_params(ring_entries, &_ring, &params);
        }
        if (ret < 0) {
            die(program_name, "io_uring_queue_init_params", -ret);
        }
        _ring_ready = true;
        size_t ring_bytes = _buf_count * sizeof(io_uring_buf);
        void* ring_mem =
            mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        void* data = mmap(nullptr, static_cast<size_t>(_buf_count) * _buf_size,
                          PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (ring_mem == MAP_FAILED || data == MAP_FAILED) {
            die(program_name, "mmap(buffers)", errno);
        }
        _buf_ring = static_cast<io_uring_buf_ring*>(ring_mem);
        _buffers = static_cast<char*>(data);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<uint64_t>(ring_mem);
        reg.ring_entries = _buf_count;
        reg.bgid = buffer_group;
        if (int r = io_uring_register_buf_ring(&_ring, &reg, 0); r < 0) {
            die(program_name, "io_uring_register_buf_ring", -r);
        }
        io_uring_buf_ring_init(_buf_ring);
        for (uint32_t bid = 0; bid < _buf_count; ++bid) {
            release_buffer(static_cast<uint16_t>(bid));
        }
        io_uring_buf_ring_advance(_buf_ring, static_cast<int>(_unpublished));
        _unpublished = 0;
    }

    static uint64_t tag(Op op, size_t index) { return (static_cast<uint64_t>(op) << 32) | index; }

    io_uring_sqe* get_sqe() {
        io_uring_sqe* sqe = io_uring_get_sqe(&_ring);
        if (sqe == nullptr) {
            if (int ret = io_uring_submit(&_ring); ret < 0) {
                die(program_name, "io_uring_submit", -ret);
            }
            sqe = io_uring_get_sqe(&_ring);
        }
        return sqe;
    }

    size_t index_of(const Connection& c) const {
        return static_cast<size_t>(&c - _connections.data());
    }

    char* buffer(uint16_t bid) { return _buffers + static_cast<size_t>(bid) * _buf_size; }

    void release_buffer(uint16_t bid) {
        io_uring_buf_ring_add(_buf_ring, buffer(bid), _buf_size, bid,
                              io_uring_buf_ring_mask(_buf_count), static_cast<int>(_unpublished++));
    }

    void arm_recv(Connection& c) {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = buffer_group;
        io_uring_sqe_set_data64(sqe, tag(Op::recv, index_of(c)));
        c.recv_armed = true;
    }

    void start_message(Connection& c) {
        ++c.seq;
        for (int i = 0; i < 8; ++i) {
            c.stamp[i] = static_cast<unsigned char>(c.seq >> (8 * i));
            c.stamp[8 + i] = static_cast<unsigned char>(~c.seq >> (8 * i));
        }
        c.sent = 0;
        c.received = 0;
        c.started_ns = _now;
        c.progress_ns = _now;
        send_rest(c);
    }

    // Sends bytes [c.sent, size) of the message: the stamp alone when the
    // message is 16 bytes or less, else stamp head, filler, stamp tail.
    void send_rest(Connection& c) {
        iovec parts[3];
        int count = 0;
        if (_size <= 16) {
            parts[count++] = {c.stamp, _size};
        } else {
            parts[count++] = {c.stamp, 8};
            parts[count++] = {_filler.data(), _filler.size()};
            parts[count++] = {c.stamp + 8, 8};
        }
        size_t skip = c.sent;
        int n = 0;
        for (int i = 0; i < count; ++i) {
            if (skip >= parts[i].iov_len) {
                skip -= parts[i].iov_len;
                continue;
            }
            c.iov[n++] = {static_cast<char*>(parts[i].iov_base) + skip, parts[i].iov_len - skip};
            skip = 0;
        }
        c.msg.msg_iov = c.iov;
        c.msg.msg_iovlen = static_cast<size_t>(n);
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_sendmsg(sqe, c.fd, &c.msg, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, tag(Op::send, index_of(c)));
    }

    void handle(const io_uring_cqe* cqe) {
        Connection& c = _connections[cqe->user_data & 0xffffffffu];
        if (static_cast<Op>(cqe->user_data >> 32) == Op::send) {
            on_send(c, cqe->res);
        } else {
            on_recv(c, cqe);
        }
    }

    void on_send(Connection& c, int res) {
        if (c.dead) {
            return;
        }
        if (res < 0) {
            fail(c, _results.lost_connections);
            return;
        }
        c.sent += static_cast<uint32_t>(res);
        c.progress_ns = _now;
        if (c.sent < _size) {
            send_rest(c);
        } else {
            finish_if_complete(c);
        }
    }

    void on_recv(Connection& c, const io_uring_cqe* cqe) {
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            c.recv_armed = false;
        }
        if (cqe->res > 0) {
            auto bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            if (!c.dead) {
                check_echo(c, buffer(bid), static_cast<uint32_t>(cqe->res));
            }
            release_buffer(bid);
            if (!c.recv_armed && !c.dead) {
                arm_recv(c);
            }
            return;
        }
        if (cqe->res == -ENOBUFS) {
            _starved.push_back(index_of(c));
            return;
        }
        if (!c.dead) {
            // 0: the server closed; < 0: a reset or another failure.
            fail(c, _results.lost_connections);
        }
    }

    // Checks the echoed bytes at message offsets [c.received, +n) against
    // the stamp: offsets [0, head_end) are stamp[0..], and for messages
    // longer than 16 bytes offsets [size-8, size) are stamp[8..16).
    void check_echo(Connection& c, const char* data, uint32_t n) {
        uint32_t begin = c.received;
        uint32_t end = begin + n;
        if (end > _size) {
            fail(c, _results.mismatches);  // more bytes than were sent
            return;
        }
        uint32_t head_end = _size <= 16 ? _size : 8;
        for (uint32_t o = begin; o < std::min(end, head_end); ++o) {
            if (static_cast<unsigned char>(data[o - begin]) != c.stamp[o]) {
                fail(c, _results.mismatches);
                return;
            }
        }
        if (_size > 16) {
            uint32_t tail_start = _size - 8;
            for (uint32_t o = std::max(begin, tail_start); o < end; ++o) {
                if (static_cast<unsigned char>(data[o - begin]) != c.stamp[8 + o - tail_start]) {
                    fail(c, _results.mismatches);
                    return;
                }
            }
        }
        c.received = end;
        c.progress_ns = _now;
        finish_if_complete(c);
    }

    // A message is done when it is wholly sent and wholly echoed, whichever
    // of the two completions the ring delivers last.
    void finish_if_complete(Connection& c) {
        if (c.sent < _size || c.received < _size) {
            return;
        }
        if (_now >= _window_start && _now < _window_end) {
            _results.latency.record(_now - c.started_ns);
        }
        start_message(c);
    }

    // The connection stops, counted once under `reason`; its socket stays
    // open (an operation may still be in flight on it) until the worker ends.
    void fail(Connection& c, uint64_t& reason) {
        c.dead = true;
        --_live;
        ++reason;
    }

    void rearm_starved() {
        for (size_t index : _starved) {
            if (!_connections[index].dead) {
                arm_recv(_connections[index]);
            }
        }
        _starved.clear();
    }

    uint32_t _size;
    uint64_t _window_start;
    uint64_t _window_end;
    uint64_t _now = 0;
    std::vector<Connection> _connections;
    size_t _live = 0;              // connections not lost
    std::vector<size_t> _starved;  // connections whose recv stopped on ENOBUFS
    std::string _filler;
    io_uring _ring{};
    bool _ring_ready = false;
    io_uring_buf_ring* _buf_ring = nullptr;
    char* _buffers = nullptr;
    uint32_t _buf_size = 0;
    uint32_t _buf_count = 0;
    uint32_t _unpublished = 0;
    WorkerResults _results;
};

}  // namespace

WorkerResults run_worker(const WorkerConfig& config, const std::vector<int>& fds) {
    Worker worker(config, fds);
    worker.run();
    return worker.results();
}

}  // namespace echo_bench
