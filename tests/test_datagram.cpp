// create_datagram_endpoint (net/datagram_endpoint.cpp) and the datagram
// transport (net/datagram_transport.cpp) on real UDP and Unix datagram
// sockets. Cases ported from CPython 3.13's Lib/test/test_asyncio
// (test_events.py, test_base_events.py, test_selector_events.py) name the
// original; the fixture checks that no fd, task or fiber stack leaked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <any>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "net/datagram_transport.hpp"
#include "net/socket_util.hpp"
#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using shardloop::testing::expect_throw_with_message;
using shardloop::testing::LoopTest;

// asyncio's MyDatagramProto, recording every callback in order.
class RecordingProtocol : public DatagramProtocol {
public:
    void connection_made(std::shared_ptr<BaseTransport> t) override {
        ++made;
        transport = std::dynamic_pointer_cast<DatagramTransport>(t);
        events.push_back("made");
    }
    void datagram_received(std::string_view data, const SocketAddress& from) override {
        datagrams.emplace_back(data);
        senders.push_back(from);
        events.push_back("datagram:" + std::string(data));
        if (on_datagram) {
            on_datagram(data, from);
        }
    }
    void error_received(const std::system_error& error) override {
        errors.push_back(error.code().value());
        events.push_back("error");
    }
    void pause_writing() override { ++paused; }
    void resume_writing() override { ++resumed; }
    void connection_lost(std::exception_ptr error) override {
        ++lost;
        lost_error = error;
        events.push_back("lost");
        transport.reset();  // as asyncio's protocols do: no cycle outlives the connection
    }

    std::shared_ptr<DatagramTransport> transport;
    std::vector<std::string> events;
    std::vector<std::string> datagrams;
    std::vector<SocketAddress> senders;
    std::vector<int> errors;
    std::function<void(std::string_view, const SocketAddress&)> on_datagram;
    int made = 0;
    int lost = 0;
    int paused = 0;
    int resumed = 0;
    std::exception_ptr lost_error;
};

struct Endpoint {
    std::shared_ptr<DatagramTransport> transport;
    std::shared_ptr<RecordingProtocol> protocol;
};

SocketAddress sockname(const std::shared_ptr<DatagramTransport>& transport) {
    return std::any_cast<SocketAddress>(transport->get_extra_info("sockname"));
}

int socket_of(const std::shared_ptr<DatagramTransport>& transport) {
    return std::any_cast<int>(transport->get_extra_info("socket"));
}

// A non-blocking socket the test owns (closed at scope exit).
detail::UniqueFd make_socket(int family, int type) {
    int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    return detail::UniqueFd(fd);
}

// A loopback UDP port nobody listens on (bound, then closed again).
uint16_t closed_udp_port() {
    detail::UniqueFd fd = make_socket(AF_INET, SOCK_DGRAM);
    detail::bind_socket(fd.get(), SocketAddress::from_numeric("127.0.0.1", 0));
    return local_address(fd.get()).port();
}

HostPort loopback(uint16_t port = 0) { return HostPort{"127.0.0.1", port}; }
HostPort host_port(const SocketAddress& address) {
    return HostPort{address.host(), address.port()};
}

class DatagramTest : public LoopTest {
protected:
    void SetUp() override {
        LoopTest::SetUp();
        std::string pattern = (std::filesystem::temp_directory_path() / "dgram-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir = pattern;
    }
    void TearDown() override {
        LoopTest::TearDown();
        std::filesystem::remove_all(dir);
    }

    Endpoint open(DatagramOptions options) {
        auto connection = loop->run_until_complete(loop->create_datagram_endpoint(
            [] { return std::make_shared<RecordingProtocol>(); }, std::move(options)));
        return {connection.transport,
                std::dynamic_pointer_cast<RecordingProtocol>(connection.protocol)};
    }

    // The exception that creating an endpoint with `options` fails with.
    std::exception_ptr open_error(DatagramOptions options) {
        auto future = loop->create_datagram_endpoint(
            [] { return std::make_shared<RecordingProtocol>(); }, std::move(options));
        try {
            loop->run_until_complete(future);
        } catch (...) {
            return std::current_exception();
        }
        ADD_FAILURE() << "the endpoint was created";
        return nullptr;
    }

    // Closes the endpoint and runs until connection_lost has been called.
    void close_and_wait(const Endpoint& endpoint) {
        endpoint.transport->close();
        run_until([&] { return endpoint.protocol->lost > 0; });
    }

    std::string path(const std::string& name) const { return (dir / name).string(); }

    void check_echo(const std::string& host);

    std::filesystem::path dir;
};

int errno_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        return e.code().value();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "not a system_error: " << e.what();
    }
    return 0;
}

