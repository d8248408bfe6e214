#pragma once

// Small socket helpers for the I/O layer: creating non-blocking sockets,
// options, and an owning fd. Errors throw std::system_error with the errno
// and the call's name.

#include <sys/socket.h>
#include <unistd.h>

#include "net/address.hpp"
#include "net/unique_fd.hpp"

namespace shardloop::detail {

// socket(2) with SOCK_NONBLOCK | SOCK_CLOEXEC.
UniqueFd open_socket(int family, int type, int protocol = 0);
void set_socket_option(int fd, int level, int name, int value, const char* what);
int get_socket_option(int fd, int level, int name, const char* what);
// The socket's SO_TYPE; std::invalid_argument naming `what` when fd is not
// an open socket.
int socket_type(int fd, const char* what);
// Throws std::invalid_argument naming `what` unless fd is an open,
// non-blocking socket.
void check_nonblocking_socket(int fd, const char* what);
// Takes a socket the caller made (sock=): it must be an open stream socket
// (of `family`, unless AF_UNSPEC), else std::invalid_argument with asyncio's
// message. A blocking one is made non-blocking, as asyncio calls
// sock.setblocking(False) on it.
void adopt_stream_socket(int fd, const char* what, int family = AF_UNSPEC);
// bind(2); the error names the address ("bind 127.0.0.1:80").
void bind_socket(int fd, const SocketAddress& address);
// std::system_error(errno, "<what> <address>").
[[noreturn]] void throw_socket_error(int error, const char* what, const SocketAddress& address);

}  // namespace shardloop::detail
