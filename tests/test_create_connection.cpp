// create_connection (with Happy Eyeballs), create_unix_connection and
// connect_accepted_socket (net/connection.cpp) on real loopback and Unix
// sockets. Cases ported from CPython 3.13's Lib/test/test_asyncio
// (test_events.py, test_base_events.py, test_staggered.py,
// test_unix_events.py) name the original; the fixture checks at teardown
// that no fd, task or fiber stack leaked.
//
// Several tests need a host name with more than one address; they use the
// names of support/net_helpers.hpp's private /etc/hosts and are skipped
// where a private mount namespace cannot be had.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <any>
#include <cerrno>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"
#include "support/net_helpers.hpp"

namespace shardloop {
namespace {

using shardloop::testing::Blackhole;
using shardloop::testing::ClosedPort;
using shardloop::testing::connect_client;
using shardloop::testing::errno_of;
using shardloop::testing::LoopTest;
using shardloop::testing::mixed_host;
using shardloop::testing::open_fd_count;
using shardloop::testing::OwnedFd;
using shardloop::testing::ProtocolLog;
using shardloop::testing::raw_socket;
using shardloop::testing::read_available;
using shardloop::testing::RecordingProtocol;
using shardloop::testing::send_all;
using shardloop::testing::three_v4_host;
using shardloop::testing::two_v4_host;
using shardloop::testing::UnixPath;
using shardloop::testing::use_test_hosts;
using shardloop::testing::what_of;

template <class F>
std::exception_ptr error_of(F&& fn) {
    try {
        fn();
    } catch (...) {
        return std::current_exception();
    }
    return nullptr;
}

// The what() of every exception of the ExceptionGroup behind `error`, each
// cut before its last ": " (the errno's text): "Connect call failed [::1]:80".
std::vector<std::string> group_messages(const std::exception_ptr& error) {
    std::vector<std::string> messages;
    try {
        std::rethrow_exception(error);
    } catch (const ExceptionGroup& group) {
        for (const std::exception_ptr& inner : group.exceptions()) {
            std::string text = what_of(inner);
            messages.push_back(text.substr(0, text.rfind(": ")));
        }
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected an ExceptionGroup, got: " << e.what();
    }
    return messages;
}

std::string connect_failed(const SocketAddress& address) {
    return "Connect call failed " + address.to_string();
}

class CreateConnectionTest : public LoopTest {
protected:
    std::shared_ptr<Server> serve(ProtocolFactory factory, std::string host = "127.0.0.1",
                                  uint16_t port = 0) {
        return loop->run_until_complete(
            loop->create_server(std::move(factory), std::move(host), port, ServerOptions{}));
    }

    void shut_down(const std::shared_ptr<Server>& server) {
        server->close();
        server->abort_clients();
        loop->run_until_complete(wait_for(server->wait_closed(), 5.0));
    }

    Connection<Transport> connect(std::string host, uint16_t port, ConnectionOptions options = {}) {
        return loop->run_until_complete(loop->create_connection(
            [this] {
                auto protocol = std::make_shared<RecordingProtocol>();
                clients.push_back(protocol);
                return protocol;
            },
            std::move(host), port, options));
    }

    // What resolving `host` for a stream socket gives, in the resolver's order.
    std::vector<AddrInfo> resolve(const std::string& host, uint16_t port) {
        return loop->run_until_complete(
            loop->getaddrinfo(host, std::to_string(port), AddrInfoHints{.type = SOCK_STREAM}));
    }