// Ports test_events._test_create_datagram_endpoint: a server endpoint
// bound to `host` echoes "resp:" + data to a client endpoint connected to it.
void DatagramTest::check_echo(const std::string& host) {
    Endpoint server = open({.local_addr = HostPort{host, 0}});
    server.protocol->on_datagram = [&](std::string_view data, const SocketAddress& from) {
        server.transport->sendto("resp:" + std::string(data), from);
    };
    Endpoint client = open({.remote_addr = host_port(sockname(server.transport))});
    EXPECT_EQ(client.protocol->made, 1);
    EXPECT_EQ(std::any_cast<SocketAddress>(client.transport->get_extra_info("peername")),
              sockname(server.transport));

    client.transport->sendto("xxx");
    run_until([&] { return !client.protocol->datagrams.empty(); });

    EXPECT_EQ(server.protocol->datagrams, std::vector<std::string>{"xxx"});
    EXPECT_EQ(server.protocol->senders.at(0), sockname(client.transport));
    EXPECT_EQ(client.protocol->datagrams, std::vector<std::string>{"resp:xxx"});
    close_and_wait(client);
    close_and_wait(server);
    EXPECT_EQ(server.protocol->events.back(), "lost");
    EXPECT_EQ(client.protocol->lost, 1);
    EXPECT_EQ(client.protocol->lost_error, nullptr);
}

// Ports test_events.test_create_datagram_endpoint.
TEST_F(DatagramTest, EchoOverLoopback) { check_echo("127.0.0.1"); }

// Ports test_events.test_create_datagram_endpoint_ipv6.
TEST_F(DatagramTest, EchoOverIpv6Loopback) { check_echo("::1"); }

// Ports test_events.test_create_datagram_endpoint (its name-resolving
// form): "localhost" goes through loop.getaddrinfo.
TEST_F(DatagramTest, LocalhostIsResolved) {
    Endpoint server = open({.local_addr = HostPort{"localhost", 0}, .family = AF_INET});
    EXPECT_EQ(sockname(server.transport).host(), "127.0.0.1");
    Endpoint client = open({.remote_addr = HostPort{"localhost", sockname(server.transport).port()},
                            .family = AF_INET});
    client.transport->sendto("ping");
    run_until([&] { return !server.protocol->datagrams.empty(); });
    EXPECT_EQ(server.protocol->datagrams.at(0), "ping");
    close_and_wait(client);
    close_and_wait(server);
}

// Ports test_selector_events.test_sendto_no_data (3.13 sends b''): an
// empty datagram reaches the peer as one.
TEST_F(DatagramTest, EmptyDatagramIsSent) {
    Endpoint server = open({.local_addr = loopback()});
    Endpoint client = open({.remote_addr = host_port(sockname(server.transport))});
    client.transport->sendto("");
    client.transport->sendto("after");
    run_until([&] { return server.protocol->datagrams.size() >= 2; });
    EXPECT_EQ(server.protocol->datagrams, (std::vector<std::string>{"", "after"}));
    close_and_wait(client);
    close_and_wait(server);
}

// A burst larger than one read callback takes (the poll reports a wake-up,
// not a level) is delivered whole and in order.
TEST_F(DatagramTest, BurstOfDatagramsIsDeliveredInOrder) {
    Endpoint server = open({.local_addr = loopback()});
    detail::UniqueFd sender = make_socket(AF_INET, SOCK_DGRAM);
    SocketAddress to = sockname(server.transport);
    constexpr int count = 200;
    for (int i = 0; i < count; ++i) {
        std::string datagram = std::to_string(i);
        ASSERT_EQ(::sendto(sender.get(), datagram.data(), datagram.size(), 0, to.data(), to.size()),
                  static_cast<ssize_t>(datagram.size()));
    }
    run_until([&] { return server.protocol->datagrams.size() >= count; });
    ASSERT_EQ(server.protocol->datagrams.size(), static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        ASSERT_EQ(server.protocol->datagrams[i], std::to_string(i));
    }
    close_and_wait(server);
}

// asyncio lets an exception from datagram_received reach the loop's
// exception handler (it is raised out of _read_ready); the endpoint keeps
// reading, and the datagrams behind it still arrive.
TEST_F(DatagramTest, DatagramReceivedExceptionGoesToHandlerAndReadingGoesOn) {
    record_reports();
    Endpoint server = open({.local_addr = loopback()});
    server.protocol->on_datagram = [](std::string_view data, const SocketAddress&) {
        if (data == "boom") {
            throw std::runtime_error("protocol failed");
        }
    };
    detail::UniqueFd sender = make_socket(AF_INET, SOCK_DGRAM);
    SocketAddress to = sockname(server.transport);
    for (const char* datagram : {"one", "boom", "two", "three"}) {
        ASSERT_GT(::sendto(sender.get(), datagram, std::strlen(datagram), 0, to.data(), to.size()),
                  0);
    }
    run_until([&] { return server.protocol->datagrams.size() >= 4; });
    EXPECT_EQ(server.protocol->datagrams,
              (std::vector<std::string>{"one", "boom", "two", "three"}));
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(testing::what_of(reports[0].exception), "protocol failed");
    EXPECT_FALSE(server.transport->is_closing());
    close_and_wait(server);
}

