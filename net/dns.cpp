// EventLoop::getaddrinfo and getnameinfo. The libc resolver blocks (files,
// DNS, NSS modules), so it runs on the default executor, as asyncio runs
// socket.getaddrinfo there; the loop thread never waits for it.

#include "net/dns.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <system_error>
#include <vector>

#include "runtime/event_loop.hpp"
#include "runtime/log.hpp"

namespace shardloop {

namespace {

// "getaddrinfo('example.com', '80')" for error messages; an empty string
// stands for Python's None.
std::string describe_call(const char* call, const std::string& host, const std::string& port) {
    auto quoted = [](const std::string& text) { return text.empty() ? "None" : "'" + text + "'"; };
    return std::string(call) + "(" + quoted(host) + ", " + quoted(port) + ")";
}

// A resolver error as the exception asyncio's caller would see: gaierror,
// or OSError with errno for EAI_SYSTEM. `saved_errno` is errno right after
// the call.
[[noreturn]] void throw_gai_error(int code, int saved_errno, const std::string& what) {
    if (code == EAI_SYSTEM) {
        throw std::system_error(saved_errno, std::generic_category(), what);
    }
    throw GaiError(code, what);
}

// A port given as digits, as Python's int(port) would take it; nullopt for a
// service name (or anything else), which only the resolver can answer.
std::optional<uint16_t> numeric_port(const std::string& port) {
    if (port.empty()) {
        return 0;  // Python's None and '' both mean port 0
    }
    unsigned value = 0;
    auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value > 65535) {
        return std::nullopt;
    }
    return static_cast<uint16_t>(value);
}

// asyncio's _ipaddr_info: when `host` is already a numeric IPv4 or IPv6
// address, the answer is known without asking the resolver. Like asyncio,
// only for a stream or datagram type (type 0 makes libc answer one entry
// per socket type) and a numeric port. Flags that change libc's answer for
// a numeric host (AI_CANONNAME fills canonname, AI_ADDRCONFIG may refuse a
// family, AI_V4MAPPED maps) leave the question to the resolver.
std::optional<AddrInfo> ipaddr_info(const std::string& host, const std::string& port,
                                    const AddrInfoHints& hints) {
    constexpr int harmless_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    if (host.empty() || (hints.flags & ~harmless_flags) != 0) {
        return std::nullopt;
    }
    if (hints.protocol != 0 && hints.protocol != IPPROTO_TCP && hints.protocol != IPPROTO_UDP) {
        return std::nullopt;
    }
    int protocol = 0;
    if (hints.type == SOCK_STREAM) {
        protocol = IPPROTO_TCP;
    } else if (hints.type == SOCK_DGRAM) {
        protocol = IPPROTO_UDP;
    } else {
        return std::nullopt;
    }
    std::optional<uint16_t> port_number = numeric_port(port);
    // Linux's inet_pton refuses a zone ("fe80::1%lo"): the resolver handles those.
    if (!port_number || host.find('%') != std::string::npos) {
        return std::nullopt;
    }
    in6_addr scratch{};
    for (int family : {AF_INET, AF_INET6}) {
        if (hints.family != AF_UNSPEC && hints.family != family) {
            continue;
        }
        if (::inet_pton(family, host.c_str(), &scratch) == 1) {
            return AddrInfo{.family = family,
                            .type = hints.type,
                            .protocol = protocol,
                            .canonname = {},
                            .address = SocketAddress::from_numeric(host, *port_number)};
        }
    }
    return std::nullopt;
}

// The blocking part, run on an executor thread.
std::vector<AddrInfo> resolve(const std::string& host, const std::string& port,
                              const AddrInfoHints& hints) {
    addrinfo request{};
    request.ai_family = hints.family;
    request.ai_socktype = hints.type;
    request.ai_protocol = hints.protocol;
    request.ai_flags = hints.flags;
    addrinfo* answer = nullptr;
    errno = 0;
    int code = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                             port.empty() ? nullptr : port.c_str(), &request, &answer);
    if (code != 0) {
        throw_gai_error(code, errno, describe_call("getaddrinfo", host, port));
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(answer, &::freeaddrinfo);
    std::vector<AddrInfo> result;
    for (const addrinfo* entry = answer; entry != nullptr; entry = entry->ai_next) {
        result.push_back(AddrInfo{
            .family = entry->ai_family,
            .type = entry->ai_socktype,
            .protocol = entry->ai_protocol,
            .canonname = entry->ai_canonname != nullptr ? entry->ai_canonname : "",
            .address = SocketAddress(entry->ai_addr, entry->ai_addrlen),
        });
    }
    return result;
}

// asyncio's _getaddrinfo_debug: in debug mode every lookup is logged with
// its duration, at info level when it took longer than a slow callback.
std::vector<AddrInfo> resolve_logged(const std::string& host, const std::string& port,
                                     const AddrInfoHints& hints, double slow_seconds) {
    std::string call = host + ":" + (port.empty() ? "None" : port);
    for (auto [name, value] :
         {std::pair{"family", hints.family}, std::pair{"type", hints.type},
          std::pair{"proto", hints.protocol}, std::pair{"flags", hints.flags}}) {
        if (value != 0) {
            call += std::string(", ") + name + "=" + std::to_string(value);
        }
    }
    log(LogLevel::debug, "Get address info " + call);
    auto start = std::chrono::steady_clock::now();
    std::vector<AddrInfo> result = resolve(host, port, hints);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string message = "Getting address info " + call + " took " +
                          std::to_string(seconds * 1e3) + "ms: " + std::to_string(result.size()) +
                          " entries";
    log(seconds >= slow_seconds ? LogLevel::info : LogLevel::debug, message);
    return result;
}

NameInfo name_info(const SocketAddress& address, int flags) {
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    errno = 0;
    int code = ::getnameinfo(address.data(), address.size(), host, sizeof host, service,
                             sizeof service, flags);
    if (code != 0) {
        throw_gai_error(code, errno, "getnameinfo(" + address.to_string() + ")");
    }
    return NameInfo{.host = host, .service = service};
}

}  // namespace

Future<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port) {
    return getaddrinfo(std::move(host), std::move(port), AddrInfoHints{});
}

Future<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port,
                                                     AddrInfoHints hints) {
    check_closed();
    if (std::optional<AddrInfo> known = ipaddr_info(host, port, hints)) {
        auto done = create_future<std::vector<AddrInfo>>();
        done.set_result(std::vector<AddrInfo>{std::move(*known)});
        return done;
    }
    std::optional<double> slow_seconds;
    if (get_debug()) {
        slow_seconds = slow_callback_duration;
    }
    return run_in_executor(
        nullptr, [host = std::move(host), port = std::move(port), hints, slow_seconds] {
            return slow_seconds ? resolve_logged(host, port, hints, *slow_seconds)
                                : resolve(host, port, hints);
        });
}

Future<NameInfo> EventLoop::getnameinfo(SocketAddress address, int flags) {
    check_closed();
    return run_in_executor(nullptr, [address, flags] { return name_info(address, flags); });
}

}  // namespace shardloop