    std::vector<std::shared_ptr<RecordingProtocol>> clients;
};

// ---- Connecting ----

// Ports test_events.test_create_connection: the transport is connected to
// the server (peername) from a local port (sockname), connection_made has
// run when create_connection completes, and the protocol returned is the
// factory's.
TEST_F(CreateConnectionTest, ConnectsToTheServerAndCompletesAfterConnectionMade) {
    ProtocolLog accepted{.echo = true};
    auto server = serve(accepted.factory());
    SocketAddress address = local_address(server->sockets()[0]);
    auto [transport, protocol] = connect("127.0.0.1", address.port());
    ASSERT_EQ(clients.size(), 1U);
    EXPECT_EQ(protocol.get(), static_cast<BaseProtocol*>(clients[0].get()));
    EXPECT_TRUE(clients[0]->made);
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")), address);
    auto sockname = std::any_cast<SocketAddress>(transport->get_extra_info("sockname"));
    EXPECT_EQ(sockname.host(), "127.0.0.1");
    int fd = std::any_cast<int>(transport->get_extra_info("socket"));
    EXPECT_EQ(local_address(fd), sockname);

    transport->write("ping");
    run_until([&] { return clients[0]->received == "ping"; });
    transport->close();
    run_until([&] { return clients[0]->lost; });
    EXPECT_EQ(clients[0]->error, nullptr);
    shut_down(server);
}

// A host name is resolved (getaddrinfo on the executor) before connecting.
TEST_F(CreateConnectionTest, ConnectsToAHostName) {
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    uint16_t port = local_address(server->sockets()[0]).port();
    auto [transport, protocol] = connect("localhost", port);
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")).port(), port);
    run_until([&] { return accepted.protocols.size() == 1 && accepted.protocols[0]->made; });
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// Ports test_base_events.test_create_connection_connect_err with a real
// refusal: std::system_error ECONNREFUSED naming the address; with
// all_errors, an ExceptionGroup holding that one error.
TEST_F(CreateConnectionTest, ConnectionRefusedIsSystemErrorNamingTheAddress) {
    ClosedPort closed;
    SocketAddress address = SocketAddress::from_numeric("127.0.0.1", closed.port());
    std::exception_ptr error = error_of([&] { connect("127.0.0.1", closed.port()); });
    EXPECT_EQ(errno_of(error), ECONNREFUSED) << what_of(error);
    EXPECT_EQ(what_of(error), connect_failed(address) + ": Connection refused");

    error = error_of([&] { connect("127.0.0.1", closed.port(), {.all_errors = true}); });
    EXPECT_EQ(group_messages(error), std::vector<std::string>{connect_failed(address)});
    EXPECT_TRUE(clients.empty()) << "a protocol was made for a failed connection";
}

// Ports test_base_events.test_create_connection_multiple_errors and
// test_create_connection_multiple with real refusals from two addresses:
// different messages are combined into one "Multiple exceptions: ..."
// error; with all_errors, an ExceptionGroup lists every attempt in order.
TEST_F(CreateConnectionTest, AllAddressesFailingWithDifferentErrorsAreCombined) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    ClosedPort closed;
    std::vector<AddrInfo> infos = resolve(two_v4_host, closed.port());
    ASSERT_EQ(infos.size(), 2U);
    std::exception_ptr error = error_of([&] { connect(two_v4_host, closed.port()); });
    std::string message = what_of(error);
    EXPECT_EQ(message.rfind("Multiple exceptions: ", 0), 0U) << message;
    EXPECT_NE(message.find(connect_failed(infos[0].address) + ": Connection refused, " +
                           connect_failed(infos[1].address) + ": Connection refused"),
              std::string::npos)
        << message;

    error = error_of([&] { connect(two_v4_host, closed.port(), {.all_errors = true}); });
    EXPECT_EQ(group_messages(error), (std::vector<std::string>{connect_failed(infos[0].address),
                                                               connect_failed(infos[1].address)}));
}

// asyncio raises the first error alone when every attempt failed with the
// same message: here both attempts fail to bind the same local address.
TEST_F(CreateConnectionTest, AllAddressesFailingWithTheSameErrorRaiseTheFirst) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    uint16_t busy = local_address(server->sockets()[0]).port();
    std::exception_ptr error = error_of([&] {
        connect(two_v4_host, busy, {.local_addr = HostPort{"127.0.0.1", busy}});
    });
    EXPECT_EQ(errno_of(error), EADDRINUSE);
    EXPECT_EQ(what_of(error), "error while attempting to bind on address 127.0.0.1:" +
                                  std::to_string(busy) + ": Address already in use");

