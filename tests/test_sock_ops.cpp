// The sock_* methods (net/sock_ops.cpp) on real loopback and Unix sockets,
// socketpairs and files. Cases ported from CPython 3.13's
// Lib/test/test_asyncio (test_sock_lowlevel.py, test_sendfile.py,
// test_base_events.py, test_selector_events.py, test_unix_events.py) name
// the original; the fixture checks that no fd, task or stack leaked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "net/net_state.hpp"
#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using shardloop::testing::LoopTest;

void close_fd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

// An fd closed at the end of the scope.
struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int value) : fd(value) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { close_fd(fd); }
    operator int() const { return fd; }  // NOLINT: reads like the fd it is
};

int make_socket(int family, int type, bool nonblocking = true) {
    int fd = ::socket(family, type | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    return fd;
}

// Python's socket.socketpair(), both ends non-blocking.
struct SocketPair {
    Fd a;
    Fd b;
    explicit SocketPair(int type = SOCK_STREAM) {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
        a.fd = fds[0];
        b.fd = fds[1];
    }
};

// A listening TCP socket on 127.0.0.1, non-blocking unless asked otherwise.
struct Listener {
    Fd fd;
    SocketAddress address;
    explicit Listener(bool nonblocking = true)
        : fd(make_socket(AF_INET, SOCK_STREAM, nonblocking)) {
        auto any = SocketAddress::from_numeric("127.0.0.1", 0);
        EXPECT_EQ(::bind(fd, any.data(), any.size()), 0);
        EXPECT_EQ(::listen(fd, 16), 0);
        address = local_address(fd);
    }
};

// A temporary directory (mkdtemp), removed with everything in it.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sockops-XXXXXX").string();
        EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
        path = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// A file in `dir` holding `data`, opened for reading.
int make_file(const TempDir& dir, const std::string& name, const std::string& data) {
    std::string path = (dir.path / name).string();
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    EXPECT_EQ(::lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

off_t file_position(int fd) { return ::lseek(fd, 0, SEEK_CUR); }

// Blocking I/O helpers for the threads that play the peer.
bool wait_readable(int fd, int timeout_ms) {
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    return ::poll(&p, 1, timeout_ms) == 1;
}
void send_all_blocking(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

// CPython's test_utils.run_test_server / run_test_unix_server: an HTTP/1.0
// server on a thread of its own. GET answers "Test message"; POST /loop
// echoes its body. One connection at a time, closed after the answer.
class TestHttpServer {
public:
    explicit TestHttpServer(const SocketAddress& bind_to) {
        _listener.fd = make_socket(bind_to.family(), SOCK_STREAM, /*nonblocking=*/false);
        EXPECT_EQ(::bind(_listener, bind_to.data(), bind_to.size()), 0) << std::strerror(errno);
        EXPECT_EQ(::listen(_listener, 8), 0);
        _address = local_address(_listener);
        _thread = std::thread([this] { serve(); });
    }
    ~TestHttpServer() {
        _stop = true;
        _thread.join();
    }
    const SocketAddress& address() const { return _address; }

private:
    void serve() {
        while (!_stop) {
            if (!wait_readable(_listener, 20)) {
                continue;
            }
            Fd conn(::accept4(_listener, nullptr, nullptr, SOCK_CLOEXEC));
            if (conn.fd >= 0) {
                timeval limit{.tv_sec = 5, .tv_usec = 0};
                ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
                handle(conn);
            }
        }
    }

    static void handle(int conn) {
        std::string request;
        char buffer[65536];
        std::size_t end = std::string::npos;
        while ((end = request.find("\r\n\r\n")) == std::string::npos) {
            ssize_t n = ::recv(conn, buffer, sizeof buffer, 0);
            if (n <= 0) {
                return;
            }
            request.append(buffer, static_cast<std::size_t>(n));
        }
        if (request.rfind("POST /loop", 0) != 0) {
            std::string answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nTest message";
            send_all_blocking(conn, answer.data(), answer.size());
            return;
        }
        std::size_t length = std::stoul(request.substr(request.find("Content-Length: ") + 16));
        std::string head =
            "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
        send_all_blocking(conn, head.data(), head.size());
        std::string body = request.substr(end + 4);
        send_all_blocking(conn, body.data(), body.size());
        for (std::size_t left = length - body.size(); left > 0;) {
            ssize_t n = ::recv(conn, buffer, std::min(left, sizeof buffer), 0);
            if (n <= 0) {
                return;
            }
            send_all_blocking(conn, buffer, static_cast<std::size_t>(n));
            left -= static_cast<std::size_t>(n);
        }
    }

    Fd _listener;
    SocketAddress _address;
    std::atomic<bool> _stop{false};
    std::thread _thread;
};

// CPython's test_utils.run_udp_echo_server: echoes every datagram back.
class UdpEchoServer {
public:
    UdpEchoServer() {
        _sock.fd = make_socket(AF_INET, SOCK_DGRAM, /*nonblocking=*/false);
        auto any = SocketAddress::from_numeric("127.0.0.1", 0);
        EXPECT_EQ(::bind(_sock, any.data(), any.size()), 0);
        _address = local_address(_sock);
        _thread = std::thread([this] {
            char buffer[65536];
            while (!_stop) {
                if (!wait_readable(_sock, 20)) {
                    continue;
                }
                SocketAddress from;
                from.set_size(SocketAddress::capacity());
                ssize_t n =
                    ::recvfrom(_sock, buffer, sizeof buffer, 0, from.data(), from.size_ptr());
                if (n >= 0) {
                    ::sendto(_sock, buffer, static_cast<std::size_t>(n), 0, from.data(),
                             from.size());
                }
            }
        });
    }
    ~UdpEchoServer() {
        _stop = true;
        _thread.join();
    }
    const SocketAddress& address() const { return _address; }

private:
    Fd _sock;
    SocketAddress _address;
    std::atomic<bool> _stop{false};
    std::thread _thread;
};

// A transport stand-in, to see sock_* refuse an fd a transport owns.
class FakeTransport final : public BaseTransport {
public:
    void close() override {}
    bool is_closing() const override { return false; }
    void set_protocol(std::shared_ptr<BaseProtocol>) override {}
    std::shared_ptr<BaseProtocol> get_protocol() const override { return nullptr; }
    std::string repr() const override { return "<FakeTransport>"; }

protected:
    std::any extra_info(std::string_view) const override { return {}; }
};

// The errno of the std::system_error that `future` fails with (0: none).
template <class T>
int system_error_code(EventLoop& loop, const Future<T>& future, std::string* what = nullptr) {
    try {
        loop.run_until_complete(wait_for(future, 5.0));
    } catch (const std::system_error& e) {
        if (what != nullptr) {
            *what = e.what();
        }
        return e.code().value();
    }
    ADD_FAILURE() << "no std::system_error";
    return 0;
}

class SockOpsTest : public LoopTest {
protected:
    // run_until_complete with a deadline: a bug that leaves an operation
    // waiting fails the test (TimeoutError) instead of hanging it.
    template <class T>
    T run(const Future<T>& future, double timeout = 5.0) {
        return loop->run_until_complete(wait_for(future, timeout));
    }
    template <detail::TaskFunction F>
    auto run(F&& fn, double timeout = 5.0) {
        return run(loop->create_task(std::forward<F>(fn)), timeout);
    }

    // test_sock_lowlevel.py _basetest_sock_client_ops (and, with
    // `recv_into`, _basetest_sock_recv_into) against `httpd`.
    void client_ops(const SocketAddress& httpd, bool recv_into) {
        Fd sock(make_socket(httpd.family(), SOCK_STREAM));
        run(loop->sock_connect(sock, httpd));
        run(loop->sock_sendall(sock, "GET / HTTP/1.0\r\n\r\n"));
        std::string data;
        if (recv_into) {
            std::string buffer(1024, '\0');
            std::span<char> view(buffer);
            std::size_t n = run(loop->sock_recv_into(sock, view));
            std::size_t more = run(loop->sock_recv_into(sock, view.subspan(n)));
            data = buffer.substr(0, n + more);
        } else {
            data = run(loop->sock_recv(sock, 1024));
            data += run(loop->sock_recv(sock, 1024));  // consume the rest
        }
        EXPECT_EQ(data.rfind("HTTP/1.0 200 OK", 0), 0U) << data;
    }

    // test_sock_lowlevel.py _basetest_huge_content(_recvinto): sends a
    // megabyte while reading its echo.
    void huge_content(const SocketAddress& httpd, bool recv_into) {
        constexpr std::size_t data_size = 1'000'000;
        std::string chunk;
        for (std::size_t i = 0; i < data_size / 10; ++i) {
            chunk += "0123456789";
        }
        Fd sock(make_socket(AF_INET, SOCK_STREAM));
        std::string buffer(data_size, '\0');
        auto receive = [&] {
            if (!recv_into) {
                return await(loop->sock_recv(sock, data_size));
            }
            std::size_t n = await(loop->sock_recv_into(sock, buffer));
            return buffer.substr(0, n);
        };
        run([&] {
            await(loop->sock_connect(sock, httpd));
            await(loop->sock_sendall(sock, "POST /loop HTTP/1.0\r\nContent-Length: " +
                                               std::to_string(data_size) + "\r\n\r\n"));
            Future<void> sending = loop->sock_sendall(sock, chunk);
            std::string data = receive();
            EXPECT_EQ(data.rfind("HTTP/1.0 200 OK", 0), 0U);
            while (data.find("\r\n\r\n") == std::string::npos) {
                data += receive();
            }
            std::string body = data.substr(data.find("\r\n\r\n") + 4);
            std::size_t received = 0;
            for (;;) {
                for (char c : body) {
                    ASSERT_EQ(c, static_cast<char>('0' + received % 10)) << received;
                    ++received;
                }
                body = receive();
                if (body.empty()) {
                    break;
                }
            }
            EXPECT_EQ(received, data_size);
            await(sending);
        });
    }

    // A connected TCP pair over loopback: (client, server side).
    std::pair<int, int> tcp_pair() {
        Listener listener;
        int client = make_socket(AF_INET, SOCK_STREAM);
        auto connecting = loop->sock_connect(client, listener.address);
        auto [server, peer] = run(loop->sock_accept(listener.fd));
        run(connecting);
        return {client, server};
    }

    // Reads `fd` until EOF in a task; the result is everything read.
    Task<std::string> read_all(int fd) {
        return loop->create_task([this, fd] {
            std::string all;
            for (;;) {
                std::string data = await(loop->sock_recv(fd, 65536));
                if (data.empty()) {
                    return all;
                }
                all += data;
            }
        });
    }
};

// ---- test_sock_lowlevel.py ----

// test_sock_client_ops, the blocking-socket part included: asyncio raises
// ValueError in debug mode; here every sock_* refuses a blocking socket.
TEST_F(SockOpsTest, SockClientOps) {
    TestHttpServer httpd(SocketAddress::from_numeric("127.0.0.1", 0));
    Fd blocking(make_socket(AF_INET, SOCK_STREAM, /*nonblocking=*/false));
    char byte = 0;
    EXPECT_THROW(loop->sock_connect(blocking, httpd.address()), std::invalid_argument);
    EXPECT_THROW(loop->sock_sendall(blocking, "GET / HTTP/1.0\r\n\r\n"), std::invalid_argument);
    EXPECT_THROW(loop->sock_recv(blocking, 1024), std::invalid_argument);
    EXPECT_THROW(loop->sock_recv_into(blocking, std::span<char>(&byte, 1)), std::invalid_argument);
    EXPECT_THROW(loop->sock_accept(blocking), std::invalid_argument);
    client_ops(httpd.address(), /*recv_into=*/false);
    client_ops(httpd.address(), /*recv_into=*/true);
}

// test_unix_sock_client_ops
TEST_F(SockOpsTest, UnixSockClientOps) {
    TempDir dir;
    TestHttpServer httpd(SocketAddress::from_unix_path((dir.path / "httpd.sock").string()));
    client_ops(httpd.address(), /*recv_into=*/false);
    client_ops(httpd.address(), /*recv_into=*/true);
}

// test_sock_client_fail: ConnectionRefusedError, naming the address.
TEST_F(SockOpsTest, SockClientFail) {
    SocketAddress address;
    {
        Fd unused(make_socket(AF_INET, SOCK_STREAM));
        auto any = SocketAddress::from_numeric("127.0.0.1", 0);
        ASSERT_EQ(::bind(unused, any.data(), any.size()), 0);
        address = local_address(unused);
    }
    Fd sock(make_socket(AF_INET, SOCK_STREAM));
    std::string what;
    EXPECT_EQ(system_error_code(*loop, loop->sock_connect(sock, address), &what), ECONNREFUSED);
    EXPECT_NE(what.find("Connect call failed " + address.to_string()), std::string::npos) << what;
}

// test_sock_accept
TEST_F(SockOpsTest, SockAccept) {
    Listener listener;
    Fd client(make_socket(AF_INET, SOCK_STREAM, /*nonblocking=*/false));
    ASSERT_EQ(::connect(client, listener.address.data(), listener.address.size()), 0);

    auto [conn_fd, peer] = run(loop->sock_accept(listener.fd));
    Fd conn(conn_fd);
    EXPECT_NE(::fcntl(conn, F_GETFL) & O_NONBLOCK, 0);  // conn.gettimeout() == 0
    EXPECT_NE(::fcntl(conn, F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(peer, local_address(client));
    EXPECT_EQ(peer_address(client), listener.address);
}

// sock_accept waits for a connection that comes later.
TEST_F(SockOpsTest, SockAcceptWaitsForAConnection) {
    Listener listener;
    auto accepting = loop->sock_accept(listener.fd);
    run_briefly();
    EXPECT_FALSE(accepting.done());
    Fd client(make_socket(AF_INET, SOCK_STREAM));
    run(loop->sock_connect(client, listener.address));
    auto [conn_fd, peer] = run(accepting);
    Fd conn(conn_fd);
    EXPECT_EQ(peer, local_address(client));
}

// test_cancel_sock_accept: a timed-out accept leaves nothing behind, and
// its poll is cancelled.
TEST_F(SockOpsTest, CancelSockAccept) {
    SocketAddress address;
    {
        Listener listener;
        address = listener.address;
        EXPECT_THROW(run(wait_for(loop->sock_accept(listener.fd), 0.1)), TimeoutError);
        run_until([&] { return loop->reactor().in_flight() == 0; });
    }
    Fd client(make_socket(AF_INET, SOCK_STREAM));
    EXPECT_EQ(system_error_code(*loop, loop->sock_connect(client, address)), ECONNREFUSED);
}

// test_huge_content
TEST_F(SockOpsTest, HugeContent) {
    TestHttpServer httpd(SocketAddress::from_numeric("127.0.0.1", 0));
    huge_content(httpd.address(), /*recv_into=*/false);
}

// test_huge_content_recvinto
TEST_F(SockOpsTest, HugeContentRecvInto) {
    TestHttpServer httpd(SocketAddress::from_numeric("127.0.0.1", 0));
    huge_content(httpd.address(), /*recv_into=*/true);
}

// test_sock_client_racing (_basetest_sock_recv_racing): a cancelled
// sock_recv takes nothing; the next one gets the whole answer.
TEST_F(SockOpsTest, SockRecvRacing) {
    TestHttpServer httpd(SocketAddress::from_numeric("127.0.0.1", 0));
    Fd sock(make_socket(AF_INET, SOCK_STREAM));
    run([&] {
        await(loop->sock_connect(sock, httpd.address()));
        auto task = loop->create_task([&] { return await(loop->sock_recv(sock, 1024)); });
        yield_now();
        task.cancel();
        Future<void> sending = loop->sock_sendall(sock, "GET / HTTP/1.0\r\n\r\n");
        std::string data = await(loop->sock_recv(sock, 1024));
        data += await(loop->sock_recv(sock, 1024));
        EXPECT_EQ(data.rfind("HTTP/1.0 200 OK", 0), 0U) << data;
        EXPECT_THROW(await(task), CancelledError);
        await(sending);
    });
}

// test_sock_client_racing (_basetest_sock_send_racing): a cancelled
// sock_sendall on a full socket sends nothing; the next one goes through.
TEST_F(SockOpsTest, SockSendRacing) {
    auto [client_fd, server_fd] = tcp_pair();
    Fd client(client_fd);
    Fd server(server_fd);
    int size = 1024;
    ::setsockopt(client, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    run([&] {
        // Fill the buffers until even 4 bytes would block.
        std::string spaces(8192, ' ');
        for (std::size_t chunk = 8192; chunk >= 4; chunk /= 2) {
            while (::send(client, spaces.data(), chunk, MSG_NOSIGNAL) > 0) {
            }
            ASSERT_EQ(errno, EAGAIN);
        }
        Future<void> hello = loop->sock_sendall(client, "hello");
        yield_now();
        EXPECT_FALSE(hello.done());
        hello.cancel();
        Task<std::string> reading = read_all(server);
        await(loop->sock_sendall(client, "world"));
        ::shutdown(client, SHUT_WR);
        std::string data = await(reading);
        std::string text = data.substr(data.find_first_not_of(' '));
        EXPECT_EQ(text, "world");
    });
}

// Cancelled after the data arrived but before the loop heard of it: the
// readiness is ignored and the bytes stay in the socket.
TEST_F(SockOpsTest, CancelledRecvLeavesTheDataInTheSocket) {
    SocketPair pair;
    auto first = loop->sock_recv(pair.a, 100);
    run_briefly();
    ASSERT_FALSE(first.done());
    ASSERT_EQ(::write(pair.b, "hello", 5), 5);
    EXPECT_TRUE(first.cancel());  // the poll has fired in the kernel; nobody read yet
    run_briefly();
    EXPECT_TRUE(first.cancelled());
    EXPECT_EQ(run(loop->sock_recv(pair.a, 100)), "hello");
}

// A pending operation whose future is dropped cancels its poll.
TEST_F(SockOpsTest, DroppedOperationCancelsItsPoll) {
    SocketPair pair;
    { auto dropped = loop->sock_recv(pair.a, 100); }
    EXPECT_GT(loop->reactor().in_flight(), 0U);
    run_until([&] { return loop->reactor().in_flight() == 0; });
    ASSERT_EQ(::write(pair.b, "kept", 4), 4);
    EXPECT_EQ(run(loop->sock_recv(pair.a, 100)), "kept");
}

// sock_recv returns b'' at the end of the stream.
TEST_F(SockOpsTest, SockRecvReturnsEmptyAtEof) {
    SocketPair pair;
    auto receiving = loop->sock_recv(pair.a, 100);
    ::shutdown(pair.b, SHUT_WR);
    EXPECT_EQ(run(receiving), "");
}

// sock_sendall to a peer that went away: EPIPE or ECONNRESET, not SIGPIPE.
TEST_F(SockOpsTest, SockSendallToAClosedPeerFails) {
    SocketPair pair;
    close_fd(pair.b.fd);
    int code = system_error_code(*loop, loop->sock_sendall(pair.a, "data"));
    EXPECT_TRUE(code == EPIPE || code == ECONNRESET) << code;
}

// sock_sendall finishes a send the kernel took only part of.
TEST_F(SockOpsTest, SockSendallContinuesAfterPartialSends) {
    SocketPair pair;
    std::string data(4 * 1024 * 1024, 'x');
    for (std::size_t i = 0; i < data.size(); i += 4099) {
        data[i] = static_cast<char>('a' + i % 26);
    }
    Task<std::string> reading = read_all(pair.b);
    auto sending = loop->sock_sendall(pair.a, data);
    run_briefly();
    EXPECT_FALSE(sending.done());  // more than a socket buffer holds
    run(sending);
    ::shutdown(pair.a, SHUT_WR);
    EXPECT_TRUE(run(reading) == data);
}

// test_recvfrom
TEST_F(SockOpsTest, Recvfrom) {
    UdpEchoServer server;
    Fd sock(make_socket(AF_INET, SOCK_DGRAM));
    std::string data(4096, '\x01');
    EXPECT_EQ(run(loop->sock_sendto(sock, data, server.address())), 4096U);
    auto [received, from] = run(loop->sock_recvfrom(sock, 4096));
    EXPECT_EQ(received, data);
    EXPECT_EQ(from, server.address());
}

// test_recvfrom_into, with the nbytes argument.
TEST_F(SockOpsTest, RecvfromInto) {
    UdpEchoServer server;
    Fd sock(make_socket(AF_INET, SOCK_DGRAM));
    std::string data(4096, '\x01');
    std::string buffer(4096, '\0');
    run(loop->sock_sendto(sock, data, server.address()));
    auto [n, from] = run(loop->sock_recvfrom_into(sock, buffer));
    EXPECT_EQ(n, 4096U);
    EXPECT_EQ(buffer, data);
    EXPECT_EQ(from, server.address());

    std::string bigger(8192, '\0');
    run(loop->sock_sendto(sock, data, server.address()));
    auto [m, from2] = run(loop->sock_recvfrom_into(sock, bigger, 4096));
    EXPECT_EQ(m, 4096U);
    EXPECT_EQ(bigger.substr(0, 4096), data);
    EXPECT_EQ(bigger.substr(4096), std::string(4096, '\0'));
    EXPECT_EQ(from2, server.address());

    // asyncio: "nbytes is greater than the length of the buffer".
    try {
        loop->sock_recvfrom_into(sock, buffer, buffer.size() + 1);
        FAIL() << "nbytes beyond the buffer was accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find("nbytes"), std::string::npos);
    }
}

// test_sendto_blocking, with a real would-block instead of a mock: a Unix
// datagram peer whose queue is full makes sendto wait until it drains.
TEST_F(SockOpsTest, SendtoBlocking) {
    std::string tag = "shardloop-sendto-" + std::to_string(::getpid());
    auto a_address = SocketAddress::from_unix_path(std::string(1, '\0') + tag + "-a");
    auto b_address = SocketAddress::from_unix_path(std::string(1, '\0') + tag + "-b");
    Fd a(make_socket(AF_UNIX, SOCK_DGRAM));
    Fd b(make_socket(AF_UNIX, SOCK_DGRAM));
    ASSERT_EQ(::bind(a, a_address.data(), a_address.size()), 0);
    ASSERT_EQ(::bind(b, b_address.data(), b_address.size()), 0);
    ASSERT_EQ(::connect(a, b_address.data(), b_address.size()), 0);
    int queued = 0;
    while (::send(a, "x", 1, 0) == 1) {
        ++queued;
    }
    ASSERT_EQ(errno, EAGAIN);
    std::string data(100, '\x01');
    auto sending = loop->sock_sendto(a, data, b_address);
    run_briefly();
    EXPECT_FALSE(sending.done());
    auto [first, from] = run(loop->sock_recvfrom(b, 4096));
    EXPECT_EQ(first, "x");
    EXPECT_EQ(from, a_address);
    EXPECT_EQ(run(sending), data.size());
    for (int i = 1; i < queued; ++i) {
        ASSERT_EQ(run(loop->sock_recv(b, 4096)), "x");
    }
    EXPECT_EQ(run(loop->sock_recv(b, 4096)), data);
}

// test_selector_events.py test_sock_connect_resolve_using_socket_params:
// a name is resolved with the socket's family and type (asyncio's
// _ensure_resolved), then connected to.
TEST_F(SockOpsTest, SockConnectResolveUsingSocketParams) {
    Listener listener;
    Fd stream(make_socket(AF_INET, SOCK_STREAM));
    run(loop->sock_connect(stream, "localhost", listener.address.port()));
    EXPECT_EQ(peer_address(stream), listener.address);
    auto [conn_fd, peer] = run(loop->sock_accept(listener.fd));
    Fd conn(conn_fd);

    Fd datagram(make_socket(AF_INET, SOCK_DGRAM));
    run(loop->sock_connect(datagram, "localhost", 4321));
    EXPECT_EQ(peer_address(datagram), SocketAddress::from_numeric("127.0.0.1", 4321));

    // The socket's family goes to the resolver: an IPv6 socket cannot have
    // an IPv4 host (without the family it would resolve, then fail to connect).
    Fd v6(make_socket(AF_INET6, SOCK_STREAM));
    EXPECT_THROW(run(loop->sock_connect(v6, "127.0.0.1", 80)), GaiError);
}

// A numeric host needs no resolver and no task.
TEST_F(SockOpsTest, SockConnectToANumericHost) {
    Listener listener;
    Fd sock(make_socket(AF_INET, SOCK_STREAM));
    run(loop->sock_connect(sock, "127.0.0.1", listener.address.port()));
    EXPECT_EQ(peer_address(sock), listener.address);
    auto [conn_fd, peer] = run(loop->sock_accept(listener.fd));
    Fd conn(conn_fd);
}

// The checks asyncio makes before touching the socket.
TEST_F(SockOpsTest, RefusesWhatIsNotAnOpenNonBlockingSocket) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    Fd read_end(fds[0]);
    Fd write_end(fds[1]);
    EXPECT_THROW(loop->sock_recv(read_end, 10), std::invalid_argument);  // not a socket
    EXPECT_THROW(loop->sock_recv(-1, 10), std::invalid_argument);
    int closed = make_socket(AF_INET, SOCK_STREAM);
    ::close(closed);
    EXPECT_THROW(loop->sock_sendall(closed, "x"), std::invalid_argument);
    EXPECT_EQ(loop->reactor().in_flight(), 0U);
}

// An fd a transport owns is refused (RuntimeError naming the transport).
TEST_F(SockOpsTest, RefusesAnFdATransportOwns) {
    SocketPair pair;
    FakeTransport transport;
    auto& net = detail::NetState::of(*loop);
    net.register_transport(pair.a, &transport, nullptr);
    try {
        loop->sock_recv(pair.a, 10);
        ADD_FAILURE() << "no RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_EQ(std::string(e.what()), "File descriptor " + std::to_string(pair.a.fd) +
                                             " is used by transport <FakeTransport>");
    }
    EXPECT_THROW(loop->sock_sendall(pair.a, "x"), RuntimeError);
    net.unregister_transport(pair.a);
    ASSERT_EQ(::write(pair.b, "ok", 2), 2);
    EXPECT_EQ(run(loop->sock_recv(pair.a, 10)), "ok");
}

// asyncio: RuntimeError("Event loop is closed").
TEST_F(SockOpsTest, ClosedLoopRefusesSockOperations) {
    SocketPair pair;
    loop->close();
    testing::expect_throw_with_message<RuntimeError>([&] { loop->sock_recv(pair.a, 1); },
                                                     "Event loop is closed");
    testing::expect_throw_with_message<RuntimeError>([&] { loop->sock_sendall(pair.a, "x"); },
                                                     "Event loop is closed");
    testing::expect_throw_with_message<RuntimeError>([&] { loop->sock_sendfile(pair.a, pair.b); },
                                                     "Event loop is closed");
}

// ---- sock_sendfile: test_sendfile.py, test_base_events.py, test_unix_events.py ----

class SockSendfileTest : public SockOpsTest {
protected:
    void SetUp() override {
        SockOpsTest::SetUp();
        for (int i = 0; i < 8 * 1024; ++i) {
            data += "SendfileBaseData";  // 128 KiB, as SendfileBase.DATA
        }
        file.fd = make_file(dir, "data", data);
        auto [client_fd, server_fd] = tcp_pair();
        sock.fd = client_fd;
        peer.fd = server_fd;
        // A small send buffer, so that sendfile has to wait for room
        // (test_sendfile.py reduce_send_buffer_size). A small receive
        // buffer as well would only add TCP's delayed-ACK stalls.
        int small = 4096;
        ::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        received = read_all(peer);
    }
    void TearDown() override {
        close_fd(sock.fd);
        if (!received.done()) {
            run(received);
        }
        received = {};
        close_fd(peer.fd);
        close_fd(file.fd);
        SockOpsTest::TearDown();  // checks for leaked fds: ours are closed by now
    }

    // Closes the sending side; returns what the peer got.
    std::string finish() {
        close_fd(sock.fd);
        return run(received);
    }

    TempDir dir;
    std::string data;
    Fd file;
    Fd sock;
    Fd peer;
    Task<std::string> received;
};

// test_sock_sendfile_success
TEST_F(SockSendfileTest, SockSendfileSuccess) {
    EXPECT_EQ(run(loop->sock_sendfile(sock, file)), data.size());
    EXPECT_TRUE(finish() == data);
    EXPECT_EQ(file_position(file), static_cast<off_t>(data.size()));
}

// test_sock_sendfile_with_offset_and_count
TEST_F(SockSendfileTest, SockSendfileWithOffsetAndCount) {
    EXPECT_EQ(run(loop->sock_sendfile(sock, file, 1000, 2000)), 2000U);
    EXPECT_EQ(finish(), data.substr(1000, 2000));
    EXPECT_EQ(file_position(file), 3000);
}

// test_sock_sendfile_zero_size
TEST_F(SockSendfileTest, SockSendfileZeroSize) {
    Fd empty(make_file(dir, "empty", ""));
    EXPECT_EQ(run(loop->sock_sendfile(sock, empty, 0, std::nullopt)), 0U);
    EXPECT_EQ(finish(), "");
    EXPECT_EQ(file_position(empty), 0);
}

// test_sock_sendfile_mix_with_regular_send
TEST_F(SockSendfileTest, SockSendfileMixWithRegularSend) {
    std::string buf;
    for (int i = 0; i < 4 * 1024; ++i) {
        buf += "mix_regular_send";  // 64 KiB
    }
    run(loop->sock_sendall(sock, buf));
    EXPECT_EQ(run(loop->sock_sendfile(sock, file)), data.size());
    run(loop->sock_sendall(sock, buf));
    EXPECT_TRUE(finish() == buf + data + buf);
    EXPECT_EQ(file_position(file), static_cast<off_t>(data.size()));
}

// A pipe holding `contents`, its write end closed: a file sendfile(2)
// cannot read from, so sock_sendfile must fall back.
int make_pipe_file(const std::string& contents) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    EXPECT_EQ(::write(fds[1], contents.data(), contents.size()),
              static_cast<ssize_t>(contents.size()));
    ::close(fds[1]);
    return fds[0];
}

// test_base_events.py test_sock_sendfile_fallback: read and send instead.
TEST_F(SockSendfileTest, SockSendfileFallback) {
    std::string contents = data.substr(0, 32 * 1024);  // what a pipe holds
    Fd pipe_file(make_pipe_file(contents));
    EXPECT_EQ(run(loop->sock_sendfile(sock, pipe_file)), contents.size());
    EXPECT_TRUE(finish() == contents);
}

// test_base_events.py test_sock_sendfile_fallback_offset_and_count; a pipe
// has no offset, so only the count part applies.
TEST_F(SockSendfileTest, SockSendfileFallbackCount) {
    std::string contents = data.substr(0, 32 * 1024);
    Fd pipe_file(make_pipe_file(contents));
    EXPECT_EQ(run(loop->sock_sendfile(sock, pipe_file, 0, 2000)), 2000U);
    EXPECT_EQ(finish(), contents.substr(0, 2000));
    char rest[16] = {};
    ASSERT_EQ(::read(pipe_file, rest, 5), 5);  // nothing past the count was taken
    EXPECT_EQ(std::string(rest, 5), contents.substr(2000, 5));
}

// test_base_events.py test_sock_sendfile_no_fallback: the file is left alone.
TEST_F(SockSendfileTest, SockSendfileNoFallback) {
    Fd pipe_file(make_pipe_file("abc"));
    EXPECT_THROW(run(loop->sock_sendfile(sock, pipe_file, 0, std::nullopt,
                                         /*fallback=*/false)),
                 SendfileNotAvailableError);
    EXPECT_EQ(finish(), "");
    char back[4] = {};
    EXPECT_EQ(::read(pipe_file, back, sizeof back), 3);
}

// test_base_events.py test_nonstream_socket, and asyncio's count check.
TEST_F(SockSendfileTest, SockSendfileRefusesBadArguments) {
    Fd udp(make_socket(AF_INET, SOCK_DGRAM));
    testing::expect_throw_with_message<std::invalid_argument>(
        [&] { loop->sock_sendfile(udp, file); }, "only SOCK_STREAM type sockets are supported");
    testing::expect_throw_with_message<std::invalid_argument>(
        [&] { loop->sock_sendfile(sock, file, 0, 0); }, "count must be a positive integer (got 0)");
    EXPECT_EQ(file_position(file), 0);
}

// The peer goes away mid-transfer: the error (not SIGPIPE) reaches the
// caller, and the file position is where the sending stopped.
TEST_F(SockSendfileTest, SockSendfilePeerClosesMidway) {
    std::string big(8 * 1024 * 1024, 'z');
    Fd big_file(make_file(dir, "big", big));
    received.cancel();  // the peer stops reading
    run_briefly();
    auto sending = loop->sock_sendfile(sock, big_file);
    // Let some of it through, then reset the connection.
    std::string first = run(loop->sock_recv(peer, 1024));
    EXPECT_FALSE(first.empty());
    linger reset{.l_onoff = 1, .l_linger = 0};
    ::setsockopt(peer, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close_fd(peer.fd);
    int code = system_error_code(*loop, sending);
    EXPECT_TRUE(code == EPIPE || code == ECONNRESET) << code;
    off_t position = file_position(big_file);
    EXPECT_GT(position, 0);
    EXPECT_LT(position, static_cast<off_t>(big.size()));
}

// sendfile(2) has no MSG_NOSIGNAL: the EPIPE must come without the SIGPIPE
// that would kill a C++ program (Python ignores SIGPIPE; we must not rely on it).
TEST_F(SockSendfileTest, SockSendfileOnAShutSocketFailsWithoutSigpipe) {
    ASSERT_EQ(::shutdown(sock, SHUT_WR), 0);
    EXPECT_EQ(system_error_code(*loop, loop->sock_sendfile(sock, file, 0, std::nullopt,
                                                           /*fallback=*/false)),
              EPIPE);
    EXPECT_EQ(file_position(file), 0);
    sigset_t pending;
    sigemptyset(&pending);
    ASSERT_EQ(sigpending(&pending), 0);
    EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);  // nothing left to go off later
}

// A cancelled sock_sendfile stops, and leaves the file position after what it sent.
TEST_F(SockSendfileTest, CancelledSockSendfileStopsAndUpdatesThePosition) {
    std::string big(8 * 1024 * 1024, 'z');
    Fd big_file(make_file(dir, "big", big));
    auto sending = loop->sock_sendfile(sock, big_file);
    run_briefly();
    ASSERT_FALSE(sending.done());
    sending.cancel();
    off_t position = file_position(big_file);
    EXPECT_GT(position, 0);
    EXPECT_LT(position, static_cast<off_t>(big.size()));
    EXPECT_EQ(finish().size(), static_cast<std::size_t>(position));
}

}  // namespace
}  // namespace shardloop
