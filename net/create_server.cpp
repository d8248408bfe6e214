// EventLoop::create_server and create_unix_server: bind the listening
// sockets as asyncio does (every address of every host, IPv6 sockets
// V6ONLY so that IPv4 and IPv6 can share a port), then hand them to a
// Server, which accepts once serving starts.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "net/dns.hpp"
#include "net/listener.hpp"
#include "net/net_options.hpp"
#include "net/server.hpp"
#include "net/socket_util.hpp"
#include "runtime/errors.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/sleep.hpp"

namespace shardloop {

namespace detail {

namespace {

// One listening socket for `info`, with the server's options.
UniqueFd bind_listening_socket(const AddrInfo& info, const ServerOptions& options) {
    UniqueFd fd = open_socket(info.family, SOCK_STREAM, info.protocol);
    if (options.reuse_address) {
        set_socket_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    }
    if (options.reuse_port) {
        set_socket_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
    }
    if (options.incoming_cpu >= 0) {
        set_socket_option(fd.get(), SOL_SOCKET, SO_INCOMING_CPU, options.incoming_cpu,
                          "SO_INCOMING_CPU");
    }
    if (options.keep_alive) {
        set_socket_option(fd.get(), SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
    }
    if (info.family == AF_INET6) {
        // Without it, binding :: takes the IPv4 port too and the 0.0.0.0
        // socket of the same server fails (asyncio sets it likewise).
        set_socket_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    }
    if (::bind(fd.get(), info.address.data(), info.address.size()) != 0) {
        // std::system_error appends the errno's text itself ("...: Address
        // already in use"); asyncio's message carries it once.
        throw std::system_error(
            errno, std::generic_category(),
            "error while attempting to bind on address " + info.address.to_string());
    }
    return fd;
}

// The sockets listen once the server starts serving (Server::start_listeners),
// as asyncio's Server._start_serving does: until then a client is refused,
// not left waiting in a backlog nobody accepts from.
std::shared_ptr<Server> make_server(EventLoop& loop, ProtocolFactory factory, int backlog,
                                    std::vector<UniqueFd>& sockets) {
    auto server = std::make_shared<Server>(loop, std::move(factory), backlog);
    for (UniqueFd& fd : sockets) {
        server->add_listener(std::make_shared<Listener>(loop, *server, fd.release()));
    }
    return server;
}

}  // namespace

}  // namespace detail

Future<std::shared_ptr<Server>> EventLoop::create_server(ProtocolFactory factory, std::string host,
                                                         uint16_t port) {
    return create_server(std::move(factory), std::move(host), port, ServerOptions{});
}

Future<std::shared_ptr<Server>> EventLoop::create_server(ProtocolFactory factory, std::string host,
                                                         uint16_t port, ServerOptions options) {
    std::vector<std::string> hosts;
    if (!host.empty()) {
        hosts.push_back(std::move(host));
    }
    return create_server(std::move(factory), std::move(hosts), port, options);
}

Future<std::shared_ptr<Server>> EventLoop::create_server(ProtocolFactory factory,
                                                         std::vector<std::string> hosts,
                                                         uint16_t port, ServerOptions options) {
    check_closed();
    if (!factory) {
        throw std::invalid_argument("create_server: protocol_factory is empty");
    }
    if (options.backlog < 0) {
        throw std::invalid_argument("create_server: backlog must be >= 0");
    }
    // The kernel takes any number and would silently never match it.
    long cpus = ::sysconf(_SC_NPROCESSORS_CONF);
    if (options.incoming_cpu < -1 || options.incoming_cpu >= cpus) {
        throw std::invalid_argument("create_server: incoming_cpu must be -1 or a CPU below " +
                                    std::to_string(cpus) + ", not " +
                                    std::to_string(options.incoming_cpu));
    }
    if (options.sock >= 0) {
        if (!hosts.empty() || port != 0) {
            throw std::invalid_argument("host/port and sock can not be specified at the same time");
        }
        detail::adopt_stream_socket(options.sock, "create_server");
    }
    return create_task(
        [this, factory = std::move(factory), hosts = std::move(hosts), port, options]() mutable {
            std::vector<detail::UniqueFd> sockets;
            if (options.sock >= 0) {
                sockets.emplace_back(options.sock);
                if (options.incoming_cpu >= 0) {
                    detail::set_socket_option(options.sock, SOL_SOCKET, SO_INCOMING_CPU,
                                              options.incoming_cpu, "SO_INCOMING_CPU");
                }
            } else {
                if (hosts.empty()) {
                    hosts.emplace_back();  // every interface: getaddrinfo(None, port, AI_PASSIVE)
                }
                AddrInfoHints hints{.family = options.family,
                                    .type = SOCK_STREAM,
                                    .protocol = 0,
                                    .flags = options.flags};
                std::vector<AddrInfo> infos;
                std::set<std::pair<int, std::string>> seen;
                for (const std::string& host : hosts) {
                    for (AddrInfo& info : await(getaddrinfo(host, std::to_string(port), hints))) {
                        auto key = std::make_pair(info.family, info.address.to_string());
                        if (seen.insert(key).second) {
                            infos.push_back(std::move(info));
                        }
                    }
                }
                for (const AddrInfo& info : infos) {
                    if (info.family == AF_INET6 && options.family == AF_UNSPEC) {
                        // A host without IPv6 support still serves IPv4 (asyncio
                        // skips the address when the socket cannot be created).
                        int probe = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        if (probe < 0) {
                            continue;
                        }
                        ::close(probe);
                    }
                    sockets.push_back(detail::bind_listening_socket(info, options));
                }
                if (sockets.empty()) {
                    throw std::system_error(EADDRNOTAVAIL, std::generic_category(),
                                            "create_server: no address to listen on");
                }
            }
            std::shared_ptr<Server> server =
                detail::make_server(*this, std::move(factory), options.backlog, sockets);
            if (options.start_serving) {
                server->start_listeners();
                shardloop::yield_now();  // asyncio's `await tasks.sleep(0)`
            }
            return server;
        });
}

Future<std::shared_ptr<Server>> EventLoop::create_unix_server(ProtocolFactory factory,
                                                              std::string path) {
    return create_unix_server(std::move(factory), std::move(path), UnixServerOptions{});
}

Future<std::shared_ptr<Server>> EventLoop::create_unix_server(ProtocolFactory factory,
                                                              std::string path,
                                                              UnixServerOptions options) {
    check_closed();
    if (!factory) {
        throw std::invalid_argument("create_unix_server: protocol_factory is empty");
    }
    std::vector<detail::UniqueFd> sockets;
    if (options.sock >= 0) {
        if (!path.empty()) {
            throw std::invalid_argument("path and sock can not be specified at the same time");
        }
        detail::adopt_stream_socket(options.sock, "create_unix_server", AF_UNIX);
        sockets.emplace_back(options.sock);
        if (options.cleanup_socket) {
            path = local_address(options.sock).unix_path();
        }
    } else {
        if (path.empty()) {
            throw std::invalid_argument("path was not specified, and no sock specified");
        }
        SocketAddress address = SocketAddress::from_unix_path(path);
        if (path[0] != '\0') {
            // A stale socket file from an earlier run is removed (asyncio
            // 3.13 does so); anything else at the path is an error at bind.
            struct stat info {};
            if (::stat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode)) {
                ::unlink(path.c_str());
            }
        }
        detail::UniqueFd fd = detail::open_socket(AF_UNIX, SOCK_STREAM);
        if (::bind(fd.get(), address.data(), address.size()) != 0) {
            int error = errno;
            throw std::system_error(error, std::generic_category(),
                                    "Address '" + path + "' is already in use or unusable");
        }
        sockets.push_back(std::move(fd));
    }
    std::shared_ptr<Server> server =
        detail::make_server(*this, std::move(factory), options.backlog, sockets);
    if (options.cleanup_socket && !path.empty() && path[0] != '\0') {
        server->remove_on_close(path);
    }
    if (options.start_serving) {
        server->start_listeners();
    }
    Future<std::shared_ptr<Server>> done = create_future<std::shared_ptr<Server>>();
    done.set_result(server);
    return done;
}

}  // namespace shardloop
