#pragma once

// Helpers shared by the server and connection tests: a protocol that
// records what its transport told it, owned raw sockets for the other end,
// socket options and addresses, Unix socket paths, a listener that
// blackholes connections, and a process-private /etc/hosts with names that
// resolve to several loopback addresses (Happy Eyeballs and the error
// aggregation of create_connection need a host with more than one address).

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "net/unique_fd.hpp"
#include "shardloop.hpp"

namespace shardloop::testing {

// Owns a raw fd (the far end of a connection, a socket handed to the loop
// later, ...) and closes it unless released.
using OwnedFd = detail::UniqueFd;

// Records every call its transport makes; echoes what it receives when
// asked to. Keeps the transport after connection_lost for inspection (the
// transport has dropped the protocol by then: no cycle remains).
class RecordingProtocol : public Protocol {
public:
    explicit RecordingProtocol(bool echo = false) : echo(echo) {}

    void connection_made(std::shared_ptr<BaseTransport> base) override {
        transport = transport_cast<Transport>(base);
        made = true;
    }
    void data_received(std::string_view data) override {
        received.append(data);
        if (echo) {
            transport->write(data);
        }
    }
    bool eof_received() override {
        eof = true;
        return false;
    }
    void connection_lost(std::exception_ptr exc) override {
        lost = true;
        error = exc;
    }

    bool echo;
    std::shared_ptr<Transport> transport;
    std::string received;
    bool made = false;
    bool eof = false;
    bool lost = false;
    std::exception_ptr error;
};

// A protocol factory that keeps every protocol it made, in order.
struct ProtocolLog {
    bool echo = false;
    std::vector<std::shared_ptr<RecordingProtocol>> protocols{};

    ProtocolFactory factory() {
        return [this] {
            auto protocol = std::make_shared<RecordingProtocol>(echo);
            protocols.push_back(protocol);
            return protocol;
        };
    }
};

inline int int_option(int fd, int level, int name) {
    int value = -1;
    socklen_t length = sizeof value;
    EXPECT_EQ(::getsockopt(fd, level, name, &value, &length), 0) << std::strerror(errno);
    return value;
}

// The backlog a listening socket was given: Linux reports it in the
// tcpi_sacked field of TCP_INFO while the socket is in the LISTEN state.
inline unsigned listen_backlog(int fd) {
    tcp_info info{};
    socklen_t length = sizeof info;
    EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length), 0) << std::strerror(errno);
    return info.tcpi_sacked;
}

