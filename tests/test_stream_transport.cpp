// The socket transport (net/stream_transport.cpp) on real Unix socketpairs
// and loopback TCP connections: the Protocol and BufferedProtocol
// callbacks, reading flow control, the write buffer and its watermarks,
// half-close, close/abort, errors, and big transfers. Cases ported from
// CPython 3.13's Lib/test/test_asyncio (test_selector_events.py
// SelectorSocketTransportTests and SelectorSocketTransportBufferedProtocolTests,
// test_transports.py, test_events.py) name the original; the fixture checks
// at teardown that no fd, task or fiber stack leaked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"
#include "support/stream_helpers.hpp"

namespace shardloop {
namespace {

using testing::error_code_of;
using testing::Fd;
using testing::PeerReader;
using testing::RecordingBufferedProtocol;
using testing::RecordingProtocol;
using testing::same_bytes;
using testing::shrink_socket_buffers;
using testing::SocketPair;
using testing::StreamTest;
using testing::TcpPair;
using testing::what_of;

using StreamTransportTest = StreamTest;

void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        ASSERT_GT(n, 0) << std::strerror(errno);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// A send that may fail: the transport may already have closed its end.
void try_send(int fd, std::string_view data) {
    (void)::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
}

// ---- Connection set-up and introspection ----

// test_events.py's MyProto asserts its state on every callback:
// connection_made comes first, even when the peer's bytes were already
// waiting before the transport existed.
TEST_F(StreamTransportTest, ConnectionMadeComesBeforeAnyDataReceived) {
    SocketPair pair;
    send_all(pair.b.get(), "early bytes");
    auto protocol = std::make_shared<RecordingProtocol>();
    bool transport_reading_at_made = false;
    protocol->on_made = [&] { transport_reading_at_made = protocol->transport()->is_reading(); };
    auto transport = connect(pair.a, protocol);

    run_until([&] { return protocol->data == "early bytes"; });
    ASSERT_GE(protocol->events.size(), 2U);
    EXPECT_EQ(protocol->events[0], "made");
    EXPECT_EQ(protocol->events[1], "data");
    EXPECT_TRUE(transport_reading_at_made);
    EXPECT_EQ(protocol->base.get(), static_cast<BaseTransport*>(transport.get()));
    EXPECT_EQ(transport->get_protocol(), protocol);

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// A peer that answers at once keeps completions coming: an iteration must
// still end after the completions it found, so that timers and the ready
// queue get their turn (liburing's batch peek would enter the kernel for
// the task work that keeps arriving, and the iteration would last as long
// as the traffic). The peer is a thread echoing on a blocking socket; the
// loop's side sends a copy, which write() sends at once.
TEST_F(StreamTransportTest, EndlessPingPongDoesNotHoldAnIterationOrATimer) {
    SocketPair pair;
    int flags = ::fcntl(pair.b.get(), F_GETFL);
    ASSERT_EQ(::fcntl(pair.b.get(), F_SETFL, flags & ~O_NONBLOCK), 0);
    std::thread echo([fd = pair.b.get()] {
        char buffer[256];
        for (;;) {
            ssize_t n = ::read(fd, buffer, sizeof buffer);
            if (n <= 0 || ::send(fd, buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) {
                return;
            }
        }
    });
    auto ping = std::make_shared<RecordingProtocol>();
    uint64_t exchanges = 0;
    ping->on_data = [&](std::string_view data) {
        ++exchanges;
        std::string copy(data);
        ping->transport()->write(copy);
    };
    auto a = connect(pair.a, ping);
    a->write("ping");
    LoopStats before = loop->stats();
    bool fired = false;
    loop->call_later(0.05, [&] { fired = true; });
    run_until([&] { return fired; }, 2.0);
    LoopStats after = loop->stats();
    uint64_t iterations = after.iterations - before.iterations;
    EXPECT_GT(exchanges, 10u);
    EXPECT_GT(iterations, 10u);
    // One message in flight: a few completions per iteration, not thousands.
    EXPECT_LT((after.io_completions - before.io_completions) / iterations, 16u);
    ::shutdown(pair.b.get(), SHUT_RDWR);  // ends the echo thread
    echo.join();
    a->close();
    run_until([&] { return ping->lost == 1; });
}

// test_events.py _basetest_create_connection: get_extra_info("socket"),
// "peername" and "sockname" of a TCP transport; an unknown key gives the
// default.
TEST_F(StreamTransportTest, GetExtraInfoGivesSocketPeernameAndSockname) {
    TcpPair pair;
    int fd = pair.client.get();
    SocketAddress expected_peer = local_address(pair.server.get());
    SocketAddress expected_local = peer_address(pair.server.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.client, protocol);

    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("socket")), fd);
    auto peer = std::any_cast<SocketAddress>(transport->get_extra_info("peername"));
    auto local = std::any_cast<SocketAddress>(transport->get_extra_info("sockname"));
    EXPECT_EQ(peer, expected_peer) << peer.to_string();
    EXPECT_EQ(local, expected_local) << local.to_string();
    EXPECT_EQ(peer.host(), "127.0.0.1");
    EXPECT_FALSE(transport->get_extra_info("pipe").has_value());
    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("no such key", 42)), 42);

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// The same through create_server + create_connection("127.0.0.1", port)
// (test_events.py test_create_connection): the two transports see each
// other's addresses.
TEST_F(StreamTransportTest, CreateConnectionTransportKnowsBothAddresses) {
    auto server_protocol = std::make_shared<RecordingProtocol>();
    auto server = loop->run_until_complete(
        loop->create_server([server_protocol] { return server_protocol; }, "127.0.0.1", 0));
    ASSERT_EQ(server->sockets().size(), 1U);
    uint16_t port = local_address(server->sockets().front()).port();
    auto client_protocol = std::make_shared<RecordingProtocol>();
    auto connection = loop->run_until_complete(
        loop->create_connection([client_protocol] { return client_protocol; }, "127.0.0.1", port));
    run_until([&] { return server_protocol->made == 1; });

    auto client_peer =
        std::any_cast<SocketAddress>(connection.transport->get_extra_info("peername"));
    auto client_local =
        std::any_cast<SocketAddress>(connection.transport->get_extra_info("sockname"));
    auto server_peer =
        std::any_cast<SocketAddress>(server_protocol->transport()->get_extra_info("peername"));
    EXPECT_EQ(client_peer.port(), port);
    EXPECT_EQ(server_peer, client_local);

    connection.transport->write("ping");
    run_until([&] { return server_protocol->data == "ping"; });

    connection.transport->close();
    run_until([&] { return client_protocol->lost == 1 && server_protocol->lost == 1; });
    server->close();
    loop->run_until_complete(server->wait_closed());
}

// is_closing() and repr() follow the state: reading, paused, buffering,
// closing, closed (asyncio's _SelectorTransport.__repr__).
TEST_F(StreamTransportTest, ReprAndIsClosingFollowTheState) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    int fd = pair.a.get();
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    std::string fd_text = "fd=" + std::to_string(fd);

