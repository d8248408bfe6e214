#pragma once

// Shared by the stream transport, pipe and sendfile tests: owned fds,
// socket pairs, loopback TCP pairs, pipes and temporary files; a Protocol
// and a BufferedProtocol that record every callback in order; and a
// fixture that wraps an fd in a transport.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop::testing {

// An fd closed at the end of the scope unless released.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : _fd(fd) {}
    Fd(Fd&& other) noexcept : _fd(std::exchange(other._fd, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        reset(std::exchange(other._fd, -1));
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const { return _fd; }
    int release() { return std::exchange(_fd, -1); }
    void reset(int fd = -1) {
        if (_fd >= 0) {
            ::close(_fd);
        }
        _fd = fd;
    }

private:
    int _fd = -1;
};

inline void set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    ASSERT_GE(flags, 0);
    ASSERT_EQ(::fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

// Python's socket.socketpair(): connected AF_UNIX stream sockets, both
// non-blocking.
struct SocketPair {
    Fd a;
    Fd b;
    SocketPair() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0)
            << std::strerror(errno);
        a.reset(fds[0]);
        b.reset(fds[1]);
    }
};

// A connected loopback TCP pair (client, accepted server end), both
// non-blocking, made with plain blocking calls so that it depends on no
// loop code.
struct TcpPair {
    Fd client;
    Fd server;
    TcpPair() {
        Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_GE(listener.get(), 0);
        SocketAddress any = SocketAddress::from_numeric("127.0.0.1", 0);
        EXPECT_EQ(::bind(listener.get(), any.data(), any.size()), 0) << std::strerror(errno);
        EXPECT_EQ(::listen(listener.get(), 1), 0);
        SocketAddress bound = local_address(listener.get());
        client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(::connect(client.get(), bound.data(), bound.size()), 0) << std::strerror(errno);
        server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        EXPECT_GE(server.get(), 0) << std::strerror(errno);
        set_nonblocking(client.get());
    }
};

// A pipe; `flags` O_NONBLOCK (the default) makes both ends non-blocking
// (connect_*_pipe makes the end it takes non-blocking anyway).
struct Pipe {
    Fd read_end;
    Fd write_end;
    explicit Pipe(int flags = O_NONBLOCK) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC | flags), 0);
        read_end.reset(fds[0]);
        write_end.reset(fds[1]);
    }
};

// Small kernel buffers make a peer that does not read push back quickly.
inline void shrink_socket_buffers(int fd, int size = 4096) {
    EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
    EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
}

// A peer end the test reads itself, without blocking.
struct PeerReader {
    std::string data;
    bool eof = false;
    int error = 0;  // errno of a failed read (ECONNRESET...)

    // Reads what is there now, at most `limit` bytes; returns the count.
    std::size_t read_some(int fd, std::size_t limit = SIZE_MAX) {
        char buffer[65536];
        std::size_t total = 0;
        while (!eof && error == 0 && total < limit) {
            std::size_t want = std::min(sizeof buffer, limit - total);
            ssize_t n = ::read(fd, buffer, want);
            if (n > 0) {
                data.append(buffer, static_cast<std::size_t>(n));
                total += static_cast<std::size_t>(n);
            } else if (n == 0) {
                eof = true;
            } else if (errno == EINTR) {
                continue;
            } else {
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    error = errno;
                }
                break;
            }
        }
        return total;
    }
};

// Deterministic bytes with no short period, so that a lost, repeated or
// reordered chunk shows up as a mismatch.
inline std::string pattern(std::size_t size, uint32_t seed = 1) {
    std::string out(size, '\0');
    uint32_t x = seed * 2654435761U + 12345U;
    for (std::size_t i = 0; i < size; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = static_cast<char>(x);
    }
    return out;
}

// Compares big byte strings without printing them: the sizes and the first
// differing offset.
inline ::testing::AssertionResult same_bytes(const std::string& got, const std::string& want) {
    if (got == want) {
        return ::testing::AssertionSuccess();
    }
    std::size_t common = std::min(got.size(), want.size());
    std::size_t at = 0;
    while (at < common && got[at] == want[at]) {
        ++at;
    }
    return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                         << "; first difference at offset " << at;
}

// The errno of the std::system_error behind `error` (0: none, or not one).
inline int error_code_of(const std::exception_ptr& error) {
    try {
        if (error) {
            std::rethrow_exception(error);
        }
    } catch (const std::system_error& e) {
        return e.code().value();
    } catch (...) {
    }
    return 0;
}