inline OwnedFd raw_socket(int family, int type = SOCK_STREAM) {
    int fd = ::socket(family, type | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    return OwnedFd(fd);
}

// connect(2) on a blocking socket; 0 or the errno. To a loopback listener
// the handshake completes in the kernel, whether or not anyone accepts.
inline int connect_errno(int fd, const SocketAddress& to) {
    return ::connect(fd, to.data(), to.size()) == 0 ? 0 : errno;
}

// A client socket of `to`'s family connected to it (the test fails if not).
inline OwnedFd connect_client(const SocketAddress& to) {
    OwnedFd fd = raw_socket(to.family());
    int error = connect_errno(fd.get(), to);
    EXPECT_EQ(error, 0) << "connect " << to.to_string() << ": " << std::strerror(error);
    return fd;
}

// What connecting to `to` now gives: 0 or the errno.
inline int try_connect(const SocketAddress& to) {
    OwnedFd fd = raw_socket(to.family());
    return connect_errno(fd.get(), to);
}

inline void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        ASSERT_GT(n, 0) << std::strerror(errno);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Appends what `fd` has to read now to `into`, without blocking. Returns
// false once the peer has closed (EOF or reset).
inline bool read_available(int fd, std::string& into) {
    char buffer[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n > 0) {
            into.append(buffer, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) {
            return false;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
}

// A port free on every IPv4 and IPv6 address at the time of the call.
inline uint16_t free_dual_stack_port() {
    OwnedFd probe = raw_socket(AF_INET6);
    int off = 0;
    ::setsockopt(probe.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    SocketAddress any = SocketAddress::from_numeric("::", 0);
    EXPECT_EQ(::bind(probe.get(), any.data(), any.size()), 0) << std::strerror(errno);
    return local_address(probe.get()).port();
}

// Holds a port without listening on it, on every IPv4 and IPv6 address:
// a connection to any loopback address at that port is refused at once.
class ClosedPort {
public:
    ClosedPort() : _fd(raw_socket(AF_INET6)) {
        int off = 0;
        ::setsockopt(_fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        SocketAddress any = SocketAddress::from_numeric("::", 0);
        EXPECT_EQ(::bind(_fd.get(), any.data(), any.size()), 0) << std::strerror(errno);
        _port = local_address(_fd.get()).port();
    }
    uint16_t port() const noexcept { return _port; }

private:
    OwnedFd _fd;
    uint16_t _port = 0;
};

// A listening socket whose accept queue is full and never drained: the
// kernel drops the SYN of any further connect, which then hangs (until the
// SYN is retransmitted a second later, and dropped again), as a connect to
// an address that blackholes does. The constructor checks that a connect
// really hangs here.
class Blackhole {
public:
    explicit Blackhole(const SocketAddress& where) : _listener(raw_socket(where.family())) {
        int one = 1;
        ::setsockopt(_listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        EXPECT_EQ(::bind(_listener.get(), where.data(), where.size()), 0)
            << where.to_string() << ": " << std::strerror(errno);
        EXPECT_EQ(::listen(_listener.get(), 0), 0) << std::strerror(errno);
        _address = local_address(_listener.get());
        for (int i = 0; i < 8 && !_hangs; ++i) {
            OwnedFd client = raw_socket(where.family(), SOCK_STREAM | SOCK_NONBLOCK);
            int error = connect_errno(client.get(), _address);
            if (error == 0) {
                _fillers.push_back(std::move(client));
                continue;
            }
            if (error != EINPROGRESS) {
                ADD_FAILURE() << "connect " << _address.to_string() << ": " << std::strerror(error);
                break;
            }
            pollfd waiting{client.get(), POLLOUT, 0};
            if (::poll(&waiting, 1, 200) == 0) {
                _hangs = true;  // no answer in 200 ms: the queue is full
            } else {
                _fillers.push_back(std::move(client));
            }
        }
        EXPECT_TRUE(_hangs) << "a connect to a full accept queue did not hang here";
    }
    const SocketAddress& address() const noexcept { return _address; }

private:
    OwnedFd _listener;
    std::vector<OwnedFd> _fillers;
    SocketAddress _address;
    bool _hangs = false;
};

// A fresh Unix socket path under /tmp, removed (if still there) on
// destruction.
class UnixPath {
public:
    explicit UnixPath(const char* tag) {
        static std::atomic<int> counter{0};
        _path = "/tmp/shardloop-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
                "-" + tag + ".sock";
        ::unlink(_path.c_str());
    }
    ~UnixPath() { ::unlink(_path.c_str()); }
    UnixPath(const UnixPath&) = delete;
    UnixPath& operator=(const UnixPath&) = delete;

    const std::string& str() const noexcept { return _path; }
    bool exists() const {
        struct stat info {};
        return ::lstat(_path.c_str(), &info) == 0;
    }
    bool is_socket() const {
        struct stat info {};
        return ::lstat(_path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode);
    }

private:
    std::string _path;
};

// Names the test hosts file adds. Each resolves to loopback addresses only.
inline constexpr const char* two_v4_host = "two-v4.shardloop.test";      // 127.0.0.2, 127.0.0.3
inline constexpr const char* three_v4_host = "three-v4.shardloop.test";  // 127.0.0.2 to .4
// ::1, 127.0.0.2, 127.0.0.3, ::ffff:127.0.0.5 (an IPv4-mapped IPv6 address)
inline constexpr const char* mixed_host = "mixed.shardloop.test";

// Gives this process a private mount namespace in which /etc/hosts is the
// system's plus the names above, so that getaddrinfo (run on the loop's
// executor threads, started after this) answers them from the files
// backend. Nothing outside this process sees the change, and it ends with
// the process. Call it from the test's thread before the loop resolves
// anything. Returns false where it cannot be done (not root, no mount
// namespaces); the test should then skip.
inline bool use_test_hosts() {
    static const bool installed = [] {
        std::ifstream system_hosts("/etc/hosts");
        std::stringstream content;
        content << system_hosts.rdbuf();
        content << "\n# added by shardloop's tests (private mount namespace)\n"
                << "127.0.0.2 " << two_v4_host << "\n"
                << "127.0.0.3 " << two_v4_host << "\n"
                << "127.0.0.2 " << three_v4_host << "\n"
                << "127.0.0.3 " << three_v4_host << "\n"
                << "127.0.0.4 " << three_v4_host << "\n"
                << "::1 " << mixed_host << "\n"
                << "127.0.0.2 " << mixed_host << "\n"
                << "127.0.0.3 " << mixed_host << "\n"
                << "::ffff:127.0.0.5 " << mixed_host << "\n";
        char path[] = "/tmp/shardloop-hosts-XXXXXX";
        int fd = ::mkstemp(path);
        if (fd < 0) {
            return false;
        }
        std::string text = content.str();
        bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        ::close(fd);
        // MS_PRIVATE first: with / shared, the bind mount would propagate
        // back to the namespace this process came from.
        bool ok = written && ::unshare(CLONE_NEWNS) == 0 &&
                  ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
                  ::mount(path, "/etc/hosts", nullptr, MS_BIND, nullptr) == 0;
        ::unlink(path);
        return ok;
    }();
    return installed;
}

// This process's resident set size, in KiB (VmRSS of /proc/self/status).
inline long resident_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::strtol(line.c_str() + 6, nullptr, 10);
        }
    }
    ADD_FAILURE() << "no VmRSS in /proc/self/status";
    return 0;
}

// The errno of a std::system_error behind `error` (-1 for anything else).
inline int errno_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        return e.code().value();
    } catch (...) {
        return -1;
    }
}

}  // namespace shardloop::testing
