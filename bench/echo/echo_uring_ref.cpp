// Reference echo server written directly on liburing: the practical floor
// for server CPU per request that shardloop is measured against
// (shared/BENCHMARKING.md). One thread, one ring, and per loop iteration
// exactly one io_uring_submit_and_wait():
//   - one multishot accept on the listening socket;
//   - one multishot recv per connection, filled from a provided-buffer ring,
//     so an idle connection owns no buffer at all;
//   - the received buffer itself is sent back (no copy) and returned to the
//     buffer ring when the send completes; data that arrives while a send is
//     in flight is queued, and the next send takes the whole queue at once,
//     so a connection has one send in flight and its bytes stay in order.
//
//   echo_uring_ref [--host 127.0.0.1] [--port 0] [--reuseport]
//                  [--buf-size 65536] [--buf-count 1024]
#include <liburing.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>

#include <cstdint>
#include <vector>

#include "echo_common.hpp"

namespace {

using echo_bench::die;

constexpr const char* program_name = "echo_uring_ref";
constexpr unsigned ring_entries = 4096;
constexpr int buffer_group = 0;
// A send takes at most this many queued buffers; the rest wait for the next.
constexpr unsigned max_iov = 8;

// What a completion belongs to: the operation in the top 32 bits of
// user_data, the socket in the low 32. A socket is closed only once none of
// its operations is outstanding, so a completion never names a reused fd.
enum class Op : uint32_t { accept = 1, recv, send, cancel, signal };

uint64_t tag(Op op, int fd) {
    return (static_cast<uint64_t>(op) << 32) | static_cast<uint32_t>(fd);
}

// Bytes [offset, length) of provided buffer `bid` are still to be sent.
struct Chunk {
    uint16_t bid;
    uint32_t offset;
    uint32_t length;
};

struct Connection {
    explicit Connection(int socket) : fd(socket) {}

