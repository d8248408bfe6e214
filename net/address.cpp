#include "net/address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace shardloop {

SocketAddress::SocketAddress(const sockaddr* address, socklen_t length) {
    if (length > sizeof(_storage)) {
        throw std::invalid_argument("SocketAddress: length " + std::to_string(length) +
                                    " exceeds sockaddr_storage");
    }
    std::memcpy(&_storage, address, length);
    _length = length;
}

SocketAddress SocketAddress::from_numeric(std::string_view host, uint16_t port) {
    SocketAddress result;
    std::string text(host);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&result._storage);
    if (::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        result._length = sizeof(sockaddr_in);
        return result;
    }
    // An IPv6 literal, possibly with a %scope (interface name or index).
    std::string address = text;
    uint32_t scope = 0;
    if (auto percent = text.find('%'); percent != std::string::npos) {
        address = text.substr(0, percent);
        std::string zone = text.substr(percent + 1);
        scope = ::if_nametoindex(zone.c_str());
        if (scope == 0) {
            char* end = nullptr;
            unsigned long index = std::strtoul(zone.c_str(), &end, 10);
            if (zone.empty() || *end != '\0') {
                throw std::invalid_argument("SocketAddress: unknown IPv6 scope '" + zone + "'");
            }
            scope = static_cast<uint32_t>(index);
        }
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&result._storage);
    if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        v6->sin6_scope_id = scope;
        result._length = sizeof(sockaddr_in6);
        return result;
    }
    throw std::invalid_argument("SocketAddress: '" + text +
                                "' is not a numeric IPv4 or IPv6 address");
}

SocketAddress SocketAddress::from_unix_path(std::string_view path) {
    SocketAddress result;
    auto* un = reinterpret_cast<sockaddr_un*>(&result._storage);
    if (path.size() >= sizeof(un->sun_path)) {
        throw std::invalid_argument("SocketAddress: Unix socket path too long (" +
                                    std::to_string(path.size()) + " bytes, at most " +
                                    std::to_string(sizeof(un->sun_path) - 1) + ")");
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    // A filesystem path is counted with its terminating NUL; an abstract
    // one (leading NUL) is exactly its bytes.
    bool abstract = !path.empty() && path[0] == '\0';
    result._length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                            (abstract || path.empty() ? 0 : 1));
    return result;
}

std::string SocketAddress::host() const {
    char text[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&_storage)->sin_addr, text,
                    sizeof text);
        return text;
    }
    if (family() == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&_storage);
        ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
        std::string result = text;
        if (v6->sin6_scope_id != 0) {
            char name[IF_NAMESIZE] = {};
            result += '%';
            result += ::if_indextoname(v6->sin6_scope_id, name) != nullptr
                          ? std::string(name)
                          : std::to_string(v6->sin6_scope_id);
        }
        return result;
    }
    return {};
}

uint16_t SocketAddress::port() const noexcept {
    if (family() == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in*>(&_storage)->sin_port);
    }
    if (family() == AF_INET6) {
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&_storage)->sin6_port);
    }
    return 0;
}

std::string SocketAddress::unix_path() const {
    if (family() != AF_UNIX || _length <= offsetof(sockaddr_un, sun_path)) {
        return {};
    }
    const auto* un = reinterpret_cast<const sockaddr_un*>(&_storage);
    std::size_t length = _length - offsetof(sockaddr_un, sun_path);
    if (un->sun_path[0] != '\0') {
        length = ::strnlen(un->sun_path, length);  // drop the terminating NUL
    }
    return std::string(un->sun_path, length);
}

std::string SocketAddress::to_string() const {
    switch (family()) {
        case AF_INET:
            return host() + ":" + std::to_string(port());
        case AF_INET6:
            return "[" + host() + "]:" + std::to_string(port());
        case AF_UNIX: {
            std::string path = unix_path();
            if (path.empty()) {
                return "<unnamed>";
            }
            if (path[0] == '\0') {
                path[0] = '@';  // how ss(8) shows abstract names
            }
            return path;
        }
        default:
            return "<no address>";
    }
}

bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept {
    return a._length == b._length && std::memcmp(&a._storage, &b._storage, a._length) == 0;
}

namespace {

SocketAddress query(int fd, int (*call)(int, sockaddr*, socklen_t*), const char* what) {
    SocketAddress address;
    address.set_size(SocketAddress::capacity());
    if (call(fd, address.data(), address.size_ptr()) != 0) {
        throw std::system_error(errno, std::generic_category(), what);
    }
    return address;
}

}  // namespace

SocketAddress local_address(int fd) { return query(fd, ::getsockname, "getsockname"); }
SocketAddress peer_address(int fd) { return query(fd, ::getpeername, "getpeername"); }

}  // namespace shardloop
