#pragma once

// SocketAddress: what Python passes around as address tuples — an IPv4 or
// IPv6 (host, port), or a Unix socket path — kept as the sockaddr the
// kernel reads and writes, so no conversion happens on the I/O path.

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace shardloop {

class SocketAddress {
public:
    SocketAddress() = default;
    // Copies `length` bytes of `address`; throws std::invalid_argument when
    // they do not fit a sockaddr_storage.
    SocketAddress(const sockaddr* address, socklen_t length);

    // A numeric IPv4 or IPv6 host ("127.0.0.1", "::1", "fe80::1%lo") and a
    // port. Throws std::invalid_argument naming the host when it is not a
    // numeric address (resolve names with EventLoop::getaddrinfo).
    static SocketAddress from_numeric(std::string_view host, uint16_t port);
    // A Unix socket path; a leading '\0' makes it an abstract address.
    // Throws std::invalid_argument when it is longer than sun_path.
    static SocketAddress from_unix_path(std::string_view path);

    int family() const noexcept { return _storage.ss_family; }
    bool empty() const noexcept { return _length == 0; }
    // The numeric host of an IPv4/IPv6 address ("" otherwise).
    std::string host() const;
    // The port of an IPv4/IPv6 address (0 otherwise).
    uint16_t port() const noexcept;
    // The path of a Unix address ("" for an unnamed one).
    std::string unix_path() const;
    // "127.0.0.1:8080", "[::1]:8080", "/run/app.sock", "<unnamed>".
    std::string to_string() const;

    const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&_storage); }
    sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&_storage); }
    socklen_t size() const noexcept { return _length; }
    // For calls that fill the address in (accept, recvfrom, getsockname):
    // set the length to capacity() first, then read it back.
    socklen_t* size_ptr() noexcept { return &_length; }
    static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }
    void set_size(socklen_t length) noexcept { _length = length; }

    friend bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept;

private:
    sockaddr_storage _storage{};
    socklen_t _length = 0;
};

// The local and peer addresses of a socket; -errno as a std::system_error.
SocketAddress local_address(int fd);
SocketAddress peer_address(int fd);

}  // namespace shardloop