    EXPECT_FALSE(transport->is_closing());
    std::string repr = transport->repr();
    EXPECT_NE(repr.find("SocketTransport"), std::string::npos) << repr;
    EXPECT_NE(repr.find(fd_text), std::string::npos) << repr;
    EXPECT_NE(repr.find("read=polling"), std::string::npos) << repr;
    EXPECT_NE(repr.find("write=<idle, bufsize=0>"), std::string::npos) << repr;

    transport->pause_reading();
    EXPECT_NE(transport->repr().find("read=idle"), std::string::npos) << transport->repr();
    transport->resume_reading();

    transport->write(testing::pattern(1 << 20));
    std::size_t buffered = transport->get_write_buffer_size();
    ASSERT_GT(buffered, 0U);
    EXPECT_NE(transport->repr().find("write=<polling, bufsize=" + std::to_string(buffered) + ">"),
              std::string::npos)
        << transport->repr();

    transport->abort();
    EXPECT_TRUE(transport->is_closing());
    EXPECT_NE(transport->repr().find("closing"), std::string::npos) << transport->repr();
    run_until([&] { return protocol->lost == 1; });
    EXPECT_TRUE(transport->is_closing());
    EXPECT_NE(transport->repr().find("closed"), std::string::npos) << transport->repr();
    EXPECT_FALSE(transport->get_extra_info("socket").has_value());
}

// ---- Reading flow control ----

// test_selector_events.py test_pause_resume_reading: both idempotent;
// is_reading() follows; after close() neither does anything.
TEST_F(StreamTransportTest, PauseAndResumeReadingAreIdempotent) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);

    EXPECT_TRUE(transport->is_reading());
    transport->pause_reading();
    EXPECT_FALSE(transport->is_reading());
    transport->pause_reading();
    EXPECT_FALSE(transport->is_reading());
    transport->resume_reading();
    EXPECT_TRUE(transport->is_reading());
    transport->resume_reading();
    EXPECT_TRUE(transport->is_reading());

    send_all(pair.b.get(), "still reads");
    run_until([&] { return protocol->data == "still reads"; });

    transport->close();
    EXPECT_FALSE(transport->is_reading());
    transport->resume_reading();
    EXPECT_FALSE(transport->is_reading());
    transport->pause_reading();
    run_until([&] { return protocol->lost == 1; });
}

// No data_received while paused; what arrived meanwhile comes after
// resume_reading(), all of it.
TEST_F(StreamTransportTest, NoDataReceivedWhilePausedAndNothingLostAfterResume) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    transport->pause_reading();

    std::string sent = testing::pattern(100000);
    send_all(pair.b.get(), sent);
    run_iterations(10);
    EXPECT_EQ(protocol->data_calls, 0) << "data_received while paused";

    transport->resume_reading();
    run_until([&] { return protocol->data.size() >= sent.size(); });
    EXPECT_TRUE(same_bytes(protocol->data, sent));

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// pause_reading() inside data_received(): the bytes of the multishot
// receive's other completions are held, and the ones that arrive after
// resume_reading() must come after them (no reordering).
TEST_F(StreamTransportTest, PauseInsideDataReceivedKeepsByteOrderAcrossResume) {
    SocketPair pair;
    // More than two 64 KiB ring buffers: the multishot receive completes
    // several times in one batch.
    std::string first = testing::pattern(150000, 1);
    std::string later = testing::pattern(10000, 2);
    send_all(pair.b.get(), first);
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_data = [&](std::string_view) {
        if (protocol->data_calls == 1) {
            protocol->transport()->pause_reading();
        }
    };
    auto transport = connect(pair.a, protocol);
    run_until([&] { return protocol->data_calls == 1; });
    run_iterations(5);
    EXPECT_EQ(protocol->data_calls, 1) << "data_received while paused";
    EXPECT_LT(protocol->data.size(), first.size());

    send_all(pair.b.get(), later);
    transport->resume_reading();
    run_until([&] { return protocol->data.size() >= first.size() + later.size(); });
    EXPECT_TRUE(same_bytes(protocol->data, first + later));

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// The same with the peer's EOF among the held completions: eof_received()
// comes after every held byte, then connection_lost().
TEST_F(StreamTransportTest, EofHeldWhilePausedComesAfterTheHeldBytes) {
    SocketPair pair;
    std::string sent = testing::pattern(150000, 3);
    send_all(pair.b.get(), sent);
    ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_data = [&](std::string_view) {
        if (protocol->data_calls == 1) {
            protocol->transport()->pause_reading();
        }
    };
    auto transport = connect(pair.a, protocol);
    run_until([&] { return protocol->data_calls == 1; });
    run_iterations(5);
    EXPECT_EQ(protocol->eofs, 0) << "eof_received while paused";

    transport->resume_reading();
    run_until([&] { return protocol->lost == 1; });
    EXPECT_TRUE(same_bytes(protocol->data, sent));
    EXPECT_EQ(protocol->events, (std::vector<std::string>{"made", "data", "eof", "lost"}));
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// test_selector_events.py test_pause_reading_connection_made: paused in
// connection_made(), nothing is read until resume_reading().
TEST_F(StreamTransportTest, PauseReadingInConnectionMadeHoldsDataUntilResume) {
    SocketPair pair;
    send_all(pair.b.get(), "waiting");
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_made = [&] { protocol->transport()->pause_reading(); };
    auto transport = connect(pair.a, protocol);
    run_iterations(5);
    EXPECT_FALSE(transport->is_reading());
    EXPECT_EQ(protocol->data_calls, 0);

    transport->resume_reading();
    run_until([&] { return protocol->data == "waiting"; });
    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// ---- End of file ----

// test_selector_events.py test_read_ready_eof: eof_received() returning
// false closes the transport: connection_lost(null) follows, and the peer
// sees the close.
TEST_F(StreamTransportTest, EofReceivedReturningFalseClosesTheTransport) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    send_all(pair.b.get(), "bye");
    ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->events, (std::vector<std::string>{"made", "data", "eof", "lost"}));
    EXPECT_EQ(protocol->data, "bye");
    EXPECT_EQ(protocol->lost_error, nullptr);
    EXPECT_TRUE(transport->is_closing());

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof;
    });
    EXPECT_EQ(peer.data, "");
}