// Ports test_selector_events.test_sendto_connected_addr: a connected
// endpoint refuses any other address, and takes its own.
TEST_F(DatagramTest, ConnectedEndpointRefusesOtherAddress) {
    Endpoint server = open({.local_addr = loopback()});
    SocketAddress remote = sockname(server.transport);
    Endpoint client = open({.remote_addr = host_port(remote)});

    expect_throw_with_message<std::invalid_argument>(
        [&] { client.transport->sendto("x", SocketAddress::from_numeric("127.0.0.1", 9)); },
        "Invalid address: must be None or " + remote.to_string());
    client.transport->sendto("ok", remote);
    run_until([&] { return !server.protocol->datagrams.empty(); });
    EXPECT_EQ(server.protocol->datagrams, std::vector<std::string>{"ok"});
    close_and_wait(client);
    close_and_wait(server);
}

// Ports test_selector_events.test_sendto_error_received_connected with a
// real ICMP: a connected endpoint sending to a closed port hears
// ECONNREFUSED through error_received, stays open, and sends again once
// someone listens there.
TEST_F(DatagramTest, ConnectedEndpointReceivesConnectionRefusedAndStaysOpen) {
    uint16_t port = closed_udp_port();
    Endpoint client = open({.remote_addr = loopback(port)});
    client.transport->sendto("nobody");
    run_until([&] { return !client.protocol->errors.empty(); });
    EXPECT_EQ(client.protocol->errors.at(0), ECONNREFUSED);
    EXPECT_FALSE(client.transport->is_closing());
    EXPECT_EQ(client.protocol->lost, 0);

    Endpoint server = open({.local_addr = loopback(port)});
    client.transport->sendto("somebody");
    run_until([&] { return !server.protocol->datagrams.empty(); });
    EXPECT_EQ(server.protocol->datagrams.at(0), "somebody");
    close_and_wait(client);
    close_and_wait(server);
}

// Ports test_selector_events.test_sendto_error_received: on an unconnected
// endpoint a failing send (an IPv6 address on an IPv4 socket, a datagram
// larger than UDP allows) goes to error_received; the endpoint stays open.
TEST_F(DatagramTest, UnconnectedEndpointReceivesSendErrorsAndStaysOpen) {
    Endpoint server = open({.local_addr = loopback()});
    Endpoint sender = open({.local_addr = loopback()});

    sender.transport->sendto("x", SocketAddress::from_numeric("::1", 9));
    sender.transport->sendto(std::string(70000, 'x'), sockname(server.transport));
    EXPECT_EQ(sender.protocol->errors, (std::vector<int>{EAFNOSUPPORT, EMSGSIZE}));
    EXPECT_EQ(sender.transport->get_write_buffer_size(), 0U);

    sender.transport->sendto("fine", sockname(server.transport));
    run_until([&] { return !server.protocol->datagrams.empty(); });
    EXPECT_EQ(server.protocol->datagrams.at(0), "fine");
    EXPECT_FALSE(sender.transport->is_closing());
    close_and_wait(sender);
    close_and_wait(server);
}

// Ports test_base_events.test_create_datagram_endpoint_sock: the endpoint
// takes the given socket (made non-blocking) and closes it after
// connection_lost.
TEST_F(DatagramTest, SockIsUsedAndClosedAfterConnectionLost) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // blocking, as a caller may pass it
    ASSERT_GE(fd, 0);
    detail::bind_socket(fd, SocketAddress::from_numeric("127.0.0.1", 0));
    SocketAddress bound = local_address(fd);

    Endpoint endpoint = open({.sock = fd});
    EXPECT_EQ(socket_of(endpoint.transport), fd);
    EXPECT_EQ(sockname(endpoint.transport), bound);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_FALSE(endpoint.transport->get_extra_info("peername").has_value());

    close_and_wait(endpoint);
    EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "the transport left its socket open";
    EXPECT_FALSE(endpoint.transport->get_extra_info("socket").has_value());
}

