// EventLoop::sendfile: a file over a stream transport. Natively, the bytes
// go file -> pipe -> socket with two io_uring splices and never enter user
// space; where the kernel refuses (the file cannot be spliced), the
// fallback reads chunks on the default executor and writes them through
// the transport, waiting for its buffer to drain between chunks.
// transport.write() is refused while it runs, as asyncio refuses it.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "net/io_future.hpp"
#include "net/socket_util.hpp"
#include "net/stream_transport.hpp"
#include "runtime/errors.hpp"
#include "runtime/event_loop.hpp"

namespace shardloop {

namespace {

constexpr std::size_t splice_chunk = 256 * 1024;
constexpr std::size_t fallback_chunk = 256 * 1024;

std::size_t left_to_send(std::optional<std::size_t> count, std::size_t sent) {
    return count ? *count - sent : SIZE_MAX;
}

// The transport is gone (aborted, or closed by its loop) while sendfile ran.
void throw_if_lost(const Future<void>& lost) {
    if (lost.done()) {
        throw std::system_error(ECONNABORTED, std::generic_category(),
                                "sendfile: the transport was closed");
    }
}

// Waits until `sock` has room, or until the transport is lost (then throws:
// a socket nobody reads any more may never get room).
void wait_writable(EventLoop& loop, int sock, Future<void>& lost) {
    Future<int> ready = detail::io_operation(loop, detail::IoRequest::poll(sock, POLLOUT));
    Future<void> woken = loop.create_future<void>();
    auto wake = [woken](auto) mutable {
        if (!woken.done()) {
            woken.set_result();
        }
    };
    ready.add_done_callback(wake);
    uint64_t on_lost = lost.add_done_callback(wake);
    try {
        await(woken);
    } catch (...) {
        lost.remove_done_callback(on_lost);
        ready.cancel();
        throw;
    }
    lost.remove_done_callback(on_lost);
    ready.cancel();  // when the loss woke us
    throw_if_lost(lost);
}

// Moves `n` bytes from the pipe into the socket, waiting for room; `sent`
// counts what the socket took.
void splice_out(EventLoop& loop, int pipe_read, int sock, std::size_t n, std::size_t& sent,
                Future<void>& lost) {
    while (n > 0) {
        auto chunk = static_cast<uint32_t>(std::min<std::size_t>(n, UINT32_MAX));
        int moved =
            await(detail::io_operation(loop, detail::IoRequest{.opcode = detail::IoOpcode::splice,
                                                               .fd = pipe_read,
                                                               .len = chunk,
                                                               .offset = UINT64_MAX,
                                                               .fd_out = sock,
                                                               .offset_out = UINT64_MAX,
                                                               .op_flags = SPLICE_F_MOVE}));
        if (moved == -EAGAIN) {
            wait_writable(loop, sock, lost);
            continue;
        }
        if (moved < 0) {
            throw std::system_error(-moved, std::generic_category(), "splice to socket");
        }
        n -= static_cast<std::size_t>(moved);
        sent += static_cast<std::size_t>(moved);
        throw_if_lost(lost);
    }
}

// The native path; `sent` counts the bytes the socket took, also when it
// throws. Throws SendfileNotAvailableError when the kernel will not splice
// this file, before any byte went out.
void splice_file(EventLoop& loop, int sock, Future<void>& lost, int file, uint64_t offset,
                 std::optional<std::size_t> count, std::size_t& sent) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    detail::UniqueFd pipe_read(fds[0]);
    detail::UniqueFd pipe_write(fds[1]);
    ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(splice_chunk));  // best effort
    for (;;) {
        std::size_t want = std::min(left_to_send(count, sent), splice_chunk);
        if (want == 0) {
            break;
        }
        int filled =
            await(detail::io_operation(loop, detail::IoRequest{.opcode = detail::IoOpcode::splice,
                                                               .fd = file,
                                                               .len = static_cast<uint32_t>(want),
                                                               .offset = offset + sent,
                                                               .fd_out = pipe_write.get(),
                                                               .offset_out = UINT64_MAX,
                                                               .op_flags = SPLICE_F_MOVE}));
        throw_if_lost(lost);
        if (filled == 0) {
            break;  // end of file
        }
        if (filled < 0) {
            if (sent == 0 &&
                (filled == -EINVAL || filled == -ENOSYS || filled == -EBADF || filled == -ESPIPE)) {
                throw SendfileNotAvailableError(std::string("os.sendfile() is not available: ") +
                                                std::strerror(-filled));
            }
            throw std::system_error(-filled, std::generic_category(), "splice from file");
        }
        splice_out(loop, pipe_read.get(), sock, static_cast<std::size_t>(filled), sent, lost);
    }
}

