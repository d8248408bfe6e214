// EventLoop's "working with sockets directly" methods (asyncio's sock_*), as
// selector_events.py and unix_events.py implement them: each tries its
// non-blocking call at once and, while the call would block, waits for the
// fd through the reactor and tries again (net/fd_wait.hpp).
//
// Argument errors (closed loop, a bad fd, an fd a transport owns) throw from
// the call itself; what the system calls report goes into the future.

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "net/address.hpp"
#include "net/dns.hpp"
#include "net/fd_wait.hpp"
#include "net/socket_util.hpp"
#include "runtime/event_loop.hpp"

namespace shardloop {

namespace {

using detail::FdOp;
using detail::retry_eintr;
using detail::start_fd_op;
using detail::would_block;

// asyncio's SENDFILE_FALLBACK_READBUFFER_SIZE.
constexpr std::size_t fallback_block_size = std::size_t{256} * 1024;
// The most one sendfile(2) call moves on Linux (MAX_RW_COUNT).
constexpr std::size_t sendfile_max_block = 0x7ffff000;

// What every sock_* method checks before touching the fd.
void check_sock_call(EventLoop& loop, int fd, const char* what) {
    loop.check_closed();
    if (loop.get_debug()) {
        loop.check_thread();
    }
    detail::check_nonblocking_socket(fd, what);
    // Without the I/O layer's state there is no transport, so nothing to ask.
    if (const auto& net = loop.net_extension()) {
        net->ensure_fd_no_transport(fd);
    }
}

// The errors connect(2) and SO_ERROR report while a connection is still
// being made (Python's BlockingIOError and InterruptedError).
bool connect_in_progress(int error) {
    return error == EINPROGRESS || error == EAGAIN || error == EALREADY || error == EINTR;
}

// connect(2), then SO_ERROR once the socket is writable.
struct ConnectBody {
    int fd;
    SocketAddress to;
    bool started = false;

    bool operator()(FdOp<void>& op) {
        int error = 0;
        if (!started) {
            started = true;
            error = ::connect(fd, to.data(), to.size()) == 0 ? 0 : errno;
        } else {
            socklen_t length = sizeof error;
            if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
                error = errno;
            }
        }
        if (error == 0) {
            op.succeed();
            return true;
        }
        if (connect_in_progress(error)) {
            return false;
        }
        op.fail(error, "Connect call failed " + to.to_string());
        return true;
    }
};

// The errors with which sendfile(2) refuses a (socket, file) pair rather
// than failing a transfer: the fallback can still do the job.
bool sendfile_refused(int error) {
    return error == EINVAL || error == ENOSYS || error == EOPNOTSUPP || error == ESPIPE ||
           error == EOVERFLOW;
}

// sendfile(2) has no MSG_NOSIGNAL, and a peer that went away raises
// SIGPIPE, which kills a process that does not ignore it (Python ignores it
// at startup; a C++ program need not). The signal is blocked on this thread
// around the calls, and one they raised is taken off before it is unblocked.
class SigpipeBlocked {
public:
    SigpipeBlocked() noexcept {
        sigemptyset(&_pipe);
        sigaddset(&_pipe, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &_pipe, &_saved);
        sigset_t pending;
        sigemptyset(&pending);
        _was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    }
    ~SigpipeBlocked() { pthread_sigmask(SIG_SETMASK, &_saved, nullptr); }
    SigpipeBlocked(const SigpipeBlocked&) = delete;
    SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

    // A call failed with EPIPE: drop the SIGPIPE it raised, unless one was
    // pending before (someone else's, to be delivered as usual).
    void discard_raised() noexcept {
        if (!_was_pending) {
            timespec no_wait{};
            while (sigtimedwait(&_pipe, nullptr, &no_wait) < 0 && errno == EINTR) {
            }
        }
    }

private:
    sigset_t _pipe;
    sigset_t _saved;
    bool _was_pending = false;
};

// asyncio's _sock_sendfile_native_impl: sendfile(2) from `offset` until
// `count` bytes went (or the file ended), waiting for room in between.
struct SendfileBody {
    int fd;
    int file;
    uint64_t offset;
    std::optional<std::size_t> count;
    std::size_t sent = 0;

