#pragma once

// What EventLoop::getaddrinfo and getnameinfo return. Both run the blocking
// libc resolver on the loop's default executor, never on the loop thread.

#include <netdb.h>
#include <sys/socket.h>

#include <stdexcept>
#include <string>

#include "net/address.hpp"

namespace shardloop {

// One entry of getaddrinfo's answer (Python's 5-tuple).
struct AddrInfo {
    int family = AF_UNSPEC;
    int type = 0;
    int protocol = 0;
    std::string canonname;
    SocketAddress address;
};

// getaddrinfo's filters (Python's keyword arguments).
struct AddrInfoHints {
    int family = AF_UNSPEC;
    int type = 0;
    int protocol = 0;
    int flags = 0;
};

struct NameInfo {
    std::string host;
    std::string service;
};

// Python's socket.gaierror: the resolver's EAI_* code and its message.
class GaiError : public std::runtime_error {
public:
    GaiError(int code, const std::string& what)
        : std::runtime_error(what + ": " + ::gai_strerror(code)), _code(code) {}
    int code() const noexcept { return _code; }

private:
    int _code;
};

}  // namespace shardloop