    error = error_of([&] {
        connect(two_v4_host, busy, {.local_addr = HostPort{"127.0.0.1", busy}, .all_errors = true});
    });
    EXPECT_EQ(group_messages(error).size(), 2U);
    shut_down(server);
}

// ---- local_addr ----

// Ports test_events.test_create_connection_local_addr: the socket is bound
// to local_addr before it connects; the server sees that port.
TEST_F(CreateConnectionTest, LocalAddrIsBoundAsAsked) {
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    uint16_t port = local_address(server->sockets()[0]).port();
    uint16_t local_port = 0;
    {
        OwnedFd probe = raw_socket(AF_INET);
        SocketAddress any = SocketAddress::from_numeric("127.0.0.1", 0);
        ASSERT_EQ(::bind(probe.get(), any.data(), any.size()), 0);
        local_port = local_address(probe.get()).port();
    }
    auto [transport, protocol] =
        connect("127.0.0.1", port, {.local_addr = HostPort{"127.0.0.1", local_port}});
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("sockname")).port(),
              local_port);
    run_until([&] { return accepted.protocols.size() == 1 && accepted.protocols[0]->made; });
    EXPECT_EQ(
        std::any_cast<SocketAddress>(accepted.protocols[0]->transport->get_extra_info("peername"))
            .port(),
        local_port);
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// Ports test_events.test_create_connection_local_addr_in_use: binding the
// server's own address fails with EADDRINUSE and an error naming it.
TEST_F(CreateConnectionTest, LocalAddrInUseIsAnErrorNamingTheAddress) {
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    SocketAddress address = local_address(server->sockets()[0]);
    std::exception_ptr error = error_of([&] {
        connect("127.0.0.1", address.port(), {.local_addr = HostPort{"127.0.0.1", address.port()}});
    });
    EXPECT_EQ(errno_of(error), EADDRINUSE);
    EXPECT_EQ(what_of(error), "error while attempting to bind on address " + address.to_string() +
                                  ": Address already in use");
    EXPECT_TRUE(accepted.protocols.empty());
    shut_down(server);
}

// Ports test_events.test_create_connection_local_addr_nomatch_family: a
// local address of another family only cannot be used: an error.
TEST_F(CreateConnectionTest, LocalAddrOfAnotherFamilyOnlyIsAnError) {
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    uint16_t port = local_address(server->sockets()[0]).port();
    std::exception_ptr error = error_of([&] {
        connect("127.0.0.1", port, {.local_addr = HostPort{"::1", 0}});
    });
    EXPECT_NE(what_of(error).find("no matching local address with family " +
                                  std::to_string(AF_INET) + " found"),
              std::string::npos)
        << what_of(error);
    EXPECT_TRUE(accepted.protocols.empty());
    shut_down(server);
}

// Ports test_events.test_create_connection_local_addr_skip_different_family:
// of the local addresses resolved, those of another family are skipped and
// the first of the remote's family is bound.
TEST_F(CreateConnectionTest, LocalAddrSkipsAddressesOfAnotherFamily) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    std::vector<AddrInfo> locals = resolve(mixed_host, 0);
    ASSERT_FALSE(locals.empty());
    ASSERT_EQ(locals[0].family, AF_INET6) << "the test wants an IPv6 address first";
    std::string first_v4;
    for (const AddrInfo& info : locals) {
        if (info.family == AF_INET && first_v4.empty()) {
            first_v4 = info.address.host();
        }
    }
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    uint16_t port = local_address(server->sockets()[0]).port();
    auto [transport, protocol] =
        connect("127.0.0.1", port, {.local_addr = HostPort{mixed_host, 0}});
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("sockname")).host(), first_v4);
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// ---- sock= and argument checks ----

