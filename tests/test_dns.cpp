// EventLoop::getaddrinfo and getnameinfo (net/dns.cpp). Cases ported from
// CPython 3.13's Lib/test/test_asyncio (test_base_events.py, test_events.py)
// name the original. Lookups stay on this machine (/etc/hosts,
// /etc/services, numeric hosts) so that no test waits for a DNS server.

#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using shardloop::testing::LoopTest;

// A default executor that runs each job on a thread of its own after
// `delay`, and records which threads ran jobs.
class SlowExecutor final : public Executor {
public:
    explicit SlowExecutor(std::chrono::milliseconds delay) : _delay(delay) {}
    ~SlowExecutor() override { shutdown(true, false); }

    void submit(Job job) override {
        std::lock_guard lock(_mutex);
        ++_submitted;
        _threads.emplace_back([this, job = std::move(job)]() mutable {
            std::this_thread::sleep_for(_delay);
            {
                std::lock_guard lock(_mutex);
                _job_threads.insert(std::this_thread::get_id());
            }
            job();
        });
    }

    void shutdown(bool wait, bool /*cancel_futures*/) override {
        if (!wait) {
            return;  // the threads finish by themselves; the destructor joins them
        }
        std::vector<std::thread> threads;
        {
            std::lock_guard lock(_mutex);
            threads.swap(_threads);
        }
        for (std::thread& thread : threads) {
            thread.join();
        }
    }

    int submitted() const {
        std::lock_guard lock(_mutex);
        return _submitted;
    }
    std::set<std::thread::id> job_threads() const {
        std::lock_guard lock(_mutex);
        return _job_threads;
    }

private:
    std::chrono::milliseconds _delay;
    mutable std::mutex _mutex;
    std::vector<std::thread> _threads;
    std::set<std::thread::id> _job_threads;
    int _submitted = 0;
};

class DnsTest : public LoopTest {
protected:
    // Numeric answers from libc itself, to compare the loop's against.
    static std::vector<AddrInfo> libc_answer(const char* host, const char* port,
                                             AddrInfoHints hints) {
        addrinfo request{};
        request.ai_family = hints.family;
        request.ai_socktype = hints.type;
        request.ai_protocol = hints.protocol;
        request.ai_flags = hints.flags;
        addrinfo* answer = nullptr;
        EXPECT_EQ(::getaddrinfo(host, port, &request, &answer), 0);
        std::vector<AddrInfo> result;
        for (addrinfo* entry = answer; entry != nullptr; entry = entry->ai_next) {
            result.push_back(AddrInfo{entry->ai_family, entry->ai_socktype, entry->ai_protocol,
                                      entry->ai_canonname ? entry->ai_canonname : "",
                                      SocketAddress(entry->ai_addr, entry->ai_addrlen)});
        }
        ::freeaddrinfo(answer);
        return result;
    }

    static void expect_same(const std::vector<AddrInfo>& got, const std::vector<AddrInfo>& want) {
        ASSERT_EQ(got.size(), want.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            EXPECT_EQ(got[i].family, want[i].family) << i;
            EXPECT_EQ(got[i].type, want[i].type) << i;
            EXPECT_EQ(got[i].protocol, want[i].protocol) << i;
            EXPECT_EQ(got[i].canonname, want[i].canonname) << i;
            EXPECT_EQ(got[i].address, want[i].address) << i << ": " << got[i].address.to_string();
        }
    }

    // The GaiError code the future fails with (0 if it does not).
    int gai_code(const Future<std::vector<AddrInfo>>& future) {
        try {
            loop->run_until_complete(future);
        } catch (const GaiError& e) {
            return e.code();
        }
        ADD_FAILURE() << "no GaiError";
        return 0;
    }
};

// test_events.py test_getaddrinfo_localhost-like: a name from /etc/hosts
// goes through the resolver and comes back as libc answers it.
TEST_F(DnsTest, GetaddrinfoLocalhostMatchesLibc) {
    AddrInfoHints hints{.type = SOCK_STREAM};
    auto infos = loop->run_until_complete(loop->getaddrinfo("localhost", "80", hints));
    ASSERT_FALSE(infos.empty());
    for (const AddrInfo& info : infos) {
        EXPECT_TRUE(info.family == AF_INET || info.family == AF_INET6);
        EXPECT_EQ(info.type, SOCK_STREAM);
        EXPECT_EQ(info.address.port(), 80);
        EXPECT_TRUE(info.address.host() == "127.0.0.1" || info.address.host() == "::1")
            << info.address.host();
    }
    expect_same(infos, libc_answer("localhost", "80", hints));
}