    bool operator()(FdOp<std::size_t>& op) {
        SigpipeBlocked no_sigpipe;
        for (;;) {
            std::size_t block = sendfile_max_block;
            if (count) {
                if (sent >= *count) {
                    return finish(op);
                }
                block = std::min(block, *count - sent);
            }
            auto position = static_cast<off_t>(offset + sent);
            long n = retry_eintr([&] { return ::sendfile(fd, file, &position, block); });
            if (would_block(n)) {
                return false;
            }
            if (n == -EPIPE) {
                no_sigpipe.discard_raised();
            }
            if (n < 0) {
                update_file_position();
                if (sent == 0 && sendfile_refused(static_cast<int>(-n))) {
                    op.set_exception(std::make_exception_ptr(SendfileNotAvailableError(
                        "syscall sendfile is not available for socket fd " + std::to_string(fd) +
                        " and file fd " + std::to_string(file) + ": " +
                        std::strerror(static_cast<int>(-n)))));
                } else {
                    op.fail(static_cast<int>(-n), "sendfile");
                }
                return true;
            }
            if (n == 0) {
                return finish(op);  // the end of the file
            }
            sent += static_cast<std::size_t>(n);
        }
    }

    bool finish(FdOp<std::size_t>& op) {
        update_file_position();
        op.succeed(sent);
        return true;
    }

    void on_cancel() noexcept { update_file_position(); }

    // sendfile(2) with an offset leaves the file position alone; asyncio
    // seeks to the end of what was sent, and so do we.
    void update_file_position() const noexcept {
        if (sent > 0) {
            ::lseek(file, static_cast<off_t>(offset + sent), SEEK_SET);
        }
    }
};

// asyncio's _sock_sendfile_fallback, run in a task: reads a block on the
// default executor (a regular file's read may block on the disk), sends it,
// and so on. Leaves the file position after the last byte sent.
std::size_t sendfile_fallback(EventLoop& loop, int fd, int file, uint64_t offset,
                              std::optional<std::size_t> count) {
    bool seekable = ::lseek(file, 0, SEEK_CUR) >= 0;
    if (!seekable && offset != 0) {
        throw std::system_error(ESPIPE, std::generic_category(),
                                "sock_sendfile: cannot start at an offset in a file that "
                                "does not seek");
    }
    struct Position {
        int file;
        uint64_t offset;
        bool seekable;
        std::size_t total = 0;
        ~Position() {
            if (total > 0 && seekable) {
                ::lseek(file, static_cast<off_t>(offset + total), SEEK_SET);
            }
        }
    } position{file, offset, seekable};

    for (;;) {
        std::size_t block = fallback_block_size;
        if (count) {
            if (position.total >= *count) {
                break;
            }
            block = std::min(block, *count - position.total);
        }
        uint64_t at = offset + position.total;
        // pread leaves the file position alone and needs no seek first; a
        // pipe or a socket is read in order instead.
        std::string chunk = await(loop.run_in_executor(nullptr, [file, block, at, seekable] {
            std::string data(block, '\0');
            long n = retry_eintr([&] {
                return seekable ? ::pread(file, data.data(), block, static_cast<off_t>(at))
                                : ::read(file, data.data(), block);
            });
            if (n < 0) {
                throw std::system_error(static_cast<int>(-n), std::generic_category(),
                                        "sock_sendfile: read");
            }
            data.resize(static_cast<std::size_t>(n));
            return data;
        }));
        if (chunk.empty()) {
            break;  // the end of the file
        }
        std::size_t size = chunk.size();
        await(loop.sock_sendall(fd, std::move(chunk)));
        position.total += size;
    }
    return position.total;
}

// True when `future` is done with a SendfileNotAvailableError.
bool refused_at_once(const Future<std::size_t>& future) {
    if (!future.done() || future.cancelled()) {
        return false;
    }
    try {
        future.result();
    } catch (const SendfileNotAvailableError&) {
        return true;
    } catch (...) {
    }
    return false;
}

}  // namespace

Future<std::string> EventLoop::sock_recv(int fd, std::size_t nbytes) {
    check_sock_call(*this, fd, "sock_recv");
    return start_fd_op<std::string>(
        *this, fd, POLLIN, [fd, nbytes, data = std::string()](FdOp<std::string>& op) mutable {
            data.resize(nbytes);  // allocated once, kept while the call would block
            long n = retry_eintr([&] { return ::recv(fd, data.data(), nbytes, 0); });
            if (would_block(n)) {
                return false;
            }
            if (n < 0) {
                op.fail(static_cast<int>(-n), "recv");
                return true;
            }
            data.resize(static_cast<std::size_t>(n));
            if (data.size() < nbytes / 2) {
                data.shrink_to_fit();  // a short read keeps no large buffer alive (Python's bytes
                                       // do not)
            }
            op.succeed(std::move(data));
            return true;
        });
}