    int fd;
    bool recv_armed = false;
    bool send_in_flight = false;
    bool closing = false;         // peer closed or failed: flush what is queued, then close
    bool starved = false;         // recv stopped on ENOBUFS; re-armed once buffers return
    unsigned chunks_in_send = 0;  // queue[0, chunks_in_send) are in the send in flight
    std::vector<Chunk> queue;
    msghdr msg{};
    iovec iov[max_iov];
};

// The provided-buffer ring (liburing 2.3 has no io_uring_setup_buf_ring, so
// the ring memory is mapped here and registered with
// io_uring_register_buf_ring). Released buffers are written into the ring
// at once but published with one store-release per loop iteration.
class BufferRing {
public:
    BufferRing(io_uring* ring, unsigned count, unsigned size) : _count(count), _size(size) {
        size_t ring_bytes = count * sizeof(io_uring_buf);
        void* ring_mem =
            mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (ring_mem == MAP_FAILED) {
            die(program_name, "mmap(buffer ring)", errno);
        }
        // Pages of the data area become resident only when the kernel first
        // receives into them, so an idle server does not pay for them.
        void* data = mmap(nullptr, static_cast<size_t>(count) * size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (data == MAP_FAILED) {
            die(program_name, "mmap(buffers)", errno);
        }
        _ring = static_cast<io_uring_buf_ring*>(ring_mem);
        _data = static_cast<char*>(data);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<uint64_t>(ring_mem);
        reg.ring_entries = count;
        reg.bgid = buffer_group;
        if (int ret = io_uring_register_buf_ring(ring, &reg, 0); ret < 0) {
            die(program_name, "io_uring_register_buf_ring", -ret);
        }
        io_uring_buf_ring_init(_ring);
        for (unsigned bid = 0; bid < count; ++bid) {
            release(static_cast<uint16_t>(bid));
        }
        publish();
    }

    ~BufferRing() {
        munmap(_data, static_cast<size_t>(_count) * _size);
        munmap(_ring, _count * sizeof(io_uring_buf));
    }

    char* data(uint16_t bid) { return _data + static_cast<size_t>(bid) * _size; }

    void release(uint16_t bid) {
        io_uring_buf_ring_add(_ring, data(bid), _size, bid, io_uring_buf_ring_mask(_count),
                              static_cast<int>(_unpublished++));
    }

    // Makes the released buffers visible to the kernel; returns how many.
    unsigned publish() {
        unsigned published = _unpublished;
        if (published > 0) {
            io_uring_buf_ring_advance(_ring, static_cast<int>(published));
            _unpublished = 0;
        }
        return published;
    }

private:
    unsigned _count;
    unsigned _size;
    unsigned _unpublished = 0;
    io_uring_buf_ring* _ring = nullptr;
    char* _data = nullptr;
};

class Server {
public:
    Server(int listen_fd, unsigned buf_count, unsigned buf_size)
        : _listen_fd(listen_fd), _ring(setup_ring()), _buffers(&_ring, buf_count, buf_size) {
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGINT);
        sigaddset(&signals, SIGTERM);
        // Blocked signals are read from a signalfd through the ring, so a
        // signal can never arrive between a flag test and the wait.
        if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
            die(program_name, "sigprocmask", errno);
        }
        _signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);
        if (_signal_fd < 0) {
            die(program_name, "signalfd", errno);
        }
    }

    void run() {
        arm_accept();
        io_uring_prep_read(get_sqe(), _signal_fd, &_siginfo, sizeof _siginfo, 0);
        io_uring_sqe_set_data64(_last_sqe, tag(Op::signal, _signal_fd));
        while (_running) {
            int ret = io_uring_submit_and_wait(&_ring, 1);
            if (ret < 0 && ret != -EINTR) {
                die(program_name, "io_uring_submit_and_wait", -ret);
            }
            unsigned head;
            unsigned seen = 0;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(&_ring, head, cqe) {
                handle(cqe);
                ++seen;
            }
            io_uring_cq_advance(&_ring, seen);
            // Buffers released by this batch are published before starved
            // connections re-arm, or their recv would fail again at once.
            if (_buffers.publish() > 0) {
                rearm_starved();
            }
        }
    }

    ~Server() {
        size_t open = 0;
        for (Connection* c : _connections) {
            if (c != nullptr) {
                ::close(c->fd);
                delete c;
                ++open;
            }
        }
        io_uring_queue_exit(&_ring);
        ::close(_signal_fd);
        std::fprintf(stderr,
                     "%s: exit: %llu connections accepted, %zu still open, %llu recv re-arms "
                     "after ENOBUFS\n",
                     program_name, static_cast<unsigned long long>(_accepted), open,
                     static_cast<unsigned long long>(_enobufs));
    }

