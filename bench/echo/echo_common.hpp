// Pieces shared by the reference echo servers and the load generator: error
// exit, number parsing, the file-descriptor limit, and the listening socket.
// Every server gets its listening socket from make_listener() so that the
// socket options, backlog and port report are the same for all of them and
// cannot explain a difference between two servers.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

namespace echo_bench {

// Prints "<program>: <what>: <strerror(err)>" and exits with status 1.
[[noreturn]] inline void die(const char* program, const char* what, int err) {
    std::fprintf(stderr, "%s: %s: %s\n", program, what, std::strerror(err));
    std::exit(1);
}

[[noreturn]] inline void usage_error(const char* program, const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", program, message.c_str());
    std::exit(2);
}

// Parses a whole decimal number in [min, max]; anything else is a usage error.
inline long long parse_number(const char* program, std::string_view flag, const char* text,
                              long long min, long long max) {
    char* end = nullptr;
    errno = 0;
    long long value = std::strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        usage_error(program, std::string(flag) + ": expected a number in [" + std::to_string(min) +
                                 ", " + std::to_string(max) + "], got '" + text + "'");
    }
    return value;
}

// Raises the soft RLIMIT_NOFILE to `wanted` (or to the hard limit when
// wanted is 0). Above the hard limit it tries to raise both, which only a
// privileged process may do; the error then names the limit to ask for.
inline void raise_fd_limit(const char* program, rlim_t wanted = 0) {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        die(program, "getrlimit(RLIMIT_NOFILE)", errno);
    }
    rlim_t target = wanted == 0 ? limit.rlim_max : wanted;
    if (limit.rlim_cur >= target) {
        return;
    }
    limit.rlim_cur = target;
    if (limit.rlim_max < target) {
        limit.rlim_max = target;
    }
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        die(program, ("setrlimit(RLIMIT_NOFILE, " + std::to_string(target) + ")").c_str(), errno);
    }
}

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 0;
    bool reuseport = false;
};

// Parses --host, --port and --reuseport. A flag it does not know is offered
// to `extra` (flag, value or nullptr); `extra` returns how many arguments it
// consumed (0 = unknown flag, a usage error that lists the common flags and
// `extra_usage`).
inline ServerOptions parse_server_options(
    const char* program, int argc, char** argv,
    const std::function<int(std::string_view, const char*)>& extra = {},
    std::string_view extra_usage = {}) {
    ServerOptions options;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if ((flag == "--host" || flag == "--port") && value == nullptr) {
            usage_error(program, std::string(flag) + " needs a value");
        }
        if (flag == "--host") {
            options.host = value;
            ++i;
        } else if (flag == "--port") {
            options.port = static_cast<int>(parse_number(program, flag, value, 0, 65535));
            ++i;
        } else if (flag == "--reuseport") {
            options.reuseport = true;
        } else if (int used = extra ? extra(flag, value) : 0; used > 0) {
            i += used - 1;
        } else {
            usage_error(program, "unknown flag '" + std::string(flag) +
                                     "' (known: --host H --port N --reuseport" +
                                     std::string(extra_usage) + ")");
        }
    }
    return options;
}

// Binds and listens on host:port (IPv4) with SO_REUSEADDR, and SO_REUSEPORT
// when asked, then prints "port=N" as the first stdout line and flushes it:
// the benchmark driver starts servers with --port 0 and reads that line.
inline int make_listener(const char* program, const ServerOptions& options) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die(program, "socket", errno);
    }
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
        die(program, "setsockopt(SO_REUSEADDR)", errno);
    }
    if (options.reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
        die(program, "setsockopt(SO_REUSEPORT)", errno);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(options.port));
    if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
        usage_error(program, "--host: not an IPv4 address: " + options.host);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        die(program, "bind", errno);
    }
    // SOMAXCONN is capped by net.core.somaxconn; the idle-memory run opens
    // 10,000 connections in a burst and a short queue would drop SYNs.
    if (listen(fd, SOMAXCONN) != 0) {
        die(program, "listen", errno);
    }
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        die(program, "getsockname", errno);
    }
    std::printf("port=%d\n", ntohs(addr.sin_port));
    std::fflush(stdout);
    return fd;
}

}  // namespace echo_bench
