#pragma once

// What the end-to-end tests share: the server process (started, waited
// for, killed if a test fails), a blocking client socket with timeouts,
// running the binary to its end, curl.

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifndef SHARDLOOP_HTTPD_BINARY
#error "SHARDLOOP_HTTPD_BINARY must name the shardloop_httpd executable"
#endif
#ifndef SHARDLOOP_HTTPD_TSAN_SUPPRESSIONS
#error "SHARDLOOP_HTTPD_TSAN_SUPPRESSIONS must name tests/tsan.supp"
#endif

#include "temp_dir.hpp"

namespace shardloop::httpd::test_support {

using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

inline double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// What a finished child said and how it ended.
struct Outcome {
    int exit_code = -1;  // -1: killed by a signal or still running
    std::string out;
    std::string err;
};

// Runs the binary with `args` to its end (it must exit within 20 s).
inline Outcome run_binary(const std::vector<std::string>& args) {
    int out_pipe[2];
    int err_pipe[2];
    EXPECT_EQ(::pipe2(out_pipe, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err_pipe, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
        std::vector<char*> argv{const_cast<char*>(SHARDLOOP_HTTPD_BINARY)};
        for (const std::string& arg : args) {
            argv.push_back(const_cast<char*>(arg.c_str()));
        }
        argv.push_back(nullptr);
        ::execv(SHARDLOOP_HTTPD_BINARY, argv.data());
        ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    Outcome outcome;
    auto deadline = Clock::now() + std::chrono::seconds(20);
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int open_pipes = 2;
    while (open_pipes > 0 && Clock::now() < deadline) {
        if (::poll(fds, 2, 100) <= 0) {
            continue;
        }
        for (pollfd& p : fds) {
            if (p.fd >= 0 && (p.revents & (POLLIN | POLLHUP)) != 0) {
                char buffer[4096];
                ssize_t n = ::read(p.fd, buffer, sizeof buffer);
                if (n <= 0) {
                    ::close(p.fd);
                    p.fd = -1;
                    --open_pipes;
                } else {
                    (p.fd == fds[0].fd ? outcome.out : outcome.err).append(buffer, n);
                }
            }
        }
    }
    int status = 0;
    if (open_pipes > 0) {
        ::kill(pid, SIGKILL);
    }
    ::waitpid(pid, &status, 0);
    for (pollfd& p : fds) {
        if (p.fd >= 0) {
            ::close(p.fd);
        }
    }
    if (WIFEXITED(status)) {
        outcome.exit_code = WEXITSTATUS(status);
    }
    return outcome;
}

// The server, running: started with --port 0 plus `args`, ready once it
// printed its port. Killed when the test ends if it is still running.
class Server {
public:
    explicit Server(std::vector<std::string> args) {
        int out_pipe[2];
        EXPECT_EQ(::pipe2(out_pipe, O_CLOEXEC), 0);
        _pid = ::fork();
        if (_pid == 0) {
            ::dup2(out_pipe[1], 1);
            // See tsan.supp: a known false positive outside the server.
            const char* tsan = std::getenv("TSAN_OPTIONS");
            std::string options = std::string(tsan != nullptr ? tsan : "") +
                                  " suppressions=" SHARDLOOP_HTTPD_TSAN_SUPPRESSIONS;
            ::setenv("TSAN_OPTIONS", options.c_str(), 1);
            std::vector<std::string> all{SHARDLOOP_HTTPD_BINARY, "--port", "0"};
            all.insert(all.end(), args.begin(), args.end());
            std::vector<char*> argv;
            for (std::string& arg : all) {
                argv.push_back(arg.data());
            }
            argv.push_back(nullptr);
            ::execv(SHARDLOOP_HTTPD_BINARY, argv.data());
            ::_exit(127);
        }
        ::close(out_pipe[1]);
        _stdout = out_pipe[0];
        // Sanitizer builds start slowly: be generous.
        std::string line = read_line(std::chrono::seconds(30));
        if (line.starts_with("port=")) {
            _port = static_cast<uint16_t>(std::atoi(line.c_str() + 5));
        }
        EXPECT_NE(_port, 0) << "no port= line; got '" << line << "'";
    }
    ~Server() {
        if (_pid > 0 && !_exited) {
            ::kill(_pid, SIGKILL);
            ::waitpid(_pid, nullptr, 0);
        }
        ::close(_stdout);
    }

    uint16_t port() const { return _port; }
    pid_t pid() const { return _pid; }
    void signal(int number) const { ::kill(_pid, number); }

    // The exit status once the process has exited, within `limit`.
    std::optional<int> wait_exit(std::chrono::milliseconds limit) {
        auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            int status = 0;
            pid_t done = ::waitpid(_pid, &status, WNOHANG);
            if (done == _pid) {
                _exited = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return std::nullopt;
    }

    // The server's open file descriptors.
    int fd_count() const {
        std::string dir = "/proc/" + std::to_string(_pid) + "/fd";
        DIR* listing = ::opendir(dir.c_str());
        if (listing == nullptr) {
            return -1;
        }
        int count = 0;
        while (dirent* entry = ::readdir(listing)) {
            count += entry->d_name[0] != '.';
        }
        ::closedir(listing);
        return count;
    }

    // Waits (bounded) until the fd count is at most `target`; returns the last count.
    int wait_fd_count_at_most(int target, std::chrono::milliseconds limit) const {
        auto deadline = Clock::now() + limit;
        int count = fd_count();
        while (count > target && Clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            count = fd_count();
        }
        return count;
    }

    long rss_kib() const {
        std::string path = "/proc/" + std::to_string(_pid) + "/status";
        FILE* file = std::fopen(path.c_str(), "r");
        if (file == nullptr) {
            return -1;
        }
        char line[256];
        long kib = -1;
        while (std::fgets(line, sizeof line, file) != nullptr) {
            if (std::strncmp(line, "VmRSS:", 6) == 0) {
                kib = std::atol(line + 6);
            }
        }
        std::fclose(file);
        return kib;
    }

private:
    std::string read_line(std::chrono::seconds limit) {
        std::string line;
        auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            pollfd p{_stdout, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) {
                continue;
            }
            char c;
            if (::read(_stdout, &c, 1) != 1) {
                break;
            }
            if (c == '\n') {
                return line;
            }
            line.push_back(c);
        }
        return line;
    }

    pid_t _pid = -1;
    int _stdout = -1;
    uint16_t _port = 0;
    bool _exited = false;
};

struct Response {
    int status = 0;
    std::string head;
    std::string body;
    bool has(std::string_view header_line) const {
        return head.find(std::string(header_line) + "\r\n") != std::string::npos;
    }
};

// A blocking client socket with a receive timeout, so that no read hangs.
class Client {
public:
    explicit Client(uint16_t port, int receive_buffer = 0) {
        _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (receive_buffer > 0) {
            ::setsockopt(_fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
            ::setsockopt(_fd, SOL_SOCKET, SO_SNDBUF, &receive_buffer, sizeof receive_buffer);
        }
        timeval timeout{5, 0};
        ::setsockopt(_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(_fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        _connected = ::connect(_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
        EXPECT_TRUE(_connected) << std::strerror(errno);
    }
    ~Client() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }
    int fd() const { return _fd; }

    bool send(std::string_view data) {
        while (!data.empty()) {
            ssize_t n = ::send(_fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }

    // One response (Content-Length framed); status 0 if the connection
    // ended or timed out first.
    Response read_response() {
        Response response;
        std::size_t end;
        while ((end = _buffer.find("\r\n\r\n")) == std::string::npos) {
            if (!fill()) {
                return response;
            }
        }
        response.head = _buffer.substr(0, end + 4);
        _buffer.erase(0, end + 4);
        response.status = std::atoi(response.head.c_str() + 9);
        std::size_t length = 0;
        if (std::size_t at = response.head.find("Content-Length: "); at != std::string::npos) {
            length = std::strtoul(response.head.c_str() + at + 16, nullptr, 10);
        }
        while (_buffer.size() < length) {
            if (!fill()) {
                response.status = 0;
                return response;
            }
        }
        response.body = _buffer.substr(0, length);
        _buffer.erase(0, length);
        return response;
    }

    // Reads and drops `n` bytes of a body (after read_response of a HEAD-less
    // response whose body we do not want to keep).
    std::size_t read_bytes(std::size_t n) {
        std::size_t got = std::min(n, _buffer.size());
        _buffer.erase(0, got);
        char chunk[65536];
        while (got < n) {
            ssize_t r = ::recv(_fd, chunk, std::min(sizeof chunk, n - got), 0);
            if (r <= 0) {
                break;
            }
            got += static_cast<std::size_t>(r);
        }
        return got;
    }

    // Seconds until the server closes the connection (EOF or reset), or -1
    // when it is still open after `limit` seconds.
    double seconds_until_closed(double limit) {
        auto start = Clock::now();
        char chunk[4096];
        while (seconds_since(start) < limit) {
            pollfd p{_fd, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) {
                continue;
            }
            ssize_t n = ::recv(_fd, chunk, sizeof chunk, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                return seconds_since(start);
            }
        }
        return -1;
    }

    // Closes with a reset (SO_LINGER 0) instead of a FIN.
    void reset() {
        linger option{1, 0};
        ::setsockopt(_fd, SOL_SOCKET, SO_LINGER, &option, sizeof option);
        ::close(_fd);
        _fd = -1;
    }

    bool connected() const { return _connected; }

    // The head of a response, its body left unread.
    std::string read_head() {
        std::size_t end;
        while ((end = _buffer.find("\r\n\r\n")) == std::string::npos) {
            if (!fill()) {
                return {};
            }
        }
        std::string head = _buffer.substr(0, end + 4);
        _buffer.erase(0, end + 4);
        return head;
    }

private:
    bool fill() {
        char chunk[65536];
        ssize_t n = ::recv(_fd, chunk, sizeof chunk, 0);
        if (n <= 0) {
            return false;
        }
        _buffer.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    int _fd = -1;
    bool _connected = false;
    std::string _buffer;
};

inline std::string get(std::string_view path, std::string_view extra = {}) {
    return "GET " + std::string(path) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra) + "\r\n";
}

inline bool have_curl() { return std::system("command -v curl > /dev/null 2>&1") == 0; }

// Runs a shell command; its standard output.
inline std::string run(const std::string& command) {
    std::string out;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
        return out;
    }
    char buffer[4096];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
        out.append(buffer, n);
    }
    ::pclose(pipe);
    return out;
}

}  // namespace shardloop::httpd::test_support