private:
    static io_uring setup_ring() {
        // DEFER_TASKRUN runs completion work only inside our own
        // io_uring_enter, instead of interrupting the thread; it requires
        // SINGLE_ISSUER (kernel 6.1). COOP_TASKRUN (5.19) is the next best.
        const unsigned attempts[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                     IORING_SETUP_COOP_TASKRUN, 0};
        io_uring ring;
        int ret = -EINVAL;
        for (unsigned flags : attempts) {
            io_uring_params params{};
            params.flags = flags;
            ret = io_uring_queue_init_params(ring_entries, &ring, &params);
            if (ret == 0) {
                std::fprintf(stderr, "%s: ring flags 0x%x\n", program_name, flags);
                break;
            }
        }
        if (ret < 0) {
            die(program_name, "io_uring_queue_init_params", -ret);
        }
        // Saves the fd lookup in every io_uring_enter; an old kernel without
        // it still works, so a refusal is reported and not fatal.
        if (int reg = io_uring_register_ring_fd(&ring); reg < 0) {
            std::fprintf(stderr, "%s: io_uring_register_ring_fd: %s (continuing)\n", program_name,
                         std::strerror(-reg));
        }
        return ring;
    }

    // A full submission queue is flushed early rather than dropping work.
    io_uring_sqe* get_sqe() {
        io_uring_sqe* sqe = io_uring_get_sqe(&_ring);
        if (sqe == nullptr) {
            if (int ret = io_uring_submit(&_ring); ret < 0) {
                die(program_name, "io_uring_submit", -ret);
            }
            sqe = io_uring_get_sqe(&_ring);
        }
        _last_sqe = sqe;
        return sqe;
    }

    void arm_accept() {
        io_uring_prep_multishot_accept(get_sqe(), _listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(_last_sqe, tag(Op::accept, _listen_fd));
    }

    void arm_recv(Connection* c) {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_recv_multishot(sqe, c->fd, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = buffer_group;
        io_uring_sqe_set_data64(sqe, tag(Op::recv, c->fd));
        c->recv_armed = true;
    }

    void handle(const io_uring_cqe* cqe) {
        auto op = static_cast<Op>(cqe->user_data >> 32);
        int fd = static_cast<int>(cqe->user_data & 0xffffffffu);
        switch (op) {
            case Op::accept:
                on_accept(cqe);
                break;
            case Op::recv:
                on_recv(_connections[fd], cqe);
                break;
            case Op::send:
                on_send(_connections[fd], cqe->res);
                break;
            case Op::cancel:
                // -ENOENT (the recv had already ended) is as good as success.
                break;
            case Op::signal:
                _running = false;
                break;
        }
    }

    void on_accept(const io_uring_cqe* cqe) {
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            arm_accept();
        }
        if (cqe->res < 0) {
            // EMFILE and the like: the peer's connect is dropped; keep serving.
            std::fprintf(stderr, "%s: accept: %s\n", program_name, std::strerror(-cqe->res));
            return;
        }
        int fd = cqe->res;
        int on = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
            die(program_name, "setsockopt(TCP_NODELAY)", errno);
        }
        if (static_cast<size_t>(fd) >= _connections.size()) {
            _connections.resize(static_cast<size_t>(fd) * 2 + 1, nullptr);
        }
        auto* c = new Connection{fd};
        _connections[fd] = c;
        ++_accepted;
        arm_recv(c);
    }

    void on_recv(Connection* c, const io_uring_cqe* cqe) {
        bool more = cqe->flags & IORING_CQE_F_MORE;
        if (!more) {
            c->recv_armed = false;
        }
        if (cqe->res > 0) {
            auto bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            if (c->closing) {
                // A send already failed: nobody is left to echo to.
                _buffers.release(bid);
            } else {
                c->queue.push_back({bid, 0, static_cast<uint32_t>(cqe->res)});
                if (!c->send_in_flight) {
                    start_send(c);
                }
            }
            // A multishot recv may also end while data keeps coming (for
            // instance when the completion queue overflowed).
            if (!more) {
                if (c->closing) {
                    maybe_close(c);
                } else {
                    arm_recv(c);
                }
            }
            return;
        }
        if (cqe->res == -ENOBUFS) {
            ++_enobufs;
            c->starved = true;
            _starved.push_back(c->fd);
            return;
        }
        // 0 is an orderly close by the peer; -ECONNRESET and -ECANCELED
        // (our own cancel after a failed send) end the connection too.
        c->closing = true;
        maybe_close(c);
    }

    void start_send(Connection* c) {
        unsigned n = c->queue.size() < max_iov ? static_cast<unsigned>(c->queue.size()) : max_iov;
        io_uring_sqe* sqe = get_sqe();
        if (n == 1) {
            const Chunk& chunk = c->queue.front();
            io_uring_prep_send(sqe, c->fd, _buffers.data(chunk.bid) + chunk.offset,
                               chunk.length - chunk.offset, MSG_NOSIGNAL);
        } else {
            for (unsigned i = 0; i < n; ++i) {
                const Chunk& chunk = c->queue[i];
                c->iov[i] = {_buffers.data(chunk.bid) + chunk.offset, chunk.length - chunk.offset};
            }
            c->msg.msg_iov = c->iov;
            c->msg.msg_iovlen = n;
            io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
        }
        io_uring_sqe_set_data64(sqe, tag(Op::send, c->fd));
        c->chunks_in_send = n;
        c->send_in_flight = true;
    }

    void on_send(Connection* c, int res) {
        c->send_in_flight = false;
        if (res < 0) {
            // The peer is gone (EPIPE, ECONNRESET): drop what is queued and
            // stop the recv, whose end then closes the socket.
            for (const Chunk& chunk : c->queue) {
                _buffers.release(chunk.bid);
            }
            c->queue.clear();
            c->closing = true;
            if (c->recv_armed) {
                io_uring_prep_cancel_fd(get_sqe(), c->fd, 0);
                io_uring_sqe_set_data64(_last_sqe, tag(Op::cancel, c->fd));
            }
            maybe_close(c);
            return;
        }
        // Retire what was sent; a short send leaves the rest at the front.
        auto left = static_cast<uint32_t>(res);
        unsigned done = 0;
        for (; done < c->chunks_in_send && left > 0; ++done) {
            Chunk& chunk = c->queue[done];
            uint32_t take = chunk.length - chunk.offset < left ? chunk.length - chunk.offset : left;
            chunk.offset += take;
            left -= take;
            if (chunk.offset < chunk.length) {
                break;
            }
            _buffers.release(chunk.bid);
        }
        c->queue.erase(c->queue.begin(), c->queue.begin() + done);
        if (!c->queue.empty()) {
            start_send(c);
        } else {
            maybe_close(c);
        }
    }

    // Closes once the peer is gone and no operation or queued byte is left.
    void maybe_close(Connection* c) {
        if (!c->closing || c->recv_armed || c->send_in_flight || !c->queue.empty()) {
            return;
        }
        if (::close(c->fd) != 0) {
            die(program_name, "close", errno);
        }
        _connections[c->fd] = nullptr;
        delete c;
    }

    void rearm_starved() {
        std::vector<int> starved;
        starved.swap(_starved);
        for (int fd : starved) {
            Connection* c = _connections[fd];
            // The fd may have been closed, or even reused, since it starved.
            if (c == nullptr || !c->starved) {
                continue;
            }
            c->starved = false;
            if (c->closing) {
                maybe_close(c);
            } else {
                arm_recv(c);
            }
        }
    }

    int _listen_fd;
    int _signal_fd = -1;
    io_uring _ring;
    BufferRing _buffers;
    io_uring_sqe* _last_sqe = nullptr;
    signalfd_siginfo _siginfo{};
    bool _running = true;
    std::vector<Connection*> _connections;  // indexed by fd
    std::vector<int> _starved;              // fds whose recv waits for buffers
    unsigned long long _accepted = 0;
    unsigned long long _enobufs = 0;
};

}  // namespace