// test_selector_events.py test_read_ready_eof_keep_open: eof_received()
// returning true keeps the transport half-open: it can still write.
TEST_F(StreamTransportTest, EofReceivedReturningTrueKeepsTheTransportHalfOpen) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->keep_open_on_eof = true;
    auto transport = connect(pair.a, protocol);
    ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);

    run_until([&] { return protocol->eofs == 1; });
    run_iterations(5);
    EXPECT_EQ(protocol->lost, 0);
    EXPECT_FALSE(transport->is_closing());

    transport->write("still here");
    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.data == "still here";
    });

    transport->close();
    run_until([&] {
        peer.read_some(pair.b.get());
        return protocol->lost == 1 && peer.eof;
    });
    EXPECT_EQ(protocol->lost_error, nullptr);
    EXPECT_EQ(protocol->eofs, 1);
}

// test_selector_events.py test_read_eof_received_error: eof_received()
// throwing is a fatal error, reported and passed to connection_lost().
TEST_F(StreamTransportTest, EofReceivedThrowingIsFatal) {
    SocketPair pair;
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_eof = []() -> bool { throw std::runtime_error("eof failed"); };
    auto transport = connect(pair.a, protocol);
    ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);

    run_until([&] { return protocol->lost == 1; });
    ASSERT_EQ(transport_reports.size(), 1U);
    EXPECT_EQ(transport_reports[0].message, "Fatal error: protocol.eof_received() call failed.");
    EXPECT_EQ(what_of(transport_reports[0].exception), "eof failed");
    EXPECT_EQ(what_of(protocol->lost_error), "eof failed");
    EXPECT_TRUE(transport->is_closing());
}

// ---- Errors from the protocol ----

// test_selector_events.py test_data_received_error: the exception goes to
// the loop's exception handler (with the transport and protocol) and the
// transport closes, handing it to connection_lost().
TEST_F(StreamTransportTest, DataReceivedThrowingGoesToTheHandlerAndClosesTheTransport) {
    SocketPair pair;
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_data = [](std::string_view) { throw std::runtime_error("boom"); };
    auto transport = connect(pair.a, protocol);
    send_all(pair.b.get(), "x");

    run_until([&] { return protocol->lost == 1; });
    ASSERT_EQ(transport_reports.size(), 1U);
    EXPECT_EQ(transport_reports[0].message, "Fatal error: protocol.data_received() call failed.");
    EXPECT_EQ(what_of(transport_reports[0].exception), "boom");
    EXPECT_EQ(transport_reports[0].transport, transport.get());
    EXPECT_EQ(transport_reports[0].protocol, static_cast<BaseProtocol*>(protocol.get()));
    EXPECT_EQ(what_of(protocol->lost_error), "boom");
    EXPECT_TRUE(transport->is_closing());

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof || peer.error != 0;
    });
}

// ---- Write buffer limits ----