// Ports test_base_events.test_create_datagram_endpoint_sock_sockopts: every
// address option is refused next to sock=, and named in the message.
TEST_F(DatagramTest, SockWithOtherOptionsIsRefused) {
    detail::UniqueFd fd = make_socket(AF_INET, SOCK_DGRAM);
    auto message_of = [&](DatagramOptions options) {
        options.sock = fd.get();
        return testing::what_of(open_error(options));
    };
    EXPECT_EQ(message_of({.local_addr = loopback()}),
              "socket modifier keyword arguments can not be used when sock is specified. "
              "(local_addr=('127.0.0.1', 0))");
    EXPECT_NE(message_of({.remote_addr = loopback(9)}).find("remote_addr=('127.0.0.1', 9)"),
              std::string::npos);
    EXPECT_NE(message_of({.family = AF_INET}).find("family=2"), std::string::npos);
    EXPECT_NE(message_of({.proto = IPPROTO_UDP}).find("proto=17"), std::string::npos);
    EXPECT_NE(message_of({.flags = AI_CANONNAME}).find("flags="), std::string::npos);
    EXPECT_NE(message_of({.reuse_port = true}).find("reuse_port=True"), std::string::npos);
    EXPECT_NE(message_of({.allow_broadcast = true}).find("allow_broadcast=True"),
              std::string::npos);
    EXPECT_EQ(::fcntl(fd.get(), F_GETFD) >= 0, true) << "a refused sock stays the caller's";
}

// Ports test_base_events.test_create_datagram_endpoint_wrong_sock: a stream
// socket is refused.
TEST_F(DatagramTest, StreamSockIsRefused) {
    detail::UniqueFd fd = make_socket(AF_INET, SOCK_STREAM);
    std::string message = testing::what_of(open_error({.sock = fd.get()}));
    EXPECT_EQ(message.rfind("A datagram socket was expected", 0), 0U) << message;
}

// Ports test_base_events.test_create_datagram_endpoint_sockopts (its
// reuse_port part): two endpoints with reuse_port bind one port; without
// it the second bind fails with EADDRINUSE.
TEST_F(DatagramTest, ReusePortLetsTwoEndpointsBindOnePort) {
    Endpoint first = open({.local_addr = loopback(), .reuse_port = true});
    uint16_t port = sockname(first.transport).port();
    Endpoint second = open({.local_addr = loopback(port), .reuse_port = true});
    EXPECT_EQ(sockname(second.transport).port(), port);
    EXPECT_EQ(detail::get_socket_option(socket_of(second.transport), SOL_SOCKET, SO_REUSEPORT,
                                        "SO_REUSEPORT"),
              1);
    EXPECT_EQ(errno_of(open_error({.local_addr = loopback(port)})), EADDRINUSE);
    close_and_wait(first);
    close_and_wait(second);
}

// Ports test_base_events.test_create_datagram_endpoint_sockopts (its
// allow_broadcast part): SO_BROADCAST is set, and only when asked for.
TEST_F(DatagramTest, AllowBroadcastSetsSoBroadcast) {
    Endpoint plain = open({.local_addr = loopback()});
    Endpoint broadcast = open({.local_addr = loopback(), .allow_broadcast = true});
    auto option = [](const Endpoint& endpoint) {
        return detail::get_socket_option(socket_of(endpoint.transport), SOL_SOCKET, SO_BROADCAST,
                                         "SO_BROADCAST");
    };
    EXPECT_EQ(option(plain), 0);
    EXPECT_EQ(option(broadcast), 1);
    close_and_wait(plain);
    close_and_wait(broadcast);
}

// With allow_broadcast asyncio keeps remote_addr for sendto() but does not
// connect (base_events: "if not allow_broadcast: await sock_connect").
TEST_F(DatagramTest, AllowBroadcastWithRemoteAddrSendsWithoutConnecting) {
    Endpoint server = open({.local_addr = loopback()});
    Endpoint client =
        open({.remote_addr = host_port(sockname(server.transport)), .allow_broadcast = true});
    EXPECT_FALSE(client.transport->get_extra_info("peername").has_value());
    client.transport->sendto("hello");
    run_until([&] { return !server.protocol->datagrams.empty(); });
    EXPECT_EQ(server.protocol->datagrams.at(0), "hello");
    close_and_wait(client);
    close_and_wait(server);
}

// asyncio's _SelectorDatagramTransport schedules connection_made before it
// starts reading: a datagram that waits in the socket from the start
// reaches the protocol after connection_made, and the endpoint's future
// completes only once connection_made has run.
TEST_F(DatagramTest, ConnectionMadeComesBeforeDatagramReceived) {
    detail::UniqueFd receiver = make_socket(AF_INET, SOCK_DGRAM);
    detail::bind_socket(receiver.get(), SocketAddress::from_numeric("127.0.0.1", 0));
    detail::UniqueFd sender = make_socket(AF_INET, SOCK_DGRAM);
    SocketAddress to = local_address(receiver.get());
    ASSERT_EQ(::sendto(sender.get(), "early", 5, 0, to.data(), to.size()), 5);

    Endpoint endpoint = open({.sock = receiver.release()});
    EXPECT_EQ(endpoint.protocol->made, 1);
    run_until([&] { return !endpoint.protocol->datagrams.empty(); });
    EXPECT_EQ(endpoint.protocol->events, (std::vector<std::string>{"made", "datagram:early"}));
    close_and_wait(endpoint);
}

