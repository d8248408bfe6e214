#pragma once

// The keyword arguments of asyncio's connection, server and endpoint
// methods, as option structs for designated initialisers:
//     loop.create_server(factory, "0.0.0.0", 8080, {.reuse_port = true});
// Every member has an initialiser, even the ones whose default would do:
// g++ 12 warns (-Wmissing-field-initializers) about a designated
// initialiser that skips a member without one.

#include <netdb.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "net/address.hpp"

namespace shardloop {

// A (host, port) pair for local_addr / remote_addr; the host may be a name.
struct HostPort {
    std::string host{};
    uint16_t port = 0;
};

struct ConnectionOptions {
    int family = AF_UNSPEC;
    int proto = 0;
    int flags = 0;  // getaddrinfo flags
    // An already created socket (connected or not: asyncio takes a connected
    // one); host and port must then be empty/0. The transport owns it after.
    int sock = -1;
    std::optional<HostPort> local_addr{};
    // Happy Eyeballs (RFC 8305): start the next address this many seconds
    // after the previous one when it has not connected yet.
    std::optional<double> happy_eyeballs_delay{};
    // Reorder addresses by family, this many of the first family first
    // (0: 1 when happy_eyeballs_delay is set, else none).
    int interleave = 0;
    // On failure, throw every attempt's error (MultipleErrors) instead of one.
    bool all_errors = false;
};

struct ServerOptions {
    int family = AF_UNSPEC;
    int flags = AI_PASSIVE;
    int sock = -1;  // an already bound listening socket; host/port empty then
    int backlog = 100;
    bool reuse_address = true;
    bool reuse_port = false;
    bool keep_alive = false;
    bool start_serving = true;
    // SO_INCOMING_CPU on the listening sockets (-1: not set). Among
    // reuse_port listeners the kernel (Linux 6.1 and newer) gives a new
    // connection to one whose incoming_cpu is the CPU that received the
    // connection's packet, and to the hashed one when none is. A server on
    // a thread pinned to that CPU then serves its connections where their
    // packets are processed. Not an asyncio option.
    int incoming_cpu = -1;
};

struct UnixConnectionOptions {
    int sock = -1;
};

struct UnixServerOptions {
    int sock = -1;
    int backlog = 100;
    bool start_serving = true;
    // Remove the socket file when the server closes (asyncio 3.13's default).
    bool cleanup_socket = true;
};

struct DatagramOptions {
    std::optional<HostPort> local_addr{};
    std::optional<HostPort> remote_addr{};
    int family = AF_UNSPEC;
    int proto = 0;
    int flags = 0;
    bool reuse_port = false;
    bool allow_broadcast = false;
    int sock = -1;
};

}  // namespace shardloop