// create_connection(sock=...) wraps the connected socket given: a blocking
// one is made non-blocking (asyncio's _create_connection_transport), and
// the transport talks through it.
TEST_F(CreateConnectionTest, SockIsWrappedAsItIs) {
    ProtocolLog accepted{.echo = true};
    auto server = serve(accepted.factory());
    OwnedFd sock = connect_client(local_address(server->sockets()[0]));
    int fd = sock.release();
    auto [transport, protocol] = connect("", 0, {.sock = fd});
    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("socket")), fd);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    transport->write("through sock=");
    run_until([&] { return clients[0]->received == "through sock="; });
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// Ports test_base_events.test_create_connection_host_port_sock,
// _no_host_port_sock and _wrong_sock: std::invalid_argument (asyncio's
// ValueError), before anything starts; the socket stays the caller's.
TEST_F(CreateConnectionTest, RefusesBadArguments) {
    auto factory = [] { return std::make_shared<RecordingProtocol>(); };
    OwnedFd stream = raw_socket(AF_INET);
    EXPECT_THROW(loop->create_connection(factory, "127.0.0.1", 80, {.sock = stream.get()}),
                 std::invalid_argument);
    EXPECT_THROW(loop->create_connection(factory, "", 0), std::invalid_argument);
    OwnedFd datagram = raw_socket(AF_INET, SOCK_DGRAM);
    try {
        loop->create_connection(factory, "", 0, {.sock = datagram.get()});
        ADD_FAILURE() << "a datagram socket was taken";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("A Stream Socket was expected"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(loop->create_connection(factory, "127.0.0.1", 80, {.happy_eyeballs_delay = -1.0}),
                 std::invalid_argument);
    EXPECT_GE(::fcntl(stream.get(), F_GETFD), 0) << "a refused socket was closed";
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// A protocol factory that throws: create_connection fails with its
// exception, and the connected socket is closed (the server sees it go).
TEST_F(CreateConnectionTest, ProtocolFactoryThatThrowsClosesTheSocket) {
    ProtocolLog accepted;
    auto server = serve(accepted.factory());
    uint16_t port = local_address(server->sockets()[0]).port();
    std::exception_ptr error = error_of([&] {
        loop->run_until_complete(loop->create_connection(
            []() -> std::shared_ptr<BaseProtocol> { throw std::runtime_error("no protocol"); },
            "127.0.0.1", port));
    });
    EXPECT_EQ(what_of(error), "no protocol");
    run_until([&] { return accepted.protocols.size() == 1 && accepted.protocols[0]->lost; });
    EXPECT_TRUE(accepted.protocols[0]->eof);
    shut_down(server);
}

// ---- Happy Eyeballs (RFC 8305, asyncio's staggered_race) ----

// Ports test_staggered.test_first_timeout_second_successful on real sockets:
// the first address blackholes, so the second is tried happy_eyeballs_delay
// later, connects and wins; the first attempt is cancelled and its socket
// closed.
TEST_F(CreateConnectionTest, HappyEyeballsSecondAddressOvertakesABlackholedFirst) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    std::vector<AddrInfo> infos = resolve(two_v4_host, 0);
    ASSERT_EQ(infos.size(), 2U);
    Blackhole blackhole(infos[0].address);
    uint16_t port = blackhole.address().port();
    ProtocolLog accepted;
    auto server = serve(accepted.factory(), infos[1].address.host(), port);
    std::size_t fds_before = open_fd_count();

    constexpr double delay = 0.1;
    double start = loop->time();
    auto [transport, protocol] = connect(two_v4_host, port, {.happy_eyeballs_delay = delay});
    double elapsed = loop->time() - start;
    auto peer = std::any_cast<SocketAddress>(transport->get_extra_info("peername"));
    EXPECT_EQ(peer.host(), infos[1].address.host());
    EXPECT_EQ(peer.port(), port);
    EXPECT_GE(elapsed, delay * 0.9) << "the second attempt did not wait for the delay";
    EXPECT_LT(elapsed, 0.9) << "the second attempt was not started after the delay";

    run_until([&] { return accepted.protocols.size() == 1 && accepted.protocols[0]->made; });
    for (int i = 0; i < 3; ++i) {
        run_briefly();  // the cancelled attempt unwinds
    }
    // The transport's socket and the accepted one; the loser's is gone.
    EXPECT_EQ(open_fd_count(), fds_before + 2);
    EXPECT_EQ(loop->live_task_count(), 0U);
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// Ports test_staggered.test_first_error_second_successful: when the first
// address fails (refused), the second starts at once, not after the delay.
TEST_F(CreateConnectionTest, HappyEyeballsFailureStartsTheNextAttemptAtOnce) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    std::vector<AddrInfo> infos = resolve(two_v4_host, 0);
    ASSERT_EQ(infos.size(), 2U);
    ProtocolLog accepted;
    // Only the second address listens on the port; the first refuses.
    auto server = serve(accepted.factory(), infos[1].address.host(), 0);
    uint16_t port = local_address(server->sockets()[0]).port();
    double start = loop->time();
    auto [transport, protocol] = connect(two_v4_host, port, {.happy_eyeballs_delay = 5.0});
    EXPECT_LT(loop->time() - start, 1.0);
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")).host(),
              infos[1].address.host());
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// staggered.py starts each attempt `delay` after the one before it started
// (or at once when that one fails), whatever else happens meanwhile. Here
// the first address blackholes until its SYN is retransmitted (after the
// kernel's initial 1 s RTO) to a port that is closed by then, so it fails
// at ~1 s, while the second, started at `delay` = 0.6 s, still hangs: the
// third is due at 1.2 s, not `delay` after the first one's failure (1.6 s).
TEST_F(CreateConnectionTest, HappyEyeballsStaggersEachAttemptFromThePreviousStart) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    std::vector<AddrInfo> infos = resolve(three_v4_host, 0);
    ASSERT_EQ(infos.size(), 3U);
    auto first = std::make_unique<Blackhole>(infos[0].address);
    uint16_t port = first->address().port();
    Blackhole second(SocketAddress::from_numeric(infos[1].address.host(), port));
    ProtocolLog accepted;
    auto server = serve(accepted.factory(), infos[2].address.host(), port);

    double start = loop->time();
    loop->call_later(0.3, [&] { first.reset(); });  // the first's retransmitted SYN is refused
    auto [transport, protocol] = connect(three_v4_host, port, {.happy_eyeballs_delay = 0.6});
    double elapsed = loop->time() - start;
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")).host(),
              infos[2].address.host());
    EXPECT_GE(elapsed, 1.1);
    EXPECT_LT(elapsed, 1.45) << "the third attempt waited `delay` after the first one failed";
    transport->close();
    run_until([&] { return clients[0]->lost; });
    shut_down(server);
}