// A regular file holding `content`, unlinked at once, open for reading
// (position 0).
class TempFile {
public:
    explicit TempFile(const std::string& content) {
        std::string path = (std::filesystem::temp_directory_path() / "stream-test-XXXXXX").string();
        _fd.reset(::mkostemp(path.data(), O_CLOEXEC));
        EXPECT_GE(_fd.get(), 0) << std::strerror(errno);
        ::unlink(path.c_str());
        std::size_t done = 0;
        while (done < content.size()) {
            ssize_t n = ::write(_fd.get(), content.data() + done, content.size() - done);
            EXPECT_GT(n, 0) << std::strerror(errno);
            if (n <= 0) {
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        EXPECT_EQ(::lseek(_fd.get(), 0, SEEK_SET), 0);
    }
    int fd() const { return _fd.get(); }
    off_t position() const { return ::lseek(_fd.get(), 0, SEEK_CUR); }

private:
    Fd _fd;
};

// Records every callback of a Protocol, in order: "made", "data", "eof",
// "pause", "resume", "lost". Hooks let a test act inside a callback.
class RecordingProtocol : public Protocol {
public:
    void connection_made(std::shared_ptr<BaseTransport> transport) override {
        EXPECT_EQ(made, 0) << "connection_made called twice";
        ++made;
        events.emplace_back("made");
        base = std::move(transport);
        if (on_made) {
            on_made();
        }
    }
    // A protocol that set_protocol() installed never gets connection_made;
    // tests check the order through `events`.
    void data_received(std::string_view bytes) override {
        EXPECT_EQ(lost, 0) << "data_received after connection_lost";
        EXPECT_EQ(eofs, 0) << "data_received after eof_received";
        EXPECT_FALSE(bytes.empty()) << "data_received with no data";
        if (events.empty() || events.back() != "data") {
            events.emplace_back("data");
        }
        data.append(bytes);
        ++data_calls;
        if (on_data) {
            on_data(bytes);
        }
    }
    bool eof_received() override {
        EXPECT_EQ(lost, 0) << "eof_received after connection_lost";
        ++eofs;
        events.emplace_back("eof");
        return on_eof ? on_eof() : keep_open_on_eof;
    }
    void pause_writing() override {
        ++pauses;
        events.emplace_back("pause");
        if (on_pause) {
            on_pause();
        }
    }
    void resume_writing() override {
        ++resumes;
        events.emplace_back("resume");
        if (on_resume) {
            on_resume();
        }
    }
    void connection_lost(std::exception_ptr error) override {
        ++lost;
        events.emplace_back("lost");
        lost_error = std::move(error);
        if (on_lost) {
            on_lost();
        }
    }

    std::shared_ptr<Transport> transport() const { return transport_cast<Transport>(base); }

    std::shared_ptr<BaseTransport> base;
    std::vector<std::string> events;
    std::string data;
    int made = 0;
    int data_calls = 0;
    int eofs = 0;
    int pauses = 0;
    int resumes = 0;
    int lost = 0;
    std::exception_ptr lost_error;
    bool keep_open_on_eof = false;

    std::function<void()> on_made;
    std::function<void(std::string_view)> on_data;
    std::function<bool()> on_eof;
    std::function<void()> on_pause;
    std::function<void()> on_resume;
    std::function<void()> on_lost;
};

// A BufferedProtocol with a buffer of `size` bytes (0: an empty span).
class RecordingBufferedProtocol : public BufferedProtocol {
public:
    explicit RecordingBufferedProtocol(std::size_t size) : buffer(size, '\0') {}

    void connection_made(std::shared_ptr<BaseTransport> transport) override {
        ++made;
        base = std::move(transport);
    }
    std::span<char> get_buffer(std::size_t sizehint) override {
        ++get_buffer_calls;
        last_sizehint = sizehint;
        if (on_get_buffer) {
            on_get_buffer();
        }
        return std::span<char>(buffer.data(), buffer.size());
    }
    void buffer_updated(std::size_t nbytes) override {
        EXPECT_EQ(lost, 0) << "buffer_updated after connection_lost";
        EXPECT_LE(nbytes, buffer.size());
        data.append(buffer.data(), nbytes);
        updates.push_back(nbytes);
        if (on_updated) {
            on_updated(nbytes);
        }
    }
    bool eof_received() override {
        ++eofs;
        return keep_open_on_eof;
    }
    void connection_lost(std::exception_ptr error) override {
        ++lost;
        lost_error = std::move(error);
    }

    std::shared_ptr<Transport> transport() const { return transport_cast<Transport>(base); }

    std::vector<char> buffer;
    std::shared_ptr<BaseTransport> base;
    std::string data;
    std::vector<std::size_t> updates;
    std::size_t last_sizehint = 0;
    int made = 0;
    int get_buffer_calls = 0;
    int eofs = 0;
    int lost = 0;
    std::exception_ptr lost_error;
    bool keep_open_on_eof = false;
    std::function<void()> on_get_buffer;
    std::function<void(std::size_t)> on_updated;
};

// What the exception handler was told, with the transport it named.
struct TransportReport {
    std::string message;
    std::exception_ptr exception;
    BaseTransport* transport = nullptr;
    BaseProtocol* protocol = nullptr;
};

class StreamTest : public LoopTest {
protected:
    // Wraps the connected socket `fd` (taken) in a transport talking to
    // `protocol`; returns once connection_made() has run.
    std::shared_ptr<Transport> connect(Fd& fd, std::shared_ptr<BaseProtocol> protocol) {
        auto connection = loop->run_until_complete(
            loop->connect_accepted_socket([protocol] { return protocol; }, fd.release()));
        EXPECT_EQ(connection.protocol, protocol);
        return connection.transport;
    }

    // Routes the exception handler into `transport_reports`.
    void record_transport_reports() {
        loop->set_exception_handler([this](EventLoop&, const ExceptionContext& context) {
            transport_reports.push_back(TransportReport{context.message, context.exception,
                                                        context.transport, context.protocol});
        });
    }

    void run_iterations(int count) {
        for (int i = 0; i < count; ++i) {
            run_briefly();
        }
    }

    std::vector<TransportReport> transport_reports;
};

}  // namespace shardloop::testing