Future<std::size_t> EventLoop::sock_recv_into(int fd, std::span<char> buffer) {
    check_sock_call(*this, fd, "sock_recv_into");
    return start_fd_op<std::size_t>(*this, fd, POLLIN, [fd, buffer](FdOp<std::size_t>& op) {
        long n = retry_eintr([&] { return ::recv(fd, buffer.data(), buffer.size(), 0); });
        if (would_block(n)) {
            return false;
        }
        if (n < 0) {
            op.fail(static_cast<int>(-n), "recv_into");
            return true;
        }
        op.succeed(static_cast<std::size_t>(n));
        return true;
    });
}

Future<std::pair<std::string, SocketAddress>> EventLoop::sock_recvfrom(int fd,
                                                                       std::size_t bufsize) {
    using Result = std::pair<std::string, SocketAddress>;
    check_sock_call(*this, fd, "sock_recvfrom");
    return start_fd_op<Result>(*this, fd, POLLIN, [fd, bufsize](FdOp<Result>& op) {
        std::string data(bufsize, '\0');
        SocketAddress from;
        from.set_size(SocketAddress::capacity());
        long n = retry_eintr([&] {
            return ::recvfrom(fd, data.data(), data.size(), 0, from.data(), from.size_ptr());
        });
        if (would_block(n)) {
            return false;
        }
        if (n < 0) {
            op.fail(static_cast<int>(-n), "recvfrom");
            return true;
        }
        data.resize(static_cast<std::size_t>(n));
        op.succeed(std::move(data), std::move(from));
        return true;
    });
}

Future<std::pair<std::size_t, SocketAddress>> EventLoop::sock_recvfrom_into(int fd,
                                                                            std::span<char> buffer,
                                                                            std::size_t nbytes) {
    using Result = std::pair<std::size_t, SocketAddress>;
    check_sock_call(*this, fd, "sock_recvfrom_into");
    if (nbytes > buffer.size()) {
        throw std::invalid_argument(
            "sock_recvfrom_into: nbytes is greater than the length of the buffer");
    }
    if (nbytes != 0) {
        buffer = buffer.first(nbytes);
    }
    return start_fd_op<Result>(*this, fd, POLLIN, [fd, buffer](FdOp<Result>& op) {
        SocketAddress from;
        from.set_size(SocketAddress::capacity());
        long n = retry_eintr([&] {
            return ::recvfrom(fd, buffer.data(), buffer.size(), 0, from.data(), from.size_ptr());
        });
        if (would_block(n)) {
            return false;
        }
        if (n < 0) {
            op.fail(static_cast<int>(-n), "recvfrom_into");
            return true;
        }
        op.succeed(static_cast<std::size_t>(n), std::move(from));
        return true;
    });
}

Future<void> EventLoop::sock_sendall(int fd, std::string data) {
    check_sock_call(*this, fd, "sock_sendall");
    return start_fd_op<void>(
        *this, fd, POLLOUT,
        [fd, data = std::move(data), sent = std::size_t{0}](FdOp<void>& op) mutable {
            // At least one send, even of nothing, so that an unusable socket
            // reports its error as it does in asyncio.
            do {
                long n = retry_eintr([&] {
                    return ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
                });
                if (would_block(n)) {
                    return false;
                }
                if (n < 0) {
                    op.fail(static_cast<int>(-n), "send");
                    return true;
                }
                sent += static_cast<std::size_t>(n);
            } while (sent < data.size());
            op.succeed();
            return true;
        });
}

Future<std::size_t> EventLoop::sock_sendto(int fd, std::string data, SocketAddress to) {
    check_sock_call(*this, fd, "sock_sendto");
    return start_fd_op<std::size_t>(
        *this, fd, POLLOUT,
        [fd, data = std::move(data), to = std::move(to)](FdOp<std::size_t>& op) {
            long n = retry_eintr([&] {
                return ::sendto(fd, data.data(), data.size(), MSG_NOSIGNAL, to.data(), to.size());
            });
            if (would_block(n)) {
                return false;
            }
            if (n < 0) {
                op.fail(static_cast<int>(-n), "sendto " + to.to_string());
                return true;
            }
            op.succeed(static_cast<std::size_t>(n));
            return true;
        });
}