// test_transports.py test_flowcontrol_mixin_set_write_limits and
// _FlowControlMixin._set_write_buffer_limits: high alone sets low to
// high / 4, low alone sets high to 4 * low, neither gives 64 KiB / 16 KiB;
// high < low is refused and leaves the limits alone.
TEST_F(StreamTransportTest, SetWriteBufferLimitsFollowsAsyncioRules) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    using Limits = std::pair<std::size_t, std::size_t>;

    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{16384, 65536}));
    transport->set_write_buffer_limits(1024);
    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{256, 1024}));
    transport->set_write_buffer_limits(std::nullopt, 100);
    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{100, 400}));
    transport->set_write_buffer_limits(200, 50);
    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{50, 200}));
    transport->set_write_buffer_limits(0, 0);
    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{0, 0}));
    transport->set_write_buffer_limits();
    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{16384, 65536}));

    testing::expect_throw_with_message<std::invalid_argument>(
        [&] { transport->set_write_buffer_limits(1, 2); },
        "high (1) must be >= low (2) must be >= 0");
    EXPECT_EQ(transport->get_write_buffer_limits(), (Limits{16384, 65536}));
    EXPECT_EQ(protocol->pauses, 0);

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// _FlowControlMixin: pause_writing() once the buffer goes above the high
// mark (not at it), once only; resume_writing() when it drains to the low
// mark or below; get_write_buffer_size() counts exactly the bytes the
// socket has not taken. Lowering the limits under a full buffer pauses at
// once (set_write_buffer_limits calls _maybe_pause_protocol).
TEST_F(StreamTransportTest, PauseWritingAboveHighAndResumeWritingAtOrBelowLow) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    shrink_socket_buffers(pair.b.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    std::vector<std::size_t> size_at_resume;
    protocol->on_resume = [&] {
        size_at_resume.push_back(protocol->transport()->get_write_buffer_size());
    };
    auto transport = connect(pair.a, protocol);
    transport->set_write_buffer_limits(std::size_t{1} << 30);

    // Fill the socket: what it does not take is buffered.
    std::string sent = testing::pattern(200000, 3);
    transport->write(sent);
    std::size_t buffered = transport->get_write_buffer_size();
    ASSERT_GT(buffered, 0U);
    ASSERT_LT(buffered, sent.size());

    transport->set_write_buffer_limits(buffered + 10, 1000);
    EXPECT_EQ(protocol->pauses, 0) << "paused at or below the high mark";
    std::string more = testing::pattern(11, 4);
    transport->write(more.substr(0, 10));
    EXPECT_EQ(transport->get_write_buffer_size(), buffered + 10);
    EXPECT_EQ(protocol->pauses, 0) << "paused at exactly the high mark";
    transport->write(more.substr(10));
    EXPECT_EQ(transport->get_write_buffer_size(), buffered + 11);
    EXPECT_EQ(protocol->pauses, 1) << "not paused above the high mark";
    transport->write("z");
    EXPECT_EQ(protocol->pauses, 1) << "paused twice";
    sent += more + "z";

    run_iterations(5);
    EXPECT_EQ(protocol->resumes, 0) << "resumed while the peer reads nothing";

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.data.size() == sent.size();
    });
    EXPECT_TRUE(same_bytes(peer.data, sent));
    ASSERT_EQ(protocol->resumes, 1);
    EXPECT_LE(size_at_resume.at(0), 1000U);
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);

    // Lowering the high mark below what is buffered pauses at once.
    transport->set_write_buffer_limits(std::size_t{1} << 30);
    transport->write(testing::pattern(200000, 5));
    ASSERT_GT(transport->get_write_buffer_size(), 100U);
    transport->set_write_buffer_limits(100);
    EXPECT_EQ(protocol->pauses, 2);

    transport->abort();
    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->pauses, 2);
}

// A producer that stops on pause_writing() and goes on at resume_writing(),
// against a peer that reads nothing: the transport stops sending, and the
// memory it holds stays about the high-water mark instead of growing.
TEST_F(StreamTransportTest, PeerThatNeverReadsHoldsTheBufferAtTheHighWaterMark) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    shrink_socket_buffers(pair.b.get());
    constexpr std::size_t chunk = 16 * 1024;
    constexpr std::size_t total = 8 * 1024 * 1024;
    std::string sent = testing::pattern(total, 6);
    std::size_t produced = 0;
    bool paused = false;
    std::size_t peak_buffer = 0;
    auto protocol = std::make_shared<RecordingProtocol>();
    std::function<void()> produce = [&] {
        auto transport = protocol->transport();
        while (!paused && produced < total) {
            transport->write(std::string_view(sent).substr(produced, chunk));
            produced += chunk;
            peak_buffer = std::max(peak_buffer, transport->get_write_buffer_size());
        }
    };
    protocol->on_pause = [&] { paused = true; };
    protocol->on_resume = [&] {
        paused = false;
        loop->call_soon(produce);
    };
    protocol->on_made = [&] { loop->call_soon(produce); };
    auto transport = connect(pair.a, protocol);
    auto [low, high] = transport->get_write_buffer_limits();

    run_until([&] { return paused; });
    std::size_t produced_when_paused = produced;
    run_iterations(20);
    EXPECT_TRUE(paused);
    EXPECT_EQ(produced, produced_when_paused) << "produced while paused";
    EXPECT_GT(transport->get_write_buffer_size(), high);
    EXPECT_LE(transport->get_write_buffer_size(), high + chunk);
    EXPECT_LT(produced, std::size_t{1} << 20) << "the socket took far more than its buffers hold";

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.data.size() == total;
    });
    EXPECT_TRUE(same_bytes(peer.data, sent));
    EXPECT_LE(peak_buffer, high + chunk);
    EXPECT_GE(protocol->resumes, 1);
    EXPECT_LE(low, high);

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// ---- Writing ----

// test_selector_events.py test_write_no_data / writelines: an empty write
// does nothing; writelines() sends the pieces in order.
TEST_F(StreamTransportTest, WriteOfNothingDoesNothingAndWritelinesSendsInOrder) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);

    transport->write("");
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    std::vector<std::string_view> pieces{"a", "", "bc", "def"};
    transport->writelines(pieces);

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.data.size() >= 6;
    });
    EXPECT_EQ(peer.data, "abcdef");

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// test_selector_events.py test_write_eof_buffer: write_eof() after
// buffered data shuts the write side down once the buffer is sent; the
// peer sees every byte, then EOF; the transport still reads.
TEST_F(StreamTransportTest, WriteEofAfterBufferedDataDeliversAllThenEof) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    EXPECT_TRUE(transport->can_write_eof());

    std::string sent = testing::pattern(1 << 20, 7);
    transport->write(sent);
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    transport->write_eof();
    transport->write_eof();  // idempotent
    EXPECT_FALSE(transport->is_closing());

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof;
    });
    EXPECT_TRUE(same_bytes(peer.data, sent));

    send_all(pair.b.get(), "ack");
    run_until([&] { return protocol->data == "ack"; });
    EXPECT_EQ(protocol->lost, 0);

    transport->close();
    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// _SelectorSocketTransport.write: "Cannot call write() after write_eof()";