// Ports test_staggered.test_none_successful: with Happy Eyeballs as well,
// every attempt failing gives the combined error, or with all_errors every
// error in the order the attempts were made.
TEST_F(CreateConnectionTest, HappyEyeballsAllFailingReportsEveryError) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    ClosedPort closed;
    std::vector<AddrInfo> infos = resolve(two_v4_host, closed.port());
    ASSERT_EQ(infos.size(), 2U);
    std::exception_ptr error =
        error_of([&] { connect(two_v4_host, closed.port(), {.happy_eyeballs_delay = 0.25}); });
    EXPECT_EQ(what_of(error).rfind("Multiple exceptions: ", 0), 0U) << what_of(error);
    error = error_of([&] {
        connect(two_v4_host, closed.port(), {.happy_eyeballs_delay = 0.25, .all_errors = true});
    });
    EXPECT_EQ(group_messages(error), (std::vector<std::string>{connect_failed(infos[0].address),
                                                               connect_failed(infos[1].address)}));
}

// asyncio's _interleave_addrinfos, seen through the order of the attempts
// (each is refused, and all_errors lists them in the order made): with
// `interleave` = n, n addresses of the first family come first, then the
// families alternate; Happy Eyeballs interleaves by 1 unless told.
TEST_F(CreateConnectionTest, InterleaveReordersAddressesByFamily) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    ClosedPort closed;
    std::vector<AddrInfo> infos = resolve(mixed_host, closed.port());
    ASSERT_EQ(infos.size(), 4U);
    std::vector<std::string> resolved;
    std::vector<std::string> first_family;
    std::vector<std::string> second_family;
    for (const AddrInfo& info : infos) {
        resolved.push_back(connect_failed(info.address));
        (info.family == infos[0].family ? first_family : second_family)
            .push_back(connect_failed(info.address));
    }
    ASSERT_EQ(first_family.size(), 2U);
    ASSERT_EQ(second_family.size(), 2U);
    auto attempts = [&](ConnectionOptions options) {
        options.all_errors = true;
        return group_messages(error_of([&] { connect(mixed_host, closed.port(), options); }));
    };
    std::vector<std::string> by_one = {first_family[0], second_family[0], first_family[1],
                                       second_family[1]};
    std::vector<std::string> by_two = {first_family[0], first_family[1], second_family[0],
                                       second_family[1]};
    ASSERT_NE(resolved, by_one) << "the resolver's order is interleaved already";
    ASSERT_NE(resolved, by_two);

    EXPECT_EQ(attempts({}), resolved);
    EXPECT_EQ(attempts({.interleave = 1}), by_one);
    EXPECT_EQ(attempts({.interleave = 2}), by_two);
    EXPECT_EQ(attempts({.happy_eyeballs_delay = 0.25}), by_one);
    EXPECT_EQ(attempts({.happy_eyeballs_delay = 0.25, .interleave = 2}), by_two);
}

