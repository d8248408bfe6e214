// EventLoop::create_connection, create_unix_connection and
// connect_accepted_socket: resolve, connect (Happy Eyeballs when asked),
// wrap the socket in a StreamTransport, and complete once the protocol's
// connection_made() has run — asyncio's base_events.py order.

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "net/dns.hpp"
#include "net/net_options.hpp"
#include "net/socket_util.hpp"
#include "net/stream_transport.hpp"
#include "runtime/errors.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/gather.hpp"
#include "runtime/sleep.hpp"
#include "runtime/wait_for.hpp"

namespace shardloop {

namespace detail {

namespace {

std::string describe(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

// asyncio's _interleave_addrinfos: first `first_family_count` of the first
// family, then alternate families, so that a broken family costs one
// attempt, not all of them.
std::vector<AddrInfo> interleave(const std::vector<AddrInfo>& infos, int first_family_count) {
    std::vector<int> order;
    std::map<int, std::vector<AddrInfo>> by_family;
    for (const AddrInfo& info : infos) {
        if (!by_family.contains(info.family)) {
            order.push_back(info.family);
        }
        by_family[info.family].push_back(info);
    }
    std::vector<AddrInfo> result;
    std::vector<std::size_t> next(order.size(), 0);
    if (!order.empty() && first_family_count > 1) {
        auto& first = by_family[order[0]];
        std::size_t n = std::min<std::size_t>(first_family_count - 1, first.size());
        result.insert(result.end(), first.begin(), first.begin() + static_cast<long>(n));
        next[0] = n;
    }
    bool any = true;
    while (any) {
        any = false;
        for (std::size_t f = 0; f < order.size(); ++f) {
            auto& list = by_family[order[f]];
            if (next[f] < list.size()) {
                result.push_back(list[next[f]++]);
                any = true;
            }
        }
    }
    return result;
}

// asyncio's error for a failed attempt set: the one error; every error in
// an ExceptionGroup (all_errors); the first when they all read the same;
// else one OSError listing them.
[[noreturn]] void raise_connect_errors(std::vector<std::exception_ptr> errors, bool all_errors) {
    if (errors.empty()) {
        throw std::system_error(ECONNREFUSED, std::generic_category(), "no address to connect to");
    }
    if (all_errors) {
        throw ExceptionGroup("create_connection failed", std::move(errors));
    }
    if (errors.size() == 1) {
        std::rethrow_exception(errors.front());
    }
    std::string first = describe(errors.front());
    bool same = std::all_of(errors.begin(), errors.end(),
                            [&](const std::exception_ptr& e) { return describe(e) == first; });
    if (same) {
        std::rethrow_exception(errors.front());
    }
    std::string text = "Multiple exceptions: ";
    for (std::size_t i = 0; i < errors.size(); ++i) {
        text += (i == 0 ? "" : ", ") + describe(errors[i]);
    }
    throw std::system_error(ECONNREFUSED, std::generic_category(), text);
}

// One attempt: a socket of the address's family, bound to a local address
// of the same family when asked, connected. Returns the fd; throws the error.
int connect_one(EventLoop& loop, const AddrInfo& info, const std::vector<AddrInfo>& local) {
    UniqueFd fd = open_socket(info.family, info.type, info.protocol);
    if (!local.empty()) {
        std::exception_ptr bind_error;
        bool bound = false;
        for (const AddrInfo& candidate : local) {
            if (candidate.family != info.family) {
                continue;
            }
            if (::bind(fd.get(), candidate.address.data(), candidate.address.size()) == 0) {
                bound = true;
                break;
            }
            bind_error = std::make_exception_ptr(std::system_error(
                errno, std::generic_category(),
                "error while attempting to bind on address " + candidate.address.to_string()));
        }
        if (!bound) {
            if (bind_error) {
                std::rethrow_exception(bind_error);
            }
            throw std::system_error(
                EADDRNOTAVAIL, std::generic_category(),
                "no matching local address with family " + std::to_string(info.family) + " found");
        }
    }
    await(loop.sock_connect(fd.get(), info.address));
    return fd.release();
}

// RFC 8305's staggered start: attempt i+1 starts `delay` seconds after
// attempt i, or at once when i fails; the first to connect wins and the
// others are cancelled (their sockets closed).
int race_connections(EventLoop& loop, const std::vector<AddrInfo>& infos,
                     const std::vector<AddrInfo>& local, double delay,
                     std::vector<std::exception_ptr>& errors) {
    std::vector<Task<int>> attempts;
    std::vector<bool> seen;
    // When the next attempt is due: `delay` after the newest one started,
    // however many other attempts finish meanwhile (staggered.py waits on
    // the previous attempt, not on the last event).
    double next_due = 0;
    // Set when an attempt finishes; shared, as the callbacks may run after
    // this function has returned.
    auto changed = std::make_shared<Future<void>>(loop.create_future<void>());
    auto start_next = [&] {
        const AddrInfo& info = infos[attempts.size()];
        Task<int> attempt =
            loop.create_task([&loop, info, &local] { return connect_one(loop, info, local); });
        attempt.add_done_callback([changed](Future<int>) {
            if (!changed->done()) {
                changed->set_result();
            }
        });
        attempts.push_back(attempt);
        seen.push_back(false);
        next_due = loop.time() + delay;
    };
    // Cancels the others and closes whatever socket a late winner made.
    auto stop_others = [&](std::size_t keep) {
        for (std::size_t i = 0; i < attempts.size(); ++i) {
            if (i == keep) {
                continue;
            }
            Task<int>& attempt = attempts[i];
            if (!attempt.done()) {
                attempt.cancel();
                attempt.add_done_callback([](Future<int> done) {
                    if (!done.cancelled() && !done.exception()) {
                        ::close(done.result());
                    }
                });
            } else if (!seen[i] && !attempt.cancelled() && !attempt.exception()) {
                ::close(attempt.result());
            }
        }
    };
    start_next();
    try {
        for (;;) {
            bool running = false;
            for (std::size_t i = 0; i < attempts.size(); ++i) {
                if (!attempts[i].done()) {
                    running = true;
                    continue;
                }
                if (seen[i]) {
                    continue;
                }
                seen[i] = true;
                if (std::exception_ptr error = attempts[i].exception()) {
                    errors.push_back(error);
                    if (attempts.size() < infos.size() && i + 1 == attempts.size()) {
                        start_next();  // the newest failed: no need to wait for the delay
                        running = true;
                    }
                } else {
                    stop_others(i);
                    return attempts[i].result();
                }
            }
            if (!running && attempts.size() == infos.size()) {
                return -1;
            }
            *changed = loop.create_future<void>();
            if (attempts.size() < infos.size()) {
                try {
                    await(wait_for(*changed, std::max(0.0, next_due - loop.time())));
                } catch (const TimeoutError&) {
                    start_next();
                }
            } else {
                await(*changed);
            }
        }
    } catch (...) {
        stop_others(attempts.size());  // cancelled: stop them all
        throw;
    }
}

// Wraps `fd` in a transport and waits until connection_made() has run.
Connection<Transport> open_stream(EventLoop& loop, int fd, const ProtocolFactory& factory) {
    UniqueFd owned(fd);
    std::shared_ptr<BaseProtocol> protocol = factory();
    if (!protocol) {
        throw std::invalid_argument("the protocol factory returned null");
    }
    auto transport =
        StreamTransport::start(loop, owned.release(), StreamTransport::Kind::socket, protocol);
    // connection_made was queued first: this runs after it.
    Future<void> made = loop.create_future<void>();
    loop.call_soon([made]() mutable { made.set_result(); });
    try {
        await(made);
    } catch (...) {
        transport->close();
        throw;
    }
    return Connection<Transport>{transport, protocol};
}

std::vector<AddrInfo> resolve(EventLoop& loop, const std::string& host, uint16_t port,
                              AddrInfoHints hints) {
    std::vector<AddrInfo> infos =
        await(loop.getaddrinfo(host, port == 0 && host.empty() ? "" : std::to_string(port), hints));
    if (infos.empty()) {
        throw std::system_error(EADDRNOTAVAIL, std::generic_category(),
                                "getaddrinfo() returned empty list");
    }
    return infos;
}

}  // namespace

}  // namespace detail

Future<Connection<Transport>> EventLoop::create_connection(ProtocolFactory factory,
                                                           std::string host, uint16_t port) {
    return create_connection(std::move(factory), std::move(host), port, ConnectionOptions{});
}

Future<Connection<Transport>> EventLoop::create_connection(ProtocolFactory factory,
                                                           std::string host, uint16_t port,
                                                           ConnectionOptions options) {
    check_closed();
    if (options.sock >= 0) {
        if (!host.empty() || port != 0) {
            throw std::invalid_argument("host/port and sock can not be specified at the same time");
        }
        detail::adopt_stream_socket(options.sock, "create_connection");
    } else if (host.empty() && port == 0) {
        throw std::invalid_argument("host and port was not specified and no sock specified");
    }
    if (options.happy_eyeballs_delay && !(*options.happy_eyeballs_delay >= 0)) {
        throw std::invalid_argument("happy_eyeballs_delay must be a non-negative number");
    }
    return create_task([this, factory = std::move(factory), host = std::move(host), port,
                        options]() -> Connection<Transport> {
        if (options.sock >= 0) {
            return detail::open_stream(*this, options.sock, factory);
        }
        AddrInfoHints hints{.family = options.family,
                            .type = SOCK_STREAM,
                            .protocol = options.proto,
                            .flags = options.flags};
        std::vector<AddrInfo> infos = detail::resolve(*this, host, port, hints);
        std::vector<AddrInfo> local;
        if (options.local_addr) {
            local =
                detail::resolve(*this, options.local_addr->host, options.local_addr->port, hints);
        }
        int interleave_count = options.interleave;
        if (interleave_count == 0 && options.happy_eyeballs_delay) {
            interleave_count = 1;
        }
        if (interleave_count > 0) {
            infos = detail::interleave(infos, interleave_count);
        }
        std::vector<std::exception_ptr> errors;
        int fd = -1;
        if (!options.happy_eyeballs_delay) {
            for (const AddrInfo& info : infos) {
                try {
                    fd = detail::connect_one(*this, info, local);
                    break;
                } catch (const CancelledError&) {
                    throw;
                } catch (...) {
                    errors.push_back(std::current_exception());
                }
            }
        } else {
            fd = detail::race_connections(*this, infos, local, *options.happy_eyeballs_delay,
                                          errors);
        }
        if (fd < 0) {
            detail::raise_connect_errors(std::move(errors), options.all_errors);
        }
        return detail::open_stream(*this, fd, factory);
    });
}

Future<Connection<Transport>> EventLoop::create_unix_connection(ProtocolFactory factory,
                                                                std::string path) {
    return create_unix_connection(std::move(factory), std::move(path), UnixConnectionOptions{});
}

Future<Connection<Transport>> EventLoop::create_unix_connection(ProtocolFactory factory,
                                                                std::string path,
                                                                UnixConnectionOptions options) {
    check_closed();
    if (options.sock >= 0) {
        if (!path.empty()) {
            throw std::invalid_argument("path and sock can not be specified at the same time");
        }
        detail::adopt_stream_socket(options.sock, "create_unix_connection", AF_UNIX);
    } else if (path.empty()) {
        throw std::invalid_argument("no path and sock were specified");
    }
    SocketAddress address;
    if (options.sock < 0) {
        address = SocketAddress::from_unix_path(path);  // throws for a path too long, here
    }
    return create_task([this, factory = std::move(factory), address, options] {
        if (options.sock >= 0) {
            return detail::open_stream(*this, options.sock, factory);
        }
        detail::UniqueFd fd = detail::open_socket(AF_UNIX, SOCK_STREAM);
        await(sock_connect(fd.get(), address));
        return detail::open_stream(*this, fd.release(), factory);
    });
}

Future<Connection<Transport>> EventLoop::connect_accepted_socket(ProtocolFactory factory,
                                                                 int sock) {
    check_closed();
    detail::adopt_stream_socket(sock, "connect_accepted_socket");
    return create_task([this, factory = std::move(factory), sock] {
        return detail::open_stream(*this, sock, factory);
    });
}

}  // namespace shardloop