Future<void> EventLoop::sock_connect(int fd, SocketAddress to) {
    check_sock_call(*this, fd, "sock_connect");
    return start_fd_op<void>(*this, fd, POLLOUT, ConnectBody{.fd = fd, .to = std::move(to)});
}

Future<void> EventLoop::sock_connect(int fd, std::string host, uint16_t port) {
    check_sock_call(*this, fd, "sock_connect");
    int family = detail::get_socket_option(fd, SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN");
    if (family == AF_UNIX) {
        // asyncio hands a Unix address to connect() as it is: a path.
        return sock_connect(fd, SocketAddress::from_unix_path(host));
    }
    if (family != AF_INET && family != AF_INET6) {
        throw std::invalid_argument(
            "sock_connect: a host and port need an AF_INET or AF_INET6 "
            "socket");
    }
    // asyncio's _ensure_resolved: resolve with the socket's own family,
    // type and protocol, and connect to the first answer.
    AddrInfoHints hints{
        .family = family,
        .type = detail::get_socket_option(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE"),
        .protocol = detail::get_socket_option(fd, SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL"),
        .flags = 0,
    };
    Future<std::vector<AddrInfo>> resolving = getaddrinfo(host, std::to_string(port), hints);
    if (resolving.done() && !resolving.cancelled() && !resolving.exception() &&
        !resolving.result().empty()) {
        return sock_connect(fd, resolving.result().front().address);  // a numeric host
    }
    return create_task(
        [this, fd, host, port, resolving] {
            std::vector<AddrInfo> infos = await(resolving);
            if (infos.empty()) {
                throw std::system_error(EADDRNOTAVAIL, std::generic_category(),
                                        "getaddrinfo('" + host + "', " + std::to_string(port) +
                                            ") returned no address");
            }
            await(sock_connect(fd, infos.front().address));
        },
        "sock_connect(" + host + ":" + std::to_string(port) + ")");
}

Future<std::pair<int, SocketAddress>> EventLoop::sock_accept(int fd) {
    using Result = std::pair<int, SocketAddress>;
    check_sock_call(*this, fd, "sock_accept");
    return start_fd_op<Result>(*this, fd, POLLIN, [fd](FdOp<Result>& op) {
        SocketAddress peer;
        peer.set_size(SocketAddress::capacity());
        long conn = retry_eintr([&] {
            return ::accept4(fd, peer.data(), peer.size_ptr(), SOCK_NONBLOCK | SOCK_CLOEXEC);
        });
        if (would_block(conn)) {
            return false;
        }
        if (conn < 0) {
            op.fail(static_cast<int>(-conn), "accept");
            return true;
        }
        op.succeed(static_cast<int>(conn), std::move(peer));
        return true;
    });
}

Future<std::size_t> EventLoop::sock_sendfile(int fd, int file, uint64_t offset,
                                             std::optional<std::size_t> count, bool fallback) {
    check_sock_call(*this, fd, "sock_sendfile");
    if (detail::get_socket_option(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE") != SOCK_STREAM) {
        throw std::invalid_argument("only SOCK_STREAM type sockets are supported");
    }
    if (count && *count == 0) {
        throw std::invalid_argument("count must be a positive integer (got 0)");
    }
    if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
        throw std::invalid_argument("offset must be a non-negative integer (got " +
                                    std::to_string(offset) + ")");
    }
    // sendfile(2) reads through the page cache, i.e. from a regular file.
    // asyncio asks fstat for the size only, and so answers 0 for a pipe;
    // here anything else than a regular file goes to the fallback.
    Future<std::size_t> native;
    struct stat status {};
    if (::fstat(file, &status) != 0 || !S_ISREG(status.st_mode)) {
        native = create_future<std::size_t>();
        native.set_exception(SendfileNotAvailableError("sendfile is not available: file fd " +
                                                       std::to_string(file) +
                                                       " is not a regular file"));
    } else {
        native = start_fd_op<std::size_t>(
            *this, fd, POLLOUT,
            SendfileBody{.fd = fd, .file = file, .offset = offset, .count = count});
    }
    if (!fallback || (native.done() && !refused_at_once(native))) {
        return native;
    }
    return create_task(
        [this, native, fd, file, offset, count]() -> std::size_t {
            try {
                return await(native);
            } catch (const SendfileNotAvailableError&) {
            }
            return sendfile_fallback(*this, fd, file, offset, count);
        },
        "sock_sendfile");
}

}  // namespace shardloop