int main(int argc, char** argv) {
    unsigned buf_size = 64 * 1024;
    unsigned buf_count = 1024;
    echo_bench::ServerOptions options = echo_bench::parse_server_options(
        program_name, argc, argv,
        [&](std::string_view flag, const char* value) -> int {
            if (flag != "--buf-size" && flag != "--buf-count") {
                return 0;
            }
            if (value == nullptr) {
                echo_bench::usage_error(program_name, std::string(flag) + " needs a value");
            }
            if (flag == "--buf-size") {
                buf_size = static_cast<unsigned>(
                    echo_bench::parse_number(program_name, flag, value, 1, 1 << 20));
            } else {
                buf_count = static_cast<unsigned>(
                    echo_bench::parse_number(program_name, flag, value, 1, 32768));
                // The kernel indexes the ring with a mask.
                if ((buf_count & (buf_count - 1)) != 0) {
                    echo_bench::usage_error(program_name, "--buf-count must be a power of two");
                }
            }
            return 2;
        },
        " --buf-size BYTES --buf-count N");
    echo_bench::raise_fd_limit(program_name);
    int listen_fd = echo_bench::make_listener(program_name, options);
    {
        Server server(listen_fd, buf_count, buf_size);
        server.run();
    }
    ::close(listen_fd);
    return 0;
}