// test_write_eof_after_close: write_eof() on a closing transport is a no-op.
TEST_F(StreamTransportTest, WriteAfterWriteEofThrowsRuntimeError) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    transport->write_eof();
    testing::expect_throw_with_message<RuntimeError>([&] { transport->write("late"); },
                                                     "Cannot call write() after write_eof()");
    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof;
    });
    EXPECT_EQ(peer.data, "");

    transport->close();
    transport->write_eof();
    run_until([&] { return protocol->lost == 1; });
}

// test_selector_events.py test_write_ready_closing / test_close: close()
// sends the buffered data first, then connection_lost(null), exactly once.
TEST_F(StreamTransportTest, CloseFlushesTheBufferBeforeConnectionLost) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    shrink_socket_buffers(pair.b.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);

    std::string sent = testing::pattern(1 << 20, 8);
    transport->write(sent);
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    transport->close();
    transport->close();
    EXPECT_TRUE(transport->is_closing());
    run_iterations(5);
    EXPECT_EQ(protocol->lost, 0) << "connection_lost before the buffer was sent";

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof;
    });
    EXPECT_TRUE(same_bytes(peer.data, sent));
    run_until([&] { return protocol->lost == 1; });
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
    EXPECT_EQ(protocol->lost_error, nullptr);
    EXPECT_EQ(protocol->events.back(), "lost");
}

// test_selector_events.py test_abort / _force_close: abort() drops the
// buffer at once; connection_lost(null) once; the peer gets at most a
// prefix, then EOF.
TEST_F(StreamTransportTest, AbortDropsTheBufferAndCallsConnectionLostOnce) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    shrink_socket_buffers(pair.b.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);

    std::string sent = testing::pattern(1 << 20, 9);
    transport->write(sent);
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    transport->abort();
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    EXPECT_TRUE(transport->is_closing());
    transport->abort();
    transport->close();

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->lost_error, nullptr);
    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof || peer.error != 0;
    });
    EXPECT_LT(peer.data.size(), sent.size());
    EXPECT_TRUE(same_bytes(peer.data, sent.substr(0, peer.data.size())));
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
}

// test_selector_events.py test_write_closing: once the connection is lost
// (or its loss is under way) writes go nowhere, without an exception;
// asyncio only logs a warning after a few.
TEST_F(StreamTransportTest, WritesAfterCloseOrAbortAreDroppedWithoutException) {
    for (bool abort : {false, true}) {
        SCOPED_TRACE(abort ? "abort" : "close");
        log_capture.clear();
        SocketPair pair;
        auto protocol = std::make_shared<RecordingProtocol>();
        auto transport = connect(pair.a, protocol);
        abort ? transport->abort() : transport->close();
        EXPECT_NO_THROW(transport->write("dropped"));
        run_until([&] { return protocol->lost == 1; });
        for (int i = 0; i < 6; ++i) {
            EXPECT_NO_THROW(transport->write("dropped"));
        }
        EXPECT_EQ(transport->get_write_buffer_size(), 0U);
        EXPECT_TRUE(log_capture.contains(LogLevel::warning, "socket.send() raised exception."));

        PeerReader peer;
        run_until([&] {
            peer.read_some(pair.b.get());
            return peer.eof;
        });
        EXPECT_EQ(peer.data, "");
    }
}

// A protocol that echoes from data_received(): the write of the view it was
// handed is sent from the receive buffer itself (also in two pieces, the
// second queued behind the first). 4 MiB come back intact and in order.
TEST_F(StreamTransportTest, EchoFromDataReceivedReturnsEveryByteInOrder) {
    for (bool split : {false, true}) {
        SCOPED_TRACE(split ? "two writes per chunk" : "one write per chunk");
        SocketPair pair;
        auto echo = std::make_shared<RecordingProtocol>();
        echo->on_data = [&](std::string_view data) {
            auto transport = echo->transport();
            if (split) {
                transport->write(data.substr(0, data.size() / 2));
                transport->write(data.substr(data.size() / 2));
            } else {
                transport->write(data);
            }
        };
        auto client = std::make_shared<RecordingProtocol>();
        auto echo_transport = connect(pair.a, echo);
        auto client_transport = connect(pair.b, client);

        std::string sent = testing::pattern(4 << 20, split ? 10 : 11);
        client_transport->write(sent);
        run_until([&] { return client->data.size() >= sent.size(); }, 20.0);
        EXPECT_TRUE(same_bytes(client->data, sent));

        client_transport->close();
        run_until([&] { return client->lost == 1 && echo->lost == 1; });
        EXPECT_EQ(echo->lost_error, nullptr);
    }
}

// Bytes held while reading was paused reach data_received() from a copy,
// not from the receive ring: an echo of them must be copied too (it was
// once sent by io_uring from the copy after the copy was freed).
TEST_F(StreamTransportTest, EchoOfBytesHeldWhilePausedArrivesIntact) {
    SocketPair pair;
    auto echo = std::make_shared<RecordingProtocol>();
    echo->on_data = [&](std::string_view data) { echo->transport()->write(data); };
    auto echo_transport = connect(pair.a, echo);
    echo_transport->pause_reading();
    std::string sent = testing::pattern(200000, 12);
    send_all(pair.b.get(), sent);
    run_iterations(10);
    EXPECT_EQ(echo->data_calls, 0);

    auto client = std::make_shared<RecordingProtocol>();
    auto client_transport = connect(pair.b, client);
    echo_transport->resume_reading();
    run_until([&] { return client->data.size() >= sent.size(); }, 20.0);
    EXPECT_TRUE(same_bytes(client->data, sent));

    client_transport->close();
    run_until([&] { return client->lost == 1 && echo->lost == 1; });
}