// asyncio's _ipaddr_info: a numeric host with a stream or datagram type is
// answered at once, without the executor, and as libc would answer it.
TEST_F(DnsTest, NumericHostIsAnsweredWithoutTheResolver) {
    auto executor = std::make_shared<SlowExecutor>(std::chrono::milliseconds(0));
    loop->set_default_executor(executor);

    auto v4 = loop->getaddrinfo("127.0.0.1", "8080", {.type = SOCK_STREAM});
    ASSERT_TRUE(v4.done());
    expect_same(v4.result(), libc_answer("127.0.0.1", "8080", {.type = SOCK_STREAM}));
    EXPECT_EQ(v4.result()[0].protocol, IPPROTO_TCP);

    auto v6 = loop->getaddrinfo("::1", "53", {.type = SOCK_DGRAM});
    ASSERT_TRUE(v6.done());
    expect_same(v6.result(), libc_answer("::1", "53", {.type = SOCK_DGRAM}));
    EXPECT_EQ(v6.result()[0].family, AF_INET6);
    EXPECT_EQ(v6.result()[0].protocol, IPPROTO_UDP);

    // An empty port is port 0 (Python's None).
    auto no_port = loop->getaddrinfo("10.1.2.3", "", {.type = SOCK_STREAM});
    ASSERT_TRUE(no_port.done());
    EXPECT_EQ(no_port.result()[0].address, SocketAddress::from_numeric("10.1.2.3", 0));
    EXPECT_EQ(executor->submitted(), 0);
}

// _ipaddr_info gives up (and libc answers) for type 0, a service name, a
// family the host does not belong to, and AI_CANONNAME.
TEST_F(DnsTest, NumericHostFallsBackToTheResolverWhenItCannotAnswer) {
    auto executor = std::make_shared<SlowExecutor>(std::chrono::milliseconds(0));
    loop->set_default_executor(executor);

    auto any_type = loop->getaddrinfo("127.0.0.1", "80");
    EXPECT_FALSE(any_type.done());
    // libc answers one entry per socket type (stream, datagram, raw).
    expect_same(loop->run_until_complete(any_type), libc_answer("127.0.0.1", "80", {}));
    EXPECT_GE(any_type.result().size(), 2U);

    auto canon = loop->getaddrinfo("127.0.0.1", "80", {.type = SOCK_STREAM, .flags = AI_CANONNAME});
    EXPECT_FALSE(canon.done());
    expect_same(loop->run_until_complete(canon),
                libc_answer("127.0.0.1", "80", {.type = SOCK_STREAM, .flags = AI_CANONNAME}));

    auto wrong_family =
        loop->getaddrinfo("127.0.0.1", "80", {.family = AF_INET6, .type = SOCK_STREAM});
    EXPECT_FALSE(wrong_family.done());
    int code = gai_code(wrong_family);
    EXPECT_TRUE(code == EAI_ADDRFAMILY || code == EAI_NONAME) << code;
    EXPECT_EQ(executor->submitted(), 3);
}

// A port may be a service name (/etc/services), as in Python.
TEST_F(DnsTest, ServiceNameIsResolved) {
    auto infos =
        loop->run_until_complete(loop->getaddrinfo("127.0.0.1", "http", {.type = SOCK_STREAM}));
    ASSERT_EQ(infos.size(), 1U);
    EXPECT_EQ(infos[0].address, SocketAddress::from_numeric("127.0.0.1", 80));
}

// An empty host is Python's None: with AI_PASSIVE, the wildcard addresses.
TEST_F(DnsTest, EmptyHostMeansNone) {
    AddrInfoHints hints{.type = SOCK_STREAM, .flags = AI_PASSIVE};
    auto infos = loop->run_until_complete(loop->getaddrinfo("", "8000", hints));
    expect_same(infos, libc_answer(nullptr, "8000", hints));
    ASSERT_FALSE(infos.empty());
    for (const AddrInfo& info : infos) {
        EXPECT_TRUE(info.address.host() == "0.0.0.0" || info.address.host() == "::")
            << info.address.host();
    }
}