// ---- Cancellation ----

// Cancelling create_connection while the connect is in progress (to a
// blackholing listener), here through wait_for's timeout: the socket it
// made is closed and its task is gone.
TEST_F(CreateConnectionTest, CancellingWhileConnectingLeaksNothing) {
    Blackhole blackhole(SocketAddress::from_numeric("127.0.0.1", 0));
    std::size_t fds_before = open_fd_count();
    auto connecting = loop->create_connection([] { return std::make_shared<RecordingProtocol>(); },
                                              "127.0.0.1", blackhole.address().port());
    std::size_t fds_while_connecting = 0;
    loop->call_later(0.1, [&] { fds_while_connecting = open_fd_count(); });
    EXPECT_THROW(loop->run_until_complete(wait_for(connecting, 0.2)), TimeoutError);
    EXPECT_EQ(fds_while_connecting, fds_before + 1) << "no connect was in progress";
    EXPECT_TRUE(connecting.cancelled());
    run_briefly();
    EXPECT_EQ(open_fd_count(), fds_before);
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// The same during Happy Eyeballs with two attempts in progress: both are
// cancelled, both sockets closed.
TEST_F(CreateConnectionTest, CancellingHappyEyeballsStopsEveryAttempt) {
    if (!use_test_hosts()) {
        GTEST_SKIP() << "no private mount namespace for a test /etc/hosts";
    }
    std::vector<AddrInfo> infos = resolve(two_v4_host, 0);
    ASSERT_EQ(infos.size(), 2U);
    Blackhole first(infos[0].address);
    uint16_t port = first.address().port();
    Blackhole second(SocketAddress::from_numeric(infos[1].address.host(), port));
    std::size_t fds_before = open_fd_count();
    auto connecting = loop->create_connection([] { return std::make_shared<RecordingProtocol>(); },
                                              two_v4_host, port, {.happy_eyeballs_delay = 0.05});
    std::size_t fds_while_connecting = 0;
    loop->call_later(0.25, [&] {
        fds_while_connecting = open_fd_count();
        connecting.cancel();
    });
    EXPECT_THROW(loop->run_until_complete(connecting), CancelledError);
    EXPECT_EQ(fds_while_connecting, fds_before + 2) << "two attempts should have been running";
    run_briefly();
    EXPECT_EQ(open_fd_count(), fds_before);
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// ---- Unix sockets ----

// create_unix_connection to a listening Unix socket: bytes flow both ways
// and the transport reports the path as its peer.
TEST_F(CreateConnectionTest, UnixConnectionTalksToAUnixServer) {
    UnixPath path("client");
    ProtocolLog accepted{.echo = true};
    auto server =
        loop->run_until_complete(loop->create_unix_server(accepted.factory(), path.str()));
    auto client = std::make_shared<RecordingProtocol>();
    auto [transport, protocol] = loop->run_until_complete(
        loop->create_unix_connection([client] { return client; }, path.str()));
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")).unix_path(),
              path.str());
    transport->write("unix");
    run_until([&] { return client->received == "unix"; });
    transport->close();
    run_until([&] { return client->lost; });
    shut_down(server);
}

// Ports test_unix_events.test_create_unix_connection_pathlike: nothing at
// the path is FileNotFoundError (std::system_error ENOENT).
TEST_F(CreateConnectionTest, UnixConnectionToAMissingPathIsENOENT) {
    UnixPath path("missing");
    std::exception_ptr error = error_of([&] {
        loop->run_until_complete(loop->create_unix_connection(
            [] { return std::make_shared<RecordingProtocol>(); }, path.str()));
    });
    EXPECT_EQ(errno_of(error), ENOENT) << what_of(error);
}

// create_unix_connection(sock=...) takes a connected Unix socket (one end
// of a socketpair here).
TEST_F(CreateConnectionTest, UnixConnectionWrapsAConnectedSock) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    OwnedFd other(pair[1]);
    auto client = std::make_shared<RecordingProtocol>();
    auto [transport, protocol] = loop->run_until_complete(
        loop->create_unix_connection([client] { return client; }, "", {.sock = pair[0]}));
    send_all(other.get(), "from the pair");
    run_until([&] { return client->received == "from the pair"; });
    transport->write("back");
    std::string back;
    run_until([&] {
        read_available(other.get(), back);
        return back == "back";
    });
    transport->close();
    run_until([&] { return client->lost; });
}