// A Unix datagram socketpair whose `peer` end the test reads (or not).
struct UnixPair {
    detail::UniqueFd ours;
    detail::UniqueFd peer;
    UnixPair() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
        ours.reset(fds[0]);
        peer.reset(fds[1]);
    }
    std::vector<std::string> drain_peer() {
        std::vector<std::string> received;
        char buffer[4096];
        ssize_t n;
        while ((n = ::recv(peer.get(), buffer, sizeof buffer, 0)) >= 0) {
            received.emplace_back(buffer, static_cast<std::size_t>(n));
        }
        return received;
    }
};

// Sends numbered 1 KiB datagrams until the socket refuses one (it is
// queued) and `more_after` further ones; returns how many were sent.
int fill(DatagramTransport& transport, int more_after) {
    int sent = 0;
    while (transport.get_write_buffer_size() == 0) {
        std::string datagram(1024, 'x');
        datagram.replace(0, std::to_string(sent).size(), std::to_string(sent));
        transport.sendto(datagram);
        ++sent;
        if (sent > 100000) {
            ADD_FAILURE() << "the socket never refused a datagram";
            return sent;
        }
    }
    for (int i = 0; i < more_after; ++i) {
        transport.sendto(std::string(1024, 'q'));
        ++sent;
    }
    return sent;
}

// Ports test_selector_events.test_sendto_buffer / test_sendto_ready /
// test_sendto_ready_closing on a real socket: close() keeps the queued
// datagrams, sends them once the peer reads, then calls connection_lost
// once, on a later iteration, and closes the socket.
TEST_F(DatagramTest, CloseSendsQueuedDatagramsThenConnectionLostOnce) {
    UnixPair pair;
    Endpoint endpoint = open({.sock = pair.ours.release()});
    int sent = fill(*endpoint.transport, 3);
    EXPECT_EQ(endpoint.transport->get_write_buffer_size(), 4U * (1024 + 8))
        << "asyncio counts 8 bytes of header per queued datagram";

    endpoint.transport->close();
    EXPECT_TRUE(endpoint.transport->is_closing());
    run_briefly();
    EXPECT_EQ(endpoint.protocol->lost, 0) << "connection_lost came before the queue was sent";

    std::vector<std::string> received;
    run_until([&] {
        for (std::string& datagram : pair.drain_peer()) {
            received.push_back(std::move(datagram));
        }
        return endpoint.protocol->lost > 0;
    });
    for (std::string& datagram : pair.drain_peer()) {
        received.push_back(std::move(datagram));
    }
    ASSERT_EQ(received.size(), static_cast<std::size_t>(sent));
    EXPECT_EQ(received.at(0).substr(0, 1), "0");
    EXPECT_EQ(received.back(), std::string(1024, 'q'));
    EXPECT_EQ(endpoint.transport->get_write_buffer_size(), 0U);
    run_briefly();
    EXPECT_EQ(endpoint.protocol->lost, 1);
    EXPECT_EQ(endpoint.protocol->events.back(), "lost");
}

// An idle close(): connection_lost(null) comes on a later iteration, not
// inside close(), exactly once even when close() is called again; a
// datagram sent after it on a connected endpoint is dropped (asyncio's
// test_sendto_closing).
TEST_F(DatagramTest, IdleCloseCallsConnectionLostLaterOnce) {
    Endpoint server = open({.local_addr = loopback()});
    Endpoint client = open({.remote_addr = host_port(sockname(server.transport))});
    client.transport->close();
    client.transport->close();
    EXPECT_EQ(client.protocol->lost, 0);
    client.transport->sendto("dropped");
    run_briefly();
    EXPECT_EQ(client.protocol->lost, 1);
    EXPECT_EQ(client.protocol->lost_error, nullptr);
    client.transport->abort();
    run_briefly();
    EXPECT_EQ(client.protocol->lost, 1);
    EXPECT_TRUE(server.protocol->datagrams.empty());
    close_and_wait(server);
}

// Ports test_selector_events' abort / _force_close cases: abort() drops the
// queue and calls connection_lost(null) on the next iteration; the peer
// gets only what was sent before.
TEST_F(DatagramTest, AbortDropsQueueAndCallsConnectionLost) {
    UnixPair pair;
    Endpoint endpoint = open({.sock = pair.ours.release()});
    int sent = fill(*endpoint.transport, 2);
    endpoint.transport->abort();
    EXPECT_TRUE(endpoint.transport->is_closing());
    EXPECT_EQ(endpoint.transport->get_write_buffer_size(), 0U);
    EXPECT_EQ(endpoint.protocol->lost, 0);
    run_briefly();
    EXPECT_EQ(endpoint.protocol->lost, 1);
    EXPECT_EQ(endpoint.protocol->lost_error, nullptr);
    EXPECT_EQ(pair.drain_peer().size(), static_cast<std::size_t>(sent - 3));
}