// Echo, then close() inside data_received(): the echo (sent straight from
// the receive buffer) still goes out before the close, and
// connection_lost(null) follows it.
TEST_F(StreamTransportTest, CloseRightAfterAnEchoStillSendsTheEcho) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_data = [&](std::string_view data) {
        protocol->transport()->write(data);
        protocol->transport()->close();
    };
    auto transport = connect(pair.a, protocol);
    send_all(pair.b.get(), "echo me");

    PeerReader peer;
    run_until([&] {
        peer.read_some(pair.b.get());
        return peer.eof && protocol->lost == 1;
    });
    EXPECT_EQ(peer.data, "echo me");
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// abort() right after an echo write: the buffer is dropped at once, so
// get_write_buffer_size() is 0 (asyncio's _force_close clears it), even
// though the kernel still holds the send of the receive buffer.
TEST_F(StreamTransportTest, AbortRightAfterAnEchoEmptiesTheWriteBuffer) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    std::size_t size_after_abort = 12345;
    protocol->on_data = [&](std::string_view data) {
        auto transport = protocol->transport();
        transport->write(data);
        transport->abort();
        size_after_abort = transport->get_write_buffer_size();
    };
    auto transport = connect(pair.a, protocol);
    send_all(pair.b.get(), "echo me");

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(size_after_abort, 0U);
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// ---- BufferedProtocol ----

// SelectorSocketTransportBufferedProtocolTests.test_read_ready: the bytes
// land in the span get_buffer() returned, buffer_updated(n) tells how many.
TEST_F(StreamTransportTest, BufferedProtocolReadsIntoGetBuffer) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingBufferedProtocol>(7);
    auto transport = connect(pair.a, protocol);
    std::string sent = testing::pattern(100, 12);
    send_all(pair.b.get(), sent);

    run_until([&] { return protocol->data.size() >= sent.size(); });
    EXPECT_EQ(protocol->data, sent);
    EXPECT_GE(protocol->updates.size(), 100U / 7);
    for (std::size_t n : protocol->updates) {
        EXPECT_GE(n, 1U);
        EXPECT_LE(n, 7U);
    }
    EXPECT_GE(protocol->get_buffer_calls, static_cast<int>(protocol->updates.size()));

    transport->close();
    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// test_get_buffer_zerosized: an empty buffer is a fatal error,
// RuntimeError("get_buffer() returned an empty buffer"); the transport
// closes and buffer_updated() is never called.
TEST_F(StreamTransportTest, ZeroSizedBufferIsFatalWithRuntimeError) {
    SocketPair pair;
    record_transport_reports();
    auto protocol = std::make_shared<RecordingBufferedProtocol>(0);
    auto transport = connect(pair.a, protocol);
    try_send(pair.b.get(), "data");

    run_until([&] { return protocol->lost == 1; });
    EXPECT_TRUE(transport->is_closing());
    EXPECT_TRUE(protocol->updates.empty());
    EXPECT_GE(protocol->get_buffer_calls, 1);
    try {
        std::rethrow_exception(protocol->lost_error);
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "get_buffer() returned an empty buffer");
    } catch (...) {
        ADD_FAILURE() << "connection_lost did not get a RuntimeError";
    }
    ASSERT_EQ(transport_reports.size(), 1U);
    EXPECT_EQ(transport_reports[0].message, "Fatal error: protocol.get_buffer() call failed.");
}

// test_get_buffer_error / test_buffer_updated_error: either callback
// throwing is fatal and reported.
TEST_F(StreamTransportTest, GetBufferOrBufferUpdatedThrowingIsFatal) {
    for (bool in_get_buffer : {true, false}) {
        SCOPED_TRACE(in_get_buffer ? "get_buffer" : "buffer_updated");
        transport_reports.clear();
        record_transport_reports();
        SocketPair pair;
        auto protocol = std::make_shared<RecordingBufferedProtocol>(64);
        if (in_get_buffer) {
            protocol->on_get_buffer = [] { throw std::out_of_range("no buffer"); };
        } else {
            protocol->on_updated = [](std::size_t) { throw std::out_of_range("no update"); };
        }
        auto transport = connect(pair.a, protocol);
        try_send(pair.b.get(), "data");

        run_until([&] { return protocol->lost == 1; });
        ASSERT_EQ(transport_reports.size(), 1U);
        EXPECT_EQ(transport_reports[0].message,
                  in_get_buffer ? "Fatal error: protocol.get_buffer() call failed."
                                : "Fatal error: protocol.buffer_updated() call failed.");
        EXPECT_EQ(what_of(protocol->lost_error), in_get_buffer ? "no buffer" : "no update");
        EXPECT_TRUE(transport->is_closing());
    }
}

// BufferedProtocol test_read_ready_eof / test_read_ready_eof_keep_open.
TEST_F(StreamTransportTest, BufferedProtocolEofReceivedDecidesHalfOpen) {
    for (bool keep_open : {false, true}) {
        SCOPED_TRACE(keep_open ? "keep open" : "close");
        SocketPair pair;
        auto protocol = std::make_shared<RecordingBufferedProtocol>(16);
        protocol->keep_open_on_eof = keep_open;
        auto transport = connect(pair.a, protocol);
        send_all(pair.b.get(), "last words");
        ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);

        run_until([&] { return protocol->eofs == 1; });
        EXPECT_EQ(protocol->data, "last words");
        run_iterations(3);
        EXPECT_EQ(transport->is_closing(), !keep_open);
        EXPECT_EQ(protocol->lost, keep_open ? 0 : 1);
        if (keep_open) {
            transport->write("reply");
            PeerReader peer;
            run_until([&] {
                peer.read_some(pair.b.get());
                return peer.data == "reply";
            });
            transport->close();
        }
        run_until([&] { return protocol->lost == 1; });
        EXPECT_EQ(protocol->lost_error, nullptr);
    }
}