// Ports test_unix_events.test_create_unix_connection_path_sock,
// _nopath_nosock and _path_inetsock, plus a path longer than sun_path:
// std::invalid_argument, before anything starts.
TEST_F(CreateConnectionTest, UnixConnectionRefusesBadArguments) {
    auto factory = [] { return std::make_shared<RecordingProtocol>(); };
    auto message_of = [&](const std::string& path, UnixConnectionOptions options) -> std::string {
        try {
            loop->create_unix_connection(factory, path, options);
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "<accepted>";
    };
    OwnedFd unix_stream = raw_socket(AF_UNIX);
    EXPECT_EQ(message_of("/tmp/x.sock", {.sock = unix_stream.get()}),
              "path and sock can not be specified at the same time");
    EXPECT_EQ(message_of("", {}), "no path and sock were specified");
    OwnedFd inet = raw_socket(AF_INET);
    EXPECT_NE(message_of("", {.sock = inet.get()}).find("A UNIX Domain Stream Socket was expected"),
              std::string::npos);
    EXPECT_NE(message_of("/tmp/" + std::string(200, 'x'), {}).find("too long"), std::string::npos);
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// ---- connect_accepted_socket ----

// Ports test_events.test_connect_accepted_socket: a socket accepted outside
// the loop becomes a transport; its protocol reads the client's message and
// answers; closing the transport closes the connection.
TEST_F(CreateConnectionTest, ConnectAcceptedSocketServesAnAcceptedSocket) {
    OwnedFd listener = raw_socket(AF_INET);
    SocketAddress any = SocketAddress::from_numeric("127.0.0.1", 0);
    ASSERT_EQ(::bind(listener.get(), any.data(), any.size()), 0);
    ASSERT_EQ(::listen(listener.get(), 1), 0);
    OwnedFd client = connect_client(local_address(listener.get()));
    int accepted = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(accepted, 0);

    class Answering : public RecordingProtocol {
    public:
        void data_received(std::string_view data) override {
            RecordingProtocol::data_received(data);
            if (received == "test data") {
                transport->write("roger");
            }
        }
    };
    auto protocol = std::make_shared<Answering>();
    auto connection = loop->run_until_complete(
        loop->connect_accepted_socket([protocol] { return protocol; }, accepted));
    EXPECT_EQ(std::any_cast<int>(connection.transport->get_extra_info("socket")), accepted);
    EXPECT_TRUE(protocol->made);

    send_all(client.get(), "test data");
    std::string response;
    run_until([&] {
        read_available(client.get(), response);
        return response == "roger";
    });
    connection.transport->close();
    run_until([&] { return protocol->lost; });
    EXPECT_EQ(protocol->received, "test data");
    std::string rest;
    run_until([&] { return !read_available(client.get(), rest); });  // EOF: the close arrived
    EXPECT_EQ(rest, "");

    OwnedFd datagram = raw_socket(AF_INET, SOCK_DGRAM);
    EXPECT_THROW(loop->connect_accepted_socket([protocol] { return protocol; }, datagram.get()),
                 std::invalid_argument);
}

}  // namespace
}  // namespace shardloop
