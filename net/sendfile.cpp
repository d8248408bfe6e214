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
#include <memory>
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

// Moves `n` bytes from the pipe into the socket, waiting for room.
void splice_out(EventLoop& loop, int pipe_read, int sock, std::size_t n) {
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
            await(detail::io_operation(loop, detail::IoRequest::poll(sock, POLLOUT)));
            continue;
        }
        if (moved < 0) {
            throw std::system_error(-moved, std::generic_category(), "splice to socket");
        }
        n -= static_cast<std::size_t>(moved);
    }
}

// The native path; throws SendfileNotAvailableError when the kernel will not
// splice this file, before any byte went out.
std::size_t splice_file(EventLoop& loop, int sock, int file, uint64_t offset,
                        std::optional<std::size_t> count) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    detail::UniqueFd pipe_read(fds[0]);
    detail::UniqueFd pipe_write(fds[1]);
    ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(splice_chunk));  // best effort
    std::size_t sent = 0;
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
        splice_out(loop, pipe_read.get(), sock, static_cast<std::size_t>(filled));
        sent += static_cast<std::size_t>(filled);
    }
    return sent;
}

std::size_t copy_file(EventLoop& loop, detail::StreamTransport& transport, int file,
                      uint64_t offset, std::optional<std::size_t> count, std::size_t sent) {
    auto buffer = std::make_shared<std::string>();
    for (;;) {
        std::size_t want = std::min(left_to_send(count, sent), fallback_chunk);
        if (want == 0) {
            break;
        }
        buffer->resize(want);
        // Reading a file may block: the default executor does it.
        ssize_t got = await(loop.run_in_executor(nullptr, [buffer, file, want, at = offset + sent] {
            return ::pread(file, buffer->data(), want, static_cast<off_t>(at));
        }));
        if (got < 0) {
            throw std::system_error(errno, std::generic_category(), "pread");
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
        await(transport.drained());
        sent += static_cast<std::size_t>(got);
    }
    return sent;
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
    return create_task([this, stream, file, offset, count, fallback]() -> std::size_t {
        // Whatever was written before goes first.
        await(stream->drained());
        bool was_reading = stream->is_reading();
        stream->pause_reading();
        stream->set_sendfile_running(true);
        struct Restore {
            detail::StreamTransport& transport;
            bool resume;
            ~Restore() {
                transport.set_sendfile_running(false);
                if (resume && !transport.is_closing()) {
                    transport.resume_reading();
                }
            }
        } restore{*stream, was_reading};
        std::size_t sent = 0;
        try {
            sent = splice_file(*this, stream->fd(), file, offset, count);
        } catch (const SendfileNotAvailableError&) {
            if (!fallback) {
                throw;
            }
            sent = copy_file(*this, *stream, file, offset, count, 0);
        }
        ::lseek(file, static_cast<off_t>(offset + sent), SEEK_SET);  // asyncio leaves it there
        return sent;
    });
}

}  // namespace shardloop