// test_proto_type_switch, over a real stream: Protocol -> BufferedProtocol
// inside data_received(), back inside buffer_updated(), and again from
// outside any callback, while 2 MiB flow; no byte is lost or reordered.
TEST_F(StreamTransportTest, SwitchingProtocolAndBufferedProtocolMidStreamLosesNoByte) {
    SocketPair pair;
    std::string sent = testing::pattern(2 << 20, 13);
    auto first = std::make_shared<RecordingProtocol>();
    auto second = std::make_shared<RecordingBufferedProtocol>(1000);
    auto third = std::make_shared<RecordingProtocol>();
    auto fourth = std::make_shared<RecordingBufferedProtocol>(4096);
    first->on_data = [&](std::string_view) {
        if (first->data.size() >= 100000 && first->transport()->get_protocol() == first) {
            first->transport()->set_protocol(second);
        }
    };
    second->on_updated = [&](std::size_t) {
        if (second->data.size() >= 200000 && first->transport()->get_protocol() == second) {
            first->transport()->set_protocol(third);
        }
    };
    auto transport = connect(pair.a, first);
    auto received = [&] {
        return first->data.size() + second->data.size() + third->data.size() + fourth->data.size();
    };

    std::size_t offset = 0;
    bool switched_outside = false;
    run_until(
        [&] {
            if (offset < sent.size()) {
                ssize_t n = ::send(pair.b.get(), sent.data() + offset,
                                   std::min<std::size_t>(sent.size() - offset, 65536),
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                    offset += static_cast<std::size_t>(n);
                }
            }
            if (!switched_outside && third->data.size() >= 300000) {
                transport->set_protocol(fourth);
                switched_outside = true;
            }
            return received() >= sent.size();
        },
        20.0);
    EXPECT_TRUE(switched_outside);
    EXPECT_GE(first->data.size(), 100000U);
    EXPECT_GE(second->data.size(), 200000U);
    EXPECT_GE(third->data.size(), 300000U);
    EXPECT_GT(fourth->data.size(), 0U);
    EXPECT_TRUE(same_bytes(first->data + second->data + third->data + fourth->data, sent));
    EXPECT_EQ(transport->get_protocol(), fourth);

    transport->close();
    run_until([&] { return fourth->lost == 1; });
    EXPECT_EQ(first->lost + second->lost + third->lost, 0);
}

// A BufferedProtocol whose buffer is scribbled over when it is destroyed,
// so that bytes read from it afterwards show.
class ScribblingBufferedProtocol : public RecordingBufferedProtocol {
public:
    using RecordingBufferedProtocol::RecordingBufferedProtocol;
    ~ScribblingBufferedProtocol() override { std::fill(buffer.begin(), buffer.end(), '#'); }
};

// set_protocol() from a BufferedProtocol whose receive is already complete
// in the same batch (its bytes are in its buffer): the old protocol may be
// gone (nobody else holds it), but its bytes still reach the new protocol
// intact — the transport keeps the buffer it receives into alive until
// that receive is over.
TEST_F(StreamTransportTest, SetProtocolWhileBufferedReceiveCompletesLosesNoByte) {
    SocketPair trigger_pair;
    SocketPair pair;
    auto trigger = std::make_shared<RecordingProtocol>();
    auto replacement = std::make_shared<RecordingProtocol>();
    std::shared_ptr<Transport> transport;
    std::string delivered;
    trigger->on_data = [&](std::string_view) { transport->set_protocol(replacement); };
    replacement->on_data = [&](std::string_view data) { delivered.append(data); };
    auto trigger_transport = connect(trigger_pair.a, trigger);
    {
        auto buffered = std::make_shared<ScribblingBufferedProtocol>(4096);
        buffered->on_updated = [&delivered, raw = buffered.get()](std::size_t n) {
            delivered.append(raw->buffer.data(), n);
        };
        transport = connect(pair.a, buffered);
    }
    run_iterations(2);
    // The trigger's bytes first: its completion is dispatched first, and
    // drops the buffered protocol while the second one's bytes wait in it.
    send_all(trigger_pair.b.get(), "t");
    send_all(pair.b.get(), "payload");

    run_until([&] { return delivered.size() >= 7; });
    EXPECT_EQ(delivered, "payload");
    EXPECT_EQ(transport->get_protocol(), replacement);

    transport->close();
    trigger_transport->close();
    run_until([&] { return replacement->lost == 1 && trigger->lost == 1; });
}

// The transport keeps its protocol until connection_lost(), then drops it
// (protocols.hpp): a protocol holding its transport forms no lasting cycle.
TEST_F(StreamTransportTest, TransportDropsTheProtocolAfterConnectionLost) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    std::weak_ptr<RecordingProtocol> weak = protocol;
    auto transport = connect(pair.a, protocol);
    protocol.reset();
    run_iterations(2);
    EXPECT_FALSE(weak.expired()) << "the open transport let its protocol go";

    transport->close();
    run_until([&] { return weak.expired() || weak.lock()->lost == 1; });
    run_iterations(2);
    EXPECT_TRUE(weak.expired()) << "the protocol outlived connection_lost";
}

// ---- Peers that misbehave ----