// Ports test_selector_events.test_sendto_buffer / test_sendto_ready and the
// flow-control mixin: pause_writing once the buffer goes above 64 KiB,
// resume_writing once it is back to 16 KiB or below.
TEST_F(DatagramTest, FlowControlPausesAndResumesWriting) {
    UnixPair pair;
    Endpoint endpoint = open({.sock = pair.ours.release()});
    auto* concrete = dynamic_cast<detail::SocketDatagramTransport*>(endpoint.transport.get());
    ASSERT_NE(concrete, nullptr);
    EXPECT_EQ(concrete->get_write_buffer_limits(),
              (std::pair<std::size_t, std::size_t>{16 * 1024, 64 * 1024}));
    fill(*endpoint.transport, 0);
    while (endpoint.transport->get_write_buffer_size() <= 64 * 1024) {
        EXPECT_EQ(endpoint.protocol->paused, 0);
        endpoint.transport->sendto(std::string(1024, 'y'));
    }
    EXPECT_EQ(endpoint.protocol->paused, 1);
    endpoint.transport->sendto(std::string(1024, 'y'));
    EXPECT_EQ(endpoint.protocol->paused, 1) << "pause_writing is called once";
    EXPECT_EQ(endpoint.protocol->resumed, 0);

    run_until([&] {
        pair.drain_peer();
        return endpoint.protocol->resumed > 0;
    });
    EXPECT_LE(endpoint.transport->get_write_buffer_size(), 16U * 1024);
    EXPECT_EQ(endpoint.protocol->paused, 1);
    close_and_wait(endpoint);
}

// set_write_buffer_limits: asyncio's rules, and a pause at once when the
// buffer is already above the new high-water mark.
TEST_F(DatagramTest, SetWriteBufferLimitsFollowsAsyncioRules) {
    UnixPair pair;
    Endpoint endpoint = open({.sock = pair.ours.release()});
    auto* concrete = dynamic_cast<detail::SocketDatagramTransport*>(endpoint.transport.get());
    ASSERT_NE(concrete, nullptr);
    concrete->set_write_buffer_limits(std::nullopt, 1000);
    EXPECT_EQ(concrete->get_write_buffer_limits(),
              (std::pair<std::size_t, std::size_t>{1000, 4000}));
    expect_throw_with_message<std::invalid_argument>(
        [&] { concrete->set_write_buffer_limits(1, 2); },
        "high (1) must be >= low (2) must be >= 0");
    fill(*endpoint.transport, 2);
    EXPECT_EQ(endpoint.protocol->paused, 0);
    concrete->set_write_buffer_limits(100);
    EXPECT_EQ(endpoint.protocol->paused, 1);
    endpoint.transport->abort();
    run_until([&] { return endpoint.protocol->lost > 0; });
}

// asyncio's AF_UNIX branch of create_datagram_endpoint (the address is the
// path): two Unix datagram endpoints bound to paths talk to each other.
TEST_F(DatagramTest, UnixEndpointsTalk) {
    Endpoint server = open({.local_addr = HostPort{path("server")}, .family = AF_UNIX});
    server.protocol->on_datagram = [&](std::string_view data, const SocketAddress& from) {
        server.transport->sendto("re:" + std::string(data), from);
    };
    Endpoint client = open({.local_addr = HostPort{path("client")},
                            .remote_addr = HostPort{path("server")},
                            .family = AF_UNIX});
    EXPECT_EQ(sockname(client.transport).unix_path(), path("client"));
    client.transport->sendto("hi");
    run_until([&] { return !client.protocol->datagrams.empty(); });
    EXPECT_EQ(server.protocol->senders.at(0).unix_path(), path("client"));
    EXPECT_EQ(client.protocol->datagrams.at(0), "re:hi");
    close_and_wait(client);
    close_and_wait(server);
}

// Ports test_base_events.test_create_datagram_endpoint_existing_sock_unix:
// a stale socket file at local_addr is removed before binding.
TEST_F(DatagramTest, UnixEndpointReplacesStaleSocketFile) {
    {
        detail::UniqueFd stale = make_socket(AF_UNIX, SOCK_DGRAM);
        detail::bind_socket(stale.get(), SocketAddress::from_unix_path(path("stale")));
    }
    Endpoint endpoint = open({.local_addr = HostPort{path("stale")}, .family = AF_UNIX});
    EXPECT_EQ(sockname(endpoint.transport).unix_path(), path("stale"));
    close_and_wait(endpoint);
}

