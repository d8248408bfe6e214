// EventLoop::create_datagram_endpoint: asyncio's base_events
// create_datagram_endpoint, run as a task. Numeric hosts need no resolver
// (asyncio's _ipaddr_info); names go through loop.getaddrinfo.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "net/address.hpp"
#include "net/datagram_transport.hpp"
#include "net/dns.hpp"
#include "net/net_options.hpp"
#include "net/socket_util.hpp"
#include "net/transports.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/log.hpp"
#include "runtime/task.hpp"

namespace shardloop {

namespace {

using detail::UniqueFd;

// What one socket is tried with: asyncio's ((family, proto), (local, remote)).
struct AddressPair {
    int family = AF_UNSPEC;
    int proto = 0;
    std::optional<SocketAddress> local;
    std::optional<SocketAddress> remote;
};

// How Python prints the tuple, for messages.
std::string describe(const HostPort& address) {
    return "('" + address.host + "', " + std::to_string(address.port) + ")";
}

// asyncio refuses every address option next to sock=, naming them.
void check_sock_alone(const DatagramOptions& options) {
    std::vector<std::string> problems;
    if (options.local_addr) {
        problems.push_back("local_addr=" + describe(*options.local_addr));
    }
    if (options.remote_addr) {
        problems.push_back("remote_addr=" + describe(*options.remote_addr));
    }
    if (options.family != AF_UNSPEC) {
        problems.push_back("family=" + std::to_string(options.family));
    }
    if (options.proto != 0) {
        problems.push_back("proto=" + std::to_string(options.proto));
    }
    if (options.flags != 0) {
        problems.push_back("flags=" + std::to_string(options.flags));
    }
    if (options.reuse_port) {
        problems.push_back("reuse_port=True");
    }
    if (options.allow_broadcast) {
        problems.push_back("allow_broadcast=True");
    }
    if (problems.empty()) {
        return;
    }
    std::string list;
    for (const std::string& problem : problems) {
        list += (list.empty() ? "" : ", ") + problem;
    }
    throw std::invalid_argument(
        "socket modifier keyword arguments can not be used when sock is specified. (" + list + ")");
}

// The caller's socket, checked and made non-blocking (asyncio's
// sock.setblocking(False)). The endpoint owns it from here on.
UniqueFd adopt_socket(int sock, const DatagramOptions& options) {
    int type = detail::get_socket_option(sock, SOL_SOCKET, SO_TYPE, "SO_TYPE");
    if (type == SOCK_STREAM) {
        throw std::invalid_argument("A datagram socket was expected, got fd " +
                                    std::to_string(sock));
    }
    check_sock_alone(options);
    int flags = ::fcntl(sock, F_GETFL);
    if (flags < 0 || ::fcntl(sock, F_SETFL, flags | O_NONBLOCK) != 0) {
        throw std::system_error(errno, std::generic_category(), "fcntl O_NONBLOCK");
    }
    return UniqueFd(sock);
}

// asyncio removes a stale socket file before binding a Unix endpoint.
void remove_stale_unix_socket(const std::string& path) {
    if (path.empty() || path[0] == '\0') {
        return;  // unnamed or abstract: nothing on disk
    }
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0) {
        if (S_ISSOCK(info.st_mode) && ::unlink(path.c_str()) != 0) {
            shardloop::log(LogLevel::error, "Unable to check or remove stale UNIX socket '" + path +
                                                "': " + std::strerror(errno));
        }
    } else if (errno != ENOENT) {
        shardloop::log(LogLevel::error, "Unable to check or remove stale UNIX socket '" + path +
                                            "': " + std::strerror(errno));
    }
}

// asyncio's _ensure_resolved: a numeric host of the wanted family is taken
// as it is; anything else asks the resolver.
std::vector<AddrInfo> resolve(EventLoop& loop, const HostPort& address,
                              const DatagramOptions& options) {
    bool known_proto =
        options.proto == 0 || options.proto == IPPROTO_UDP || options.proto == IPPROTO_TCP;
    if (!address.host.empty() && known_proto) {
        try {
            SocketAddress numeric = SocketAddress::from_numeric(address.host, address.port);
            if (options.family == AF_UNSPEC || options.family == numeric.family()) {
                // Like _ipaddr_info, the protocol of a datagram is UDP.
                return {AddrInfo{numeric.family(), SOCK_DGRAM, IPPROTO_UDP, "", numeric}};
            }
        } catch (const std::invalid_argument&) {
            // Not numeric: a name for the resolver.
        }
    }
    std::vector<AddrInfo> infos = await(loop.getaddrinfo(address.host, std::to_string(address.port),
                                                         AddrInfoHints{.family = options.family,
                                                                       .type = SOCK_DGRAM,
                                                                       .protocol = options.proto,
                                                                       .flags = options.flags}));
    if (infos.empty()) {
        throw std::runtime_error("getaddrinfo() returned empty list");
    }
    return infos;
}

// The (local, remote) pairs to try, grouped by (family, proto) in the
// resolver's order; a pair lacking an address that was asked for is dropped.
std::vector<AddressPair> address_pairs(EventLoop& loop, const DatagramOptions& options) {
    if (!options.local_addr && !options.remote_addr) {
        if (options.family == AF_UNSPEC) {
            throw std::invalid_argument("unexpected address family");
        }
        return {AddressPair{options.family, options.proto, {}, {}}};
    }
    if (options.family == AF_UNIX) {
        // The host is the path; the port means nothing.
        AddressPair pair{AF_UNIX, options.proto, {}, {}};
        if (options.local_addr) {
            remove_stale_unix_socket(options.local_addr->host);
            pair.local = SocketAddress::from_unix_path(options.local_addr->host);
        }
        if (options.remote_addr) {
            pair.remote = SocketAddress::from_unix_path(options.remote_addr->host);
        }
        return {pair};
    }
    std::vector<AddressPair> pairs;
    auto add = [&](const HostPort& address, bool local) {
        for (AddrInfo& info : resolve(loop, address, options)) {
            AddressPair* pair = nullptr;
            for (AddressPair& existing : pairs) {
                if (existing.family == info.family && existing.proto == info.protocol) {
                    pair = &existing;
                }
            }
            if (pair == nullptr) {
                pair = &pairs.emplace_back(AddressPair{info.family, info.protocol, {}, {}});
            }
            std::optional<SocketAddress>& slot = local ? pair->local : pair->remote;
            if (!slot) {
                slot = info.address;  // the first address of a family wins, as in asyncio
            }
        }
    };
    if (options.local_addr) {
        add(*options.local_addr, true);
    }
    if (options.remote_addr) {
        add(*options.remote_addr, false);
    }
    std::erase_if(pairs, [&](const AddressPair& pair) {
        return (options.local_addr && !pair.local) || (options.remote_addr && !pair.remote);
    });
    if (pairs.empty()) {
        throw std::invalid_argument("can not get address information");
    }
    return pairs;
}

// One socket set up for `pair`. connect() on a datagram socket only
// records the peer, so it never waits and needs no reactor.
UniqueFd open_endpoint_socket(const AddressPair& pair, const DatagramOptions& options) {
    UniqueFd fd = detail::open_socket(pair.family, SOCK_DGRAM, pair.proto);
    if (options.reuse_port) {
        detail::set_socket_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    }
    if (options.allow_broadcast) {
        detail::set_socket_option(fd.get(), SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST");
    }
    if (pair.local) {
        detail::bind_socket(fd.get(), *pair.local);
    }
    // With allow_broadcast, asyncio keeps the remote address for sendto()
    // but does not connect: replies may come from any host.
    if (pair.remote && !options.allow_broadcast &&
        ::connect(fd.get(), pair.remote->data(), pair.remote->size()) != 0) {
        detail::throw_socket_error(errno, "connect", *pair.remote);
    }
    return fd;
}

// asyncio's debug-mode line: info when a local address was asked for.
void log_created(const DatagramOptions& options, const DatagramTransport& transport) {
    std::string remote = options.remote_addr ? describe(*options.remote_addr) : "None";
    if (options.local_addr) {
        shardloop::log(LogLevel::info,
                       "Datagram endpoint local_addr=" + describe(*options.local_addr) +
                           " remote_addr=" + remote + " created: " + transport.repr());
    } else {
        shardloop::log(LogLevel::debug,
                       "Datagram endpoint remote_addr=" + remote + " created: " + transport.repr());
    }
}

Connection<DatagramTransport> open_datagram_endpoint(EventLoop& loop,
                                                     const ProtocolFactory& factory,
                                                     const DatagramOptions& options) {
    UniqueFd sock;
    std::optional<SocketAddress> remote;
    if (options.sock >= 0) {
        sock = adopt_socket(options.sock, options);
    } else {
        std::exception_ptr first_error;
        for (const AddressPair& pair : address_pairs(loop, options)) {
            try {
                sock = open_endpoint_socket(pair, options);
                remote = pair.remote;
                break;
            } catch (const std::system_error&) {
                if (!first_error) {
                    first_error = std::current_exception();
                }
            }
        }
        if (!sock) {
            std::rethrow_exception(first_error);  // asyncio raises the first attempt's error
        }
    }

    std::shared_ptr<BaseProtocol> protocol = factory();
    Future<void> waiter = loop.create_future<void>();
    auto transport =
        detail::SocketDatagramTransport::start(loop, std::move(sock), protocol, remote, waiter);
    if (loop.get_debug()) {
        log_created(options, *transport);
    }
    try {
        await(waiter);
    } catch (...) {
        transport->close();  // cancelled, or the loop is closing
        throw;
    }
    return Connection<DatagramTransport>{transport, protocol};
}

}  // namespace

Future<Connection<DatagramTransport>> EventLoop::create_datagram_endpoint(ProtocolFactory factory,
                                                                          DatagramOptions options) {
    return create_task([this, factory = std::move(factory), options = std::move(options)] {
        return open_datagram_endpoint(*this, factory, options);
    });
}

}  // namespace shardloop