// The fallback; `sent` counts the bytes handed to the transport.
void copy_file(EventLoop& loop, detail::StreamTransport& transport, int file, uint64_t offset,
               std::optional<std::size_t> count, std::size_t& sent) {
    auto buffer = std::make_shared<std::string>();
    for (;;) {
        std::size_t want = std::min(left_to_send(count, sent), fallback_chunk);
        if (want == 0) {
            break;
        }
        buffer->resize(want);
        // Reading a file may block: the default executor does it. Its errno
        // is that thread's, so the job hands it back.
        long got = await(loop.run_in_executor(nullptr, [buffer, file, want, at = offset + sent] {
            ssize_t n = ::pread(file, buffer->data(), want, static_cast<off_t>(at));
            return n >= 0 ? static_cast<long>(n) : -static_cast<long>(errno);
        }));
        if (got < 0) {
            throw std::system_error(static_cast<int>(-got), std::generic_category(), "pread");
        }
        if (got == 0) {
            break;
        }
        if (transport.is_closing()) {
            throw std::system_error(EPIPE, std::generic_category(), "Connection closed by peer");
        }
        transport.set_sendfile_running(false);
        transport.write(std::string_view(buffer->data(), static_cast<std::size_t>(got)));
        transport.set_sendfile_running(true);
        sent += static_cast<std::size_t>(got);
        await(transport.drained());
    }
}

}  // namespace

Future<std::size_t> EventLoop::sendfile(std::shared_ptr<Transport> transport, int file,
                                        uint64_t offset, std::optional<std::size_t> count,
                                        bool fallback) {
    check_closed();
    auto stream = std::dynamic_pointer_cast<detail::StreamTransport>(transport);
    if (!stream || stream->fd() < 0) {
        throw RuntimeError("sendfile is not supported for transport " +
                           (transport ? transport->repr() : std::string("<null>")));
    }
    if (stream->is_closing()) {
        throw RuntimeError("Transport is closing");
    }
    // asyncio's _check_sendfile_params.
    if (count && *count == 0) {
        throw std::invalid_argument("count must be a positive integer (got 0)");
    }
    if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
        throw std::invalid_argument("offset must be a non-negative integer (got " +
                                    std::to_string(offset) + ")");
    }
    return create_task([this, stream, file, offset, count, fallback]() -> std::size_t {
        // Whatever was written before goes first.
        await(stream->drained());
        if (stream->fd() < 0) {
            throw std::system_error(ECONNABORTED, std::generic_category(),
                                    "sendfile: the transport was closed");
        }
        // The splices go to a duplicate of the socket: when the transport
        // closes its fd meanwhile, a splice still queued (they run on
        // io_uring's workers, which look the fd up late) cannot meet a
        // reused number. `lost` ends the wait on that socket.
        detail::UniqueFd sock(::fcntl(stream->fd(), F_DUPFD_CLOEXEC, 0));
        if (!sock) {
            throw std::system_error(errno, std::generic_category(), "sendfile: dup");
        }
        Future<void> lost = stream->when_lost();
        bool was_reading = stream->is_reading();
        stream->pause_reading();
        stream->set_sendfile_running(true);
        std::size_t sent = 0;
        struct Restore {
            detail::StreamTransport& transport;
            Future<void>& lost;
            bool resume;
            int file;
            uint64_t offset;
            const std::size_t& sent;
            ~Restore() {
                lost.cancel();
                transport.set_sendfile_running(false);
                if (resume && !transport.is_closing()) {
                    transport.resume_reading();
                }
                // asyncio leaves the position after the last byte sent, also
                // when the transfer failed part way (and alone when none went).
                if (sent > 0) {
                    ::lseek(file, static_cast<off_t>(offset + sent), SEEK_SET);
                }
            }
        } restore{*stream, lost, was_reading, file, offset, sent};
        try {
            splice_file(*this, sock.get(), lost, file, offset, count, sent);
        } catch (const SendfileNotAvailableError&) {
            if (!fallback) {
                throw;
            }
            copy_file(*this, *stream, file, offset, count, sent);
        }
        return sent;
    });
}

}  // namespace shardloop