// Ports test_base_events.test_create_datagram_endpoint_connect_err: a
// remote Unix path that does not exist fails with its errno.
TEST_F(DatagramTest, ConnectErrorFailsTheFuture) {
    EXPECT_EQ(errno_of(open_error({.remote_addr = HostPort{path("missing")}, .family = AF_UNIX})),
              ENOENT);
}

// Ports test_base_events.test_create_datagram_endpoint_cant_bind: the bind
// error of the only address pair is raised.
TEST_F(DatagramTest, BindErrorFailsTheFuture) {
    std::exception_ptr error = open_error({.local_addr = HostPort{"192.0.2.1", 0}});
    EXPECT_EQ(errno_of(error), EADDRNOTAVAIL);
    EXPECT_NE(testing::what_of(error).find("bind 192.0.2.1:0"), std::string::npos);
}

// What libc answers for an empty host (loopback of every family), in its
// order: the (local, remote) pairs create_datagram_endpoint will try.
std::vector<SocketAddress> loopback_addresses(uint16_t port) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* answer = nullptr;
    std::string service = std::to_string(port);
    EXPECT_EQ(::getaddrinfo(nullptr, service.c_str(), &hints, &answer), 0);
    std::vector<SocketAddress> addresses;
    for (addrinfo* entry = answer; entry != nullptr; entry = entry->ai_next) {
        addresses.emplace_back(entry->ai_addr, entry->ai_addrlen);
    }
    ::freeaddrinfo(answer);
    return addresses;
}

// Sockets that hold `port` on each of `addresses` (no SO_REUSEPORT), or
// none when some address has it taken already.
std::vector<detail::UniqueFd> occupy(const std::vector<SocketAddress>& addresses) {
    std::vector<detail::UniqueFd> held;
    for (const SocketAddress& address : addresses) {
        detail::UniqueFd fd = make_socket(address.family(), SOCK_DGRAM);
        if (::bind(fd.get(), address.data(), address.size()) != 0) {
            return {};
        }
        held.push_back(std::move(fd));
    }
    return held;
}

// The loopback addresses of a port that is free on all of them.
std::vector<SocketAddress> free_loopback_addresses() {
    for (int attempt = 0; attempt < 20; ++attempt) {
        std::vector<SocketAddress> addresses = loopback_addresses(closed_udp_port());
        if (!occupy(addresses).empty()) {
            return addresses;
        }
    }
    ADD_FAILURE() << "no port free on every loopback address";
    return {};
}

// Extends test_base_events.test_create_datagram_endpoint_cant_bind to
// several address pairs: when binding the first resolved address fails,
// the next pair is tried.
TEST_F(DatagramTest, NextAddressPairIsTriedWhenOneFails) {
    std::vector<SocketAddress> addresses = free_loopback_addresses();
    if (addresses.size() < 2) {
        GTEST_SKIP() << "the empty host resolves to a single loopback address here";
    }
    std::vector<detail::UniqueFd> taken = occupy({addresses[0]});
    ASSERT_EQ(taken.size(), 1U);

    Endpoint endpoint = open({.local_addr = HostPort{"", addresses[0].port()}});
    EXPECT_EQ(sockname(endpoint.transport), addresses[1]);
    close_and_wait(endpoint);
}

// When every pair fails, asyncio 3.13 raises the first attempt's error
// (base_events: "raise exceptions[0]").
TEST_F(DatagramTest, FirstErrorIsRaisedWhenEveryPairFails) {
    std::vector<SocketAddress> addresses = free_loopback_addresses();
    if (addresses.size() < 2) {
        GTEST_SKIP() << "the empty host resolves to a single loopback address here";
    }
    std::vector<detail::UniqueFd> taken = occupy(addresses);
    ASSERT_EQ(taken.size(), addresses.size());

    std::exception_ptr error = open_error({.local_addr = HostPort{"", addresses[0].port()}});
    EXPECT_EQ(errno_of(error), EADDRINUSE);
    EXPECT_EQ(testing::what_of(error).find("bind " + addresses[0].to_string()), 0U)
        << testing::what_of(error);
}

// Ports test_base_events.test_create_datagram_endpoint_noaddr_nofamily and
// test_create_datagram_endpoint_sock_unix: without any address a family is
// needed; with one, an unbound socket of it is made.
TEST_F(DatagramTest, NoAddressNeedsFamily) {
    EXPECT_EQ(testing::what_of(open_error({})), "unexpected address family");
    Endpoint endpoint = open({.family = AF_INET});
    EXPECT_EQ(sockname(endpoint.transport).family(), AF_INET);
    EXPECT_EQ(sockname(endpoint.transport).port(), 0);
    close_and_wait(endpoint);
    Endpoint unix_endpoint = open({.family = AF_UNIX});
    EXPECT_EQ(sockname(unix_endpoint.transport).family(), AF_UNIX);
    close_and_wait(unix_endpoint);
}