// A peer that resets the connection while the transport is writing to it:
// connection_lost() gets the std::system_error (ECONNRESET or EPIPE); the
// exception handler is not bothered (asyncio's _FATAL_ERROR_IGNORE).
TEST_F(StreamTransportTest, PeerResetMidWriteGivesConnectionLostWithSystemError) {
    TcpPair pair;
    shrink_socket_buffers(pair.client.get());
    shrink_socket_buffers(pair.server.get());
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.client, protocol);
    transport->write(testing::pattern(4 << 20, 14));
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    run_iterations(3);

    linger reset{.l_onoff = 1, .l_linger = 0};
    ASSERT_EQ(::setsockopt(pair.server.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
    pair.server.reset();  // RST

    run_until([&] { return protocol->lost == 1; });
    int code = error_code_of(protocol->lost_error);
    EXPECT_TRUE(code == ECONNRESET || code == EPIPE) << what_of(protocol->lost_error);
    EXPECT_TRUE(transport->is_closing());
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    EXPECT_TRUE(transport_reports.empty());
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
}

// Writing to a peer that has already closed fails with EPIPE, which goes
// to connection_lost() — no SIGPIPE kills the process (MSG_NOSIGNAL).
TEST_F(StreamTransportTest, WriteToAClosedPeerGivesEpipeNotSigpipe) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    pair.b.reset();
    transport->write("into the void");

    run_until([&] { return protocol->lost == 1; });
    int code = error_code_of(protocol->lost_error);
    EXPECT_TRUE(code == EPIPE || code == ECONNRESET) << what_of(protocol->lost_error);
}

// ---- Ownership of the fd ----

// NetState::ensure_fd_no_transport (asyncio's _ensure_fd_no_transport):
// add_reader, add_writer and sock_recv refuse the fd a transport owns,
// naming the transport.
TEST_F(StreamTransportTest, TransportFdIsRefusedByAddReaderAndSockCalls) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    int fd = std::any_cast<int>(transport->get_extra_info("socket"));
    std::string message =
        "File descriptor " + std::to_string(fd) + " is used by transport " + transport->repr();

    testing::expect_throw_with_message<RuntimeError>([&] { loop->add_reader(fd, [] {}); }, message);
    testing::expect_throw_with_message<RuntimeError>([&] { loop->add_writer(fd, [] {}); }, message);
    testing::expect_throw_with_message<RuntimeError>([&] { (void)loop->sock_recv(fd, 10); },
                                                     message);
    EXPECT_NE(message.find("SocketTransport"), std::string::npos);

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// A transport still open when the loop closes is aborted by the loop: its
// fd is closed (the fixture checks) and nothing is left in the kernel.
TEST_F(StreamTransportTest, TransportOpenAtLoopCloseLeaksNothing) {
    SocketPair pair;
    shrink_socket_buffers(pair.a.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = connect(pair.a, protocol);
    transport->write(testing::pattern(1 << 20, 15));
    transport->pause_reading();
    run_iterations(2);
    loop->close();
    EXPECT_EQ(protocol->lost, 0);  // asyncio does not call it at loop close either
    PeerReader peer;
    peer.read_some(pair.b.get());
    while (!peer.eof && peer.error == 0 && peer.read_some(pair.b.get()) > 0) {
    }
    EXPECT_TRUE(peer.eof) << "the transport's socket is still open";
}

// ---- Big transfers ----

// 8 MiB each way at once, both ends transports: one side writes it in one
// call, the other in many small pieces; everything arrives intact.
void transfer_both_ways(EventLoop& loop, const std::shared_ptr<RecordingProtocol>& left,
                        const std::shared_ptr<RecordingProtocol>& right) {
    constexpr std::size_t size = 8 << 20;
    std::string left_sends = testing::pattern(size, 21);
    std::string right_sends = testing::pattern(size, 22);
    left->transport()->write(left_sends);
    for (std::size_t at = 0; at < size; at += 7919) {
        right->transport()->write(std::string_view(right_sends).substr(at, 7919));
    }
    double give_up = loop.time() + 30.0;
    while (left->data.size() < size || right->data.size() < size) {
        ASSERT_LT(loop.time(), give_up)
            << "transfer stalled at " << left->data.size() << " / " << right->data.size();
        loop.call_soon([&loop] { loop.stop(); });
        loop.run_forever();
    }
    EXPECT_TRUE(same_bytes(right->data, left_sends));
    EXPECT_TRUE(same_bytes(left->data, right_sends));
}

TEST_F(StreamTransportTest, EightMebibytesEachWayOverLoopbackTcpArriveIntact) {
    TcpPair pair;
    auto left = std::make_shared<RecordingProtocol>();
    auto right = std::make_shared<RecordingProtocol>();
    auto left_transport = connect(pair.client, left);
    auto right_transport = connect(pair.server, right);
    transfer_both_ways(*loop, left, right);

    left_transport->close();
    run_until([&] { return left->lost == 1 && right->lost == 1; });
    EXPECT_EQ(left->lost_error, nullptr);
    EXPECT_EQ(right->lost_error, nullptr);
}

// The same over a Unix socketpair, one end through create_connection(sock=)
// (the asyncio example of a socketpair registered with create_connection).
TEST_F(StreamTransportTest, EightMebibytesEachWayOverASocketpairArriveIntact) {
    SocketPair pair;
    auto left = std::make_shared<RecordingProtocol>();
    auto right = std::make_shared<RecordingProtocol>();
    auto connection = loop->run_until_complete(
        loop->create_connection([left] { return left; }, "", 0, {.sock = pair.a.release()}));
    auto right_transport = connect(pair.b, right);
    transfer_both_ways(*loop, left, right);

    right_transport->close();
    run_until([&] { return left->lost == 1 && right->lost == 1; });
    EXPECT_EQ(connection.transport->get_protocol(), nullptr);
}

}  // namespace
}  // namespace shardloop