// socket.gaierror: the resolver's code and message reach the caller.
TEST_F(DnsTest, FailingLookupsRaiseGaiError) {
    auto bad_name = loop->getaddrinfo("not a numeric host", "80", {.flags = AI_NUMERICHOST});
    try {
        loop->run_until_complete(bad_name);
        ADD_FAILURE() << "no GaiError";
    } catch (const GaiError& e) {
        EXPECT_EQ(e.code(), EAI_NONAME);
        EXPECT_NE(std::string(e.what()).find("not a numeric host"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(::gai_strerror(EAI_NONAME)), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(
        gai_code(loop->getaddrinfo("127.0.0.1", "no-such-service-here", {.type = SOCK_STREAM})),
        EAI_SERVICE);
}

// test_events.py test_getnameinfo-like: an address and back, numerically and
// by name (/etc/hosts and /etc/services).
TEST_F(DnsTest, GetnameinfoRoundTrip) {
    auto v4 = SocketAddress::from_numeric("127.0.0.1", 80);
    NameInfo numeric =
        loop->run_until_complete(loop->getnameinfo(v4, NI_NUMERICHOST | NI_NUMERICSERV));
    EXPECT_EQ(numeric.host, "127.0.0.1");
    EXPECT_EQ(numeric.service, "80");

    NameInfo named = loop->run_until_complete(loop->getnameinfo(v4));
    EXPECT_EQ(named.service, "http");
    auto back = loop->run_until_complete(
        loop->getaddrinfo(named.host, named.service, {.family = AF_INET, .type = SOCK_STREAM}));
    ASSERT_FALSE(back.empty());
    EXPECT_EQ(back[0].address, v4);

    auto v6 = SocketAddress::from_numeric("::1", 8080);
    NameInfo numeric6 =
        loop->run_until_complete(loop->getnameinfo(v6, NI_NUMERICHOST | NI_NUMERICSERV));
    EXPECT_EQ(numeric6.host, "::1");
    EXPECT_EQ(numeric6.service, "8080");
}

// An address libc cannot read (a truncated sockaddr_in) fails with EAI_FAMILY.
TEST_F(DnsTest, GetnameinfoOfABadAddressRaisesGaiError) {
    auto v4 = SocketAddress::from_numeric("127.0.0.1", 80);
    auto future = loop->getnameinfo(SocketAddress(v4.data(), 4));
    try {
        loop->run_until_complete(future);
        ADD_FAILURE() << "no GaiError";
    } catch (const GaiError& e) {
        EXPECT_EQ(e.code(), EAI_FAMILY);
    }
}

// The resolver runs on the default executor: a slow lookup does not hold
// the loop, whose timers keep firing meanwhile.
TEST_F(DnsTest, LookupsRunOffTheLoopThread) {
    auto executor = std::make_shared<SlowExecutor>(std::chrono::milliseconds(300));
    loop->set_default_executor(executor);
    int ticks = 0;
    std::function<void()> tick = [&] {
        ++ticks;
        loop->call_later(0.01, tick);
    };
    loop->call_soon(tick);
    int ticks_at_answer = -1;
    auto lookup = loop->getaddrinfo("localhost", "80", {.type = SOCK_STREAM});
    lookup.add_done_callback([&](const auto&) { ticks_at_answer = ticks; });
    auto name = loop->getnameinfo(SocketAddress::from_numeric("127.0.0.1", 80));

    EXPECT_FALSE(loop->run_until_complete(lookup).empty());
    EXPECT_EQ(loop->run_until_complete(name).service, "http");
    EXPECT_GE(ticks_at_answer, 5) << "the loop did not run while the resolver worked";
    EXPECT_EQ(executor->submitted(), 2);
    std::set<std::thread::id> threads = executor->job_threads();
    EXPECT_EQ(threads.size(), 2U);
    EXPECT_EQ(threads.count(std::this_thread::get_id()), 0U);
    loop->close();  // stops the ticking timer before `tick` goes out of scope
}

// test_events.py test_getaddrinfo / asyncio: a lookup can be cancelled; the
// loop forgets it (the executor's result is dropped).
TEST_F(DnsTest, CancelledLookupRaisesCancelledError) {
    auto executor = std::make_shared<SlowExecutor>(std::chrono::milliseconds(50));
    loop->set_default_executor(executor);
    auto lookup = loop->getaddrinfo("localhost", "80");
    EXPECT_TRUE(lookup.cancel());
    EXPECT_THROW(loop->run_until_complete(lookup), CancelledError);
    loop->run_until_complete([] { await(sleep(0.1)); });  // the job ends; its delivery is ignored
    EXPECT_TRUE(lookup.cancelled());
}

// asyncio raises RuntimeError("Event loop is closed") from a closed loop.
TEST_F(DnsTest, ClosedLoopRefusesLookups) {
    loop->close();
    testing::expect_throw_with_message<RuntimeError>(
        [&] { loop->getaddrinfo("127.0.0.1", "80", {.type = SOCK_STREAM}); },
        "Event loop is closed");
    testing::expect_throw_with_message<RuntimeError>([&] { loop->getaddrinfo("localhost", "80"); },
                                                     "Event loop is closed");
    testing::expect_throw_with_message<RuntimeError>(
        [&] { loop->getnameinfo(SocketAddress::from_numeric("127.0.0.1", 80)); },
        "Event loop is closed");
}

// asyncio's _getaddrinfo_debug: in debug mode each lookup is logged.
TEST_F(DnsTest, DebugModeLogsLookups) {
    loop->set_debug(true);
    loop->run_until_complete(loop->getaddrinfo("localhost", "80", {.type = SOCK_STREAM}));
    EXPECT_TRUE(log_capture.contains(LogLevel::debug, "Get address info localhost:80, type=1"));
    EXPECT_TRUE(log_capture.contains(LogLevel::debug, "Getting address info localhost:80"));
}

}  // namespace
}  // namespace shardloop