// Ports test_base_events.test_create_datagram_endpoint_no_matching_family:
// a local and a remote address of different families leave no pair to try.
TEST_F(DatagramTest, LocalAndRemoteOfDifferentFamiliesAreRefused) {
    EXPECT_EQ(testing::what_of(open_error(
                  {.local_addr = HostPort{"::1", 0}, .remote_addr = HostPort{"127.0.0.1", 9}})),
              "can not get address information");
}

// The factory must make a DatagramProtocol; nothing is left open otherwise.
TEST_F(DatagramTest, NonDatagramProtocolIsRefused) {
    auto future = loop->create_datagram_endpoint([] { return std::make_shared<Protocol>(); },
                                                 {.local_addr = loopback()});
    EXPECT_THROW(loop->run_until_complete(future), std::invalid_argument);
}

// asyncio's create_datagram_endpoint closes the transport when awaiting
// its waiter is cancelled: connection_made, then connection_lost.
TEST_F(DatagramTest, CancellingCreationClosesTheTransport) {
    auto protocol = std::make_shared<RecordingProtocol>();
    auto future =
        loop->create_datagram_endpoint([protocol] { return protocol; }, {.local_addr = loopback()});
    run_briefly();  // the task made the socket and waits for connection_made
    EXPECT_TRUE(future.cancel());
    run_until([&] { return protocol->lost > 0; });
    EXPECT_TRUE(future.cancelled());
    EXPECT_EQ(protocol->events, (std::vector<std::string>{"made", "lost"}));
}

// Ports the debug-mode log line of base_events.create_datagram_endpoint.
TEST_F(DatagramTest, DebugModeLogsTheNewEndpoint) {
    loop->set_debug(true);
    Endpoint endpoint = open({.local_addr = loopback()});
    EXPECT_TRUE(log_capture.contains(
        LogLevel::info,
        "Datagram endpoint local_addr=('127.0.0.1', 0) remote_addr=None created: "
        "<SocketDatagramTransport fd="));
    close_and_wait(endpoint);
}

// get_protocol / set_protocol: datagrams go to the new protocol; a
// protocol that is not a DatagramProtocol is refused.
TEST_F(DatagramTest, SetProtocolSwitchesDatagramsToTheNewProtocol) {
    Endpoint server = open({.local_addr = loopback()});
    EXPECT_EQ(server.transport->get_protocol(), server.protocol);
    auto replacement = std::make_shared<RecordingProtocol>();
    server.transport->set_protocol(replacement);
    EXPECT_EQ(server.transport->get_protocol(), replacement);
    EXPECT_THROW(server.transport->set_protocol(std::make_shared<Protocol>()),
                 std::invalid_argument);

    Endpoint client = open({.remote_addr = host_port(sockname(server.transport))});
    client.transport->sendto("to the new one");
    run_until([&] { return !replacement->datagrams.empty(); });
    EXPECT_TRUE(server.protocol->datagrams.empty());
    close_and_wait(client);
    server.transport->close();
    run_until([&] { return replacement->lost > 0; });
}

// repr() shows the fd and the state, as asyncio's __repr__ does.
TEST_F(DatagramTest, ReprShowsState) {
    Endpoint endpoint = open({.local_addr = loopback()});
    std::string fd = std::to_string(socket_of(endpoint.transport));
    run_briefly();
    EXPECT_EQ(endpoint.transport->repr(),
              "<SocketDatagramTransport fd=" + fd + " read=polling write=<idle, bufsize=0>>");
    endpoint.transport->close();
    EXPECT_EQ(endpoint.transport->repr().rfind("<SocketDatagramTransport closing fd=" + fd, 0), 0U);
    run_until([&] { return endpoint.protocol->lost > 0; });
    EXPECT_EQ(endpoint.transport->repr(), "<SocketDatagramTransport closed fd=" + fd + ">");
}

// An endpoint still open when the loop closes: its socket is closed and its
// protocol released without connection_lost (asyncio's loop.close() drops
// the pending callbacks); a second fd-owner check: add_reader is refused
// while the transport owns the fd.
TEST_F(DatagramTest, LoopCloseReleasesOpenEndpoint) {
    Endpoint endpoint = open({.local_addr = loopback()});
    int fd = socket_of(endpoint.transport);
    EXPECT_THROW(loop->add_reader(fd, [] {}), RuntimeError);
    std::weak_ptr<RecordingProtocol> protocol = endpoint.protocol;
    endpoint.protocol.reset();

    loop->close();
    EXPECT_TRUE(protocol.expired()) << "the protocol outlived the loop's close";
    EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "the socket outlived the loop's close";
    EXPECT_TRUE(endpoint.transport->is_closing());
    EXPECT_EQ(endpoint.transport->repr(),
              "<SocketDatagramTransport closed fd=" + std::to_string(fd) + ">");
}

}  // namespace
}  // namespace shardloop
