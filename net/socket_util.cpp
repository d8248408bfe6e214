#include "net/socket_util.hpp"

#include <fcntl.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace shardloop::detail {

UniqueFd open_socket(int family, int type, int protocol) {
    int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "socket");
    }
    return UniqueFd(fd);
}

void set_socket_option(int fd, int level, int name, int value, const char* what) {
    if (::setsockopt(fd, level, name, &value, sizeof value) != 0) {
        throw std::system_error(errno, std::generic_category(), std::string("setsockopt ") + what);
    }
}

int get_socket_option(int fd, int level, int name, const char* what) {
    int value = 0;
    socklen_t length = sizeof value;
    if (::getsockopt(fd, level, name, &value, &length) != 0) {
        throw std::system_error(errno, std::generic_category(), std::string("getsockopt ") + what);
    }
    return value;
}

int socket_type(int fd, const char* what) {
    if (::fcntl(fd, F_GETFL) < 0) {
        throw std::invalid_argument(std::string(what) + ": fd " + std::to_string(fd) +
                                    " is not open");
    }
    int type = 0;
    socklen_t length = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
        throw std::invalid_argument(std::string(what) + ": fd " + std::to_string(fd) +
                                    " is not a socket");
    }
    return type;
}

void check_nonblocking_socket(int fd, const char* what) {
    socket_type(fd, what);
    if ((::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0) {
        throw std::invalid_argument(std::string(what) + ": the socket must be non-blocking");
    }
}

void adopt_stream_socket(int fd, const char* what, int family) {
    int type = socket_type(fd, what);
    if (family == AF_UNIX && (type != SOCK_STREAM || get_socket_option(fd, SOL_SOCKET, SO_DOMAIN,
                                                                       "SO_DOMAIN") != AF_UNIX)) {
        throw std::invalid_argument(std::string(what) +
                                    ": A UNIX Domain Stream Socket was expected");
    }
    if (type != SOCK_STREAM) {
        throw std::invalid_argument(std::string(what) + ": A Stream Socket was expected");
    }
    int flags = ::fcntl(fd, F_GETFL);
    if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        throw std::system_error(errno, std::generic_category(), std::string(what) + ": fcntl");
    }
}

void throw_socket_error(int error, const char* what, const SocketAddress& address) {
    throw std::system_error(error, std::generic_category(),
                            std::string(what) + " " + address.to_string());
}

void bind_socket(int fd, const SocketAddress& address) {
    if (::bind(fd, address.data(), address.size()) != 0) {
        throw_socket_error(errno, "bind", address);
    }
}

}  // namespace shardloop::detail
