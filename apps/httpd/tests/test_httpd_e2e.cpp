// shardloop_httpd end to end: the real binary, started with --port 0
// --shards 2 and a temporary --root, talked to with curl (when it is
// installed) and raw sockets. Every wait is bounded, and every server
// started is killed if a test fails before it exits.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "e2e_support.hpp"

namespace shardloop::httpd {
namespace {

using namespace test_support;

std::vector<std::string> server_args(const TempDir& root, std::string idle = "10") {
    return {"--shards", "2", "--root", root.path(), "--idle-timeout", idle};
}

// ---- Routes through curl ----

TEST(HttpdEndToEnd, CurlGetsEveryRoute) {
    if (!have_curl()) {
        GTEST_SKIP() << "curl is not on PATH";
    }
    TempDir root;
    root.write("hello.txt", "hello from a file\n");
    Server server(server_args(root));
    std::string base = "curl -s --max-time 10 http://127.0.0.1:" + std::to_string(server.port());

    std::string plain = run(base + "/plaintext -i");
    EXPECT_TRUE(plain.starts_with("HTTP/1.1 200 OK\r\n")) << plain;
    EXPECT_NE(plain.find("Server: shardloop\r\n"), std::string::npos);
    EXPECT_NE(plain.find("Content-Type: text/plain\r\n"), std::string::npos);
    EXPECT_NE(plain.find("Content-Length: 13\r\n"), std::string::npos);
    EXPECT_NE(plain.find(" GMT\r\n"), std::string::npos);  // the Date
    EXPECT_TRUE(plain.ends_with("\r\n\r\nHello, World!")) << plain;

    EXPECT_EQ(run(base + "/json"), R"({"message":"Hello, World!"})");
    EXPECT_EQ(run(base + "/hello.txt"), "hello from a file\n");
    EXPECT_NE(run(base + "/missing -o /dev/null -w '%{http_code}'").find("404"), std::string::npos);
    std::string head = run(base + "/json -I");
    EXPECT_NE(head.find("Content-Length: 27\r\n"), std::string::npos) << head;

    std::string metrics = run(base + "/metrics");
    EXPECT_NE(metrics.find("# TYPE shardloop_loop_iterations_total counter"), std::string::npos);
    EXPECT_NE(metrics.find("shardloop_loop_iterations_total{shard=\"0\"}"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("shardloop_loop_iterations_total{shard=\"1\"}"), std::string::npos);
    EXPECT_NE(metrics.find("httpd_requests_total{shard=\"1\"}"), std::string::npos);

    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(std::chrono::seconds(10)), 0);
}

// ---- Raw sockets ----

TEST(HttpdEndToEnd, PipelinedRequestsComeBackInOrder) {
    TempDir root;
    root.write("a.txt", "AAA");
    Server server(server_args(root));
    Client client(server.port());
    ASSERT_TRUE(client.send(get("/plaintext") + get("/a.txt") + get("/json") + get("/missing") +
                            get("/plaintext")));
    std::vector<int> statuses;
    std::vector<std::string> bodies;
    for (int i = 0; i < 5; ++i) {
        Response response = client.read_response();
        statuses.push_back(response.status);
        bodies.push_back(response.body);
    }
    EXPECT_EQ(statuses, (std::vector<int>{200, 200, 200, 404, 200}));
    EXPECT_EQ(bodies[0], "Hello, World!");
    EXPECT_EQ(bodies[1], "AAA");
    EXPECT_EQ(bodies[2], R"({"message":"Hello, World!"})");
    EXPECT_EQ(bodies[4], "Hello, World!");
}

TEST(HttpdEndToEnd, MalformedRequestGets400ThenTheConnectionCloses) {
    TempDir root;
    Server server(server_args(root));
    Client client(server.port());
    ASSERT_TRUE(client.send("this is not http\r\n\r\n"));
    Response response = client.read_response();
    EXPECT_EQ(response.status, 400);
    EXPECT_TRUE(response.has("Connection: close")) << response.head;
    double closed = client.seconds_until_closed(3);
    EXPECT_GE(closed, 0) << "still open";
}

// The header section is `size` bytes long.
std::string request_with_header_size(std::size_t size) {
    std::string start = "GET /plaintext HTTP/1.1\r\nHost: test\r\nX-Pad: ";
    return start + std::string(size - start.size() - 4, 'p') + "\r\n\r\n";
}

TEST(HttpdEndToEnd, HeaderSectionOverTheLimitGets431) {
    TempDir root;
    std::vector<std::string> args = server_args(root);
    args.insert(args.end(), {"--max-header-bytes", "1024"});
    Server server(args);
    {
        Client client(server.port());
        ASSERT_TRUE(client.send(request_with_header_size(1024)));
        EXPECT_EQ(client.read_response().status, 200);
    }
    Client client(server.port());
    ASSERT_TRUE(client.send(request_with_header_size(1025)));
    Response response = client.read_response();
    EXPECT_EQ(response.status, 431);
    EXPECT_TRUE(response.has("Connection: close"));
    EXPECT_GE(client.seconds_until_closed(3), 0);
    // The default limit is 8192: a 9000-byte header is refused too.
    Server defaults(server_args(root));
    Client big(defaults.port());
    ASSERT_TRUE(big.send(request_with_header_size(9000)));
    EXPECT_EQ(big.read_response().status, 431);
}

TEST(HttpdEndToEnd, StalledRequestIsClosedAfterTheIdleTimeout) {
    TempDir root;
    Server server(server_args(root, "0.5"));
    Client client(server.port());
    ASSERT_TRUE(client.send("GET /plaintext HTTP/1.1\r\nHo"));
    double closed = client.seconds_until_closed(5);
    EXPECT_GE(closed, 0.35) << "closed too early";
    EXPECT_LE(closed, 3.0) << "not closed in time (-1: still open)";
}

TEST(HttpdEndToEnd, TricklingBytesDoNotExtendTheDeadline) {
    TempDir root;
    Server server(server_args(root, "0.5"));
    Client client(server.port());
    std::string request = request_with_header_size(200);
    auto start = Clock::now();
    double closed_after = -1;
    for (char byte : request) {
        if (!client.send(std::string_view(&byte, 1))) {
            break;
        }
        if (double closed = client.seconds_until_closed(0.1); closed >= 0) {
            closed_after = seconds_since(start);
            break;
        }
    }
    EXPECT_GE(closed_after, 0.35) << "not closed while trickling (-1)";
    EXPECT_LE(closed_after, 3.0);
}

TEST(HttpdEndToEnd, IdleKeepAliveConnectionIsClosedAfterTheIdleTimeout) {
    TempDir root;
    Server server(server_args(root, "0.5"));
    Client client(server.port());
    ASSERT_TRUE(client.send(get("/plaintext")));
    EXPECT_EQ(client.read_response().status, 200);
    double closed = client.seconds_until_closed(5);
    EXPECT_GE(closed, 0.35);
    EXPECT_LE(closed, 3.0);
}

TEST(HttpdEndToEnd, ClientResetMidResponseLeavesTheServerServing) {
    TempDir root;
    root.write_sized("big.bin", 32 << 20);
    Server server(server_args(root));
    {
        Client warm(server.port());  // the first connection's lazily made state
        ASSERT_TRUE(warm.send(get("/plaintext")));
        EXPECT_EQ(warm.read_response().status, 200);
    }
    int baseline = server.wait_fd_count_at_most(1 << 20, std::chrono::milliseconds(0));
    for (int i = 0; i < 5; ++i) {
        Client client(server.port());
        ASSERT_TRUE(client.send(get("/big.bin")));
        ASSERT_TRUE(client.read_head().starts_with("HTTP/1.1 200 OK\r\n"));
        EXPECT_EQ(client.read_bytes(256 * 1024), 256u * 1024);
        client.reset();
    }
    Client after(server.port());
    ASSERT_TRUE(after.send(get("/plaintext")));
    Response response = after.read_response();
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body, "Hello, World!");
    EXPECT_LE(server.wait_fd_count_at_most(baseline + 1, std::chrono::seconds(5)), baseline + 1)
        << "file descriptors leaked";
}

TEST(HttpdEndToEnd, NoFileDescriptorLeaksAcrossManyConnections) {
    TempDir root;
    root.write("page.html", std::string(100000, 'h'));
    Server server(server_args(root, "1"));
    {
        Client warm(server.port());
        ASSERT_TRUE(warm.send(get("/plaintext")));
        EXPECT_EQ(warm.read_response().status, 200);
    }
    int baseline = server.wait_fd_count_at_most(1 << 20, std::chrono::milliseconds(0));
    for (int i = 0; i < 200; ++i) {
        Client client(server.port());
        switch (i % 5) {
            case 0:  // a complete exchange, the client closing
                client.send(get("/json"));
                client.read_response();
                break;
            case 1:  // half a request, then gone
                client.send("GET /pla");
                break;
            case 2:  // garbage
                client.send("\x01\x02\x03\r\n\r\n");
                client.read_response();
                break;
            case 3:  // a file, not read, then reset
                client.send(get("/page.html"));
                client.reset();
                break;
            case 4:  // Connection: close
                client.send(get("/plaintext", "Connection: close\r\n"));
                client.read_response();
                client.seconds_until_closed(2);
                break;
        }
    }
    EXPECT_LE(server.wait_fd_count_at_most(baseline, std::chrono::seconds(5)), baseline)
        << "file descriptors leaked (baseline " << baseline << ")";
}

TEST(HttpdEndToEnd, ClientThatStopsReadingIsNotBufferedWithoutBound) {
    TempDir root;
    Server server(server_args(root));
    long rss_before = server.rss_kib();
    Client client(server.port(), 65536);
    // /metrics answers ~100 times its request's size: a server that kept
    // reading requests it cannot send answers to would grow by gigabytes.
    std::string batch;
    for (int i = 0; i < 256; ++i) {
        batch += get("/metrics");
    }
    ASSERT_EQ(::fcntl(client.fd(), F_SETFL, O_NONBLOCK), 0);
    std::size_t sent = 0;
    // Far above what the kernel's buffers and the transport can hold
    // (tens of MiB), far below what a server without push-back would take.
    const std::size_t cap = std::size_t{192} << 20;
    auto give_up = Clock::now() + std::chrono::seconds(20);
    auto blocked_since = Clock::now();
    bool blocked = false;
    std::size_t offset = 0;
    while (sent < cap && Clock::now() < give_up) {
        ssize_t n = ::send(client.fd(), batch.data() + offset, batch.size() - offset, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            offset = (offset + static_cast<std::size_t>(n)) % batch.size();
            blocked = false;
            continue;
        }
        ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
        if (!blocked) {
            blocked = true;
            blocked_since = Clock::now();
        } else if (seconds_since(blocked_since) > 0.5) {
            break;  // the server stopped taking requests
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(blocked && seconds_since(blocked_since) > 0.5)
        << "the server never pushed back (" << sent << " bytes taken)";
    long rss_after = server.rss_kib();
    // What the server may legitimately hold: the transport keeps what the
    // kernel had already received when reading paused (up to a socket
    // buffer, tcp_rmem's maximum), and the loop's receive ring is touched.
    // Without the push-back it would be gigabytes. Sanitizer builds
    // multiply memory several times over, so the bound holds only without.
    if (!sanitized) {
        EXPECT_LT(rss_after - rss_before, 256 * 1024)
            << "the server grew from " << rss_before << " to " << rss_after << " KiB";
    }
    // Still healthy for others.
    Client other(server.port());
    ASSERT_TRUE(other.send(get("/plaintext")));
    EXPECT_EQ(other.read_response().status, 200);
}

// ---- Shutdown ----

TEST(HttpdEndToEnd, SigtermWithNoClientsExitsZero) {
    TempDir root;
    Server server(server_args(root));
    auto start = Clock::now();
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(std::chrono::seconds(10)), 0);
    EXPECT_LT(seconds_since(start), 3.0);
}

TEST(HttpdEndToEnd, SigtermFinishesTheResponseInFlightClosesIdleOnesAndExitsZero) {
    TempDir root;
    const std::size_t size = 24 << 20;
    root.write_sized("big.bin", size);
    Server server(server_args(root));
    Client idle(server.port());
    ASSERT_TRUE(idle.send(get("/plaintext")));
    EXPECT_EQ(idle.read_response().status, 200);
    // A download that a small receive buffer keeps in flight: its head and
    // a little of its body are read before the signal, the rest after.
    Client busy(server.port(), 65536);
    ASSERT_TRUE(busy.send(get("/big.bin")));
    std::string head = busy.read_head();
    ASSERT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
    ASSERT_NE(head.find("Content-Length: " + std::to_string(size) + "\r\n"), std::string::npos);
    std::size_t got = busy.read_bytes(1024);
    server.signal(SIGTERM);
    EXPECT_GE(idle.seconds_until_closed(2), 0) << "the idle connection was not closed";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got += busy.read_bytes(size - got);
    EXPECT_EQ(got, size) << "the response in flight was cut short";
    EXPECT_GE(busy.seconds_until_closed(5), 0);
    // Well before the drain's 5 s deadline: nothing was left to abort.
    auto start = Clock::now();
    EXPECT_EQ(server.wait_exit(std::chrono::seconds(10)), 0);
    EXPECT_LT(seconds_since(start), 3.0);
}

// ---- The command line ----

TEST(HttpdEndToEnd, BadOptionValuesExitTwoNamingTheOption) {
    Outcome port = run_binary({"--port", "http"});
    EXPECT_EQ(port.exit_code, 2);
    EXPECT_NE(port.err.find("--port"), std::string::npos) << port.err;
    Outcome timeout = run_binary({"--idle-timeout", "-1"});
    EXPECT_EQ(timeout.exit_code, 2);
    EXPECT_NE(timeout.err.find("--idle-timeout"), std::string::npos) << timeout.err;
    Outcome root = run_binary({"--root", "/nonexistent/httpd-root"});
    EXPECT_EQ(root.exit_code, 2);
    EXPECT_NE(root.err.find("--root"), std::string::npos) << root.err;
    Outcome unknown = run_binary({"--frobnicate"});
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_NE(unknown.err.find("--frobnicate"), std::string::npos) << unknown.err;
}

TEST(HttpdEndToEnd, HelpExplainsEveryOption) {
    Outcome help = run_binary({"--help"});
    EXPECT_EQ(help.exit_code, 0);
    for (std::string_view option :
         {"--host", "--port", "--shards", "--cpus", "--root", "--idle-timeout",
          "--max-header-bytes", "--max-body-bytes", "--idle-poll", "--spread"}) {
        EXPECT_NE(help.out.find(option), std::string::npos) << option;
    }
}

}  // namespace
}  // namespace shardloop::httpd
