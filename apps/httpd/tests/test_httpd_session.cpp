// HttpSession, the sans-I/O connection, driven directly: routes, errors
// and limits, keep-alive, pipelining split at every byte, allocations.

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "http_session.hpp"
#include "session_driver.hpp"

// Counts the allocations of this thread, for the zero-allocation test.
namespace {
thread_local long t_allocations = 0;
}  // namespace

// The replacements pair malloc with free; GCC cannot see that they are the
// pair and warns that free() meets a pointer from operator new.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t size) {
    ++t_allocations;
    if (void* block = std::malloc(size == 0 ? 1 : size)) {
        return block;
    }
    throw std::bad_alloc();
}
void operator delete(void* block) noexcept { std::free(block); }
void operator delete(void* block, std::size_t) noexcept { std::free(block); }

namespace shardloop::httpd {
namespace {

using namespace test_support;

// ---- Routes ----

TEST(HttpSession, PlaintextIsHelloWorldWithServerDateAndLength) {
    EXPECT_EQ(answer(get("/plaintext")), plaintext_response);
}

TEST(HttpSession, JsonIsTheMessageObject) { EXPECT_EQ(answer(get("/json")), json_response); }

TEST(HttpSession, QueryStringsDoNotChangeTheRoute) {
    EXPECT_EQ(answer(get("/plaintext?x=1&y")), plaintext_response);
}

TEST(HttpSession, AbsoluteFormTargetIsRouted) {
    EXPECT_EQ(answer(get("http://example.com/json")), json_response);
}

TEST(HttpSession, HeadGivesTheSameHeadersWithoutTheBody) {
    std::string head = "HEAD /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_EQ(answer(head), plaintext_response.substr(0, plaintext_response.size() - 13));
    std::string json = answer("HEAD /json HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(json, json_response.substr(0, json_response.size() - 27));
    std::string missing = answer("HEAD /nothing HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_NE(missing.find("HTTP/1.1 404 Not Found\r\n"), std::string::npos);
    EXPECT_NE(missing.find("Content-Length: 10\r\n"), std::string::npos);
    EXPECT_TRUE(missing.ends_with("\r\n\r\n")) << missing;
}

TEST(HttpSession, MetricsAreGatheredByTheCaller) {
    std::string out = answer(get("/metrics"));
    EXPECT_TRUE(out.starts_with("HTTP/1.1 200 OK\r\n")) << out;
    EXPECT_NE(out.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
              std::string::npos);
    EXPECT_NE(out.find("Content-Length: 10\r\n"), std::string::npos);
    EXPECT_TRUE(out.ends_with("\r\n\r\nmetrics 1\n")) << out;
    std::string head = answer("HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_TRUE(head.ends_with("Content-Length: 10\r\n\r\n")) << head;
}

TEST(HttpSession, UnknownPathIs404WithoutARoot) {
    std::string out = answer(get("/index.html"));
    EXPECT_TRUE(out.starts_with("HTTP/1.1 404 Not Found\r\n")) << out;
    EXPECT_TRUE(out.ends_with("\r\n\r\nNot Found\n")) << out;
}

TEST(HttpSession, OtherMethodsGet405WithAllowAndKeepTheConnection) {
    for (std::string method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"}) {
        std::string request =
            method + " /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        std::string out = answer(request + get("/json"));
        EXPECT_EQ(statuses(out), (std::vector<int>{405, 200})) << method << "\n" << out;
        EXPECT_NE(out.find("Allow: GET, HEAD\r\n"), std::string::npos) << method;
    }
}

TEST(HttpSession, ConnectGets405AndTheConnectionCloses) {
    std::string out = answer("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" +
                             get("/plaintext"));
    EXPECT_EQ(statuses(out), std::vector<int>{405});
    EXPECT_TRUE(out.ends_with("<closed>")) << out;
}

TEST(HttpSession, UpgradeIsIgnored) {
    std::string out =
        answer(get("/json", "Upgrade: websocket\r\nConnection: Upgrade\r\n") + get("/plaintext"));
    EXPECT_EQ(out, json_response + plaintext_response);
}

// ---- Errors ----

TEST(HttpSession, GarbageGets400AndClose) {
    for (std::string garbage : {"hello world\r\n\r\n", "GET / HTTP/1.1\r\nHost a\r\n\r\n",
                                "GET / HTTX/1.1\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc"}) {
        Driver driver;
        driver.feed(garbage);
        EXPECT_TRUE(driver.transcript.starts_with("HTTP/1.1 400 Bad Request\r\n")) << garbage;
        EXPECT_NE(driver.transcript.find("Connection: close\r\n"), std::string::npos);
        EXPECT_TRUE(driver.closed);
        EXPECT_TRUE(driver.session.failed());
        EXPECT_EQ(driver.counters.parse_errors, 1u);
    }
}

TEST(HttpSession, ResponsesBeforeAnErrorAreKeptInOrder) {
    std::string out = answer(get("/plaintext") + get("/json") + "BAD REQUEST\r\n\r\n");
    EXPECT_EQ(statuses(out), (std::vector<int>{200, 200, 400}));
    EXPECT_TRUE(out.ends_with("<closed>"));
}

TEST(HttpSession, MissingHostInHttp11Is400) {
    EXPECT_EQ(statuses(answer("GET /plaintext HTTP/1.1\r\n\r\n")), std::vector<int>{400});
    EXPECT_EQ(statuses(answer(get("/plaintext", "Host: again\r\n"))), std::vector<int>{400});
    // HTTP/1.0 does not need one.
    EXPECT_EQ(statuses(answer("GET /plaintext HTTP/1.0\r\n\r\n")), std::vector<int>{200});
}

TEST(HttpSession, OtherHttpVersionsGet505) {
    std::string out = answer("GET /plaintext HTTP/2.0\r\nHost: a\r\n\r\n");
    EXPECT_EQ(statuses(out), std::vector<int>{505});
    EXPECT_TRUE(out.ends_with("<closed>"));
}

// The header section of a request whose length is exactly `size`.
std::string request_of_header_size(std::size_t size) {
    std::string head = "GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    std::string end = "\r\n\r\n";
    return head + std::string(size - head.size() - end.size(), 'p') + end;
}

TEST(HttpSession, HeaderSectionOfExactlyTheLimitIsServed) {
    SessionLimits limits;
    limits.parser.max_header_bytes = 256;
    std::string request = request_of_header_size(256);
    ASSERT_EQ(request.size(), 256u);
    EXPECT_EQ(answer(request + request, -1, limits), plaintext_response + plaintext_response);
}

TEST(HttpSession, HeaderSectionOneByteOverTheLimitGets431AndClose) {
    SessionLimits limits;
    limits.parser.max_header_bytes = 256;
    std::string out = answer(request_of_header_size(257), -1, limits);
    EXPECT_TRUE(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")) << out;
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
    EXPECT_TRUE(out.ends_with("<closed>"));
}

TEST(HttpSession, HeaderLimitCountsEveryByteFedInPieces) {
    SessionLimits limits;
    limits.parser.max_header_bytes = 256;
    for (std::size_t size : {256u, 257u}) {
        std::string request = request_of_header_size(size);
        std::string whole = answer(request, -1, limits);
        for (std::size_t split = 0; split <= request.size(); ++split) {
            Driver driver(-1, limits);
            driver.feed(std::string_view(request).substr(0, split));
            driver.feed(std::string_view(request).substr(split));
            ASSERT_EQ(driver.transcript + (driver.closed ? "<closed>" : ""), whole)
                << "size " << size << " split at " << split;
        }
    }
}

TEST(HttpSession, AnOverlongHeaderIsRefusedBeforeItEnds) {
    SessionLimits limits;
    limits.parser.max_header_bytes = 256;
    Driver driver(-1, limits);
    driver.feed("GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Long: " + std::string(300, 'x'));
    EXPECT_EQ(statuses(driver.transcript), std::vector<int>{431});
    EXPECT_TRUE(driver.closed);
}

TEST(HttpSession, ContentLengthBodyIsReadAndDiscarded) {
    std::string body(1000, 'b');
    std::string request =
        "GET /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + body;
    EXPECT_EQ(answer(request + get("/json")), plaintext_response + json_response);
}

TEST(HttpSession, ChunkedBodyWithTrailersIsReadAndDiscarded) {
    std::string request =
        "POST /json HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n";
    std::string out = answer(request + get("/plaintext"));
    EXPECT_EQ(statuses(out), (std::vector<int>{405, 200}));
    EXPECT_TRUE(out.ends_with(plaintext_response));
}

TEST(HttpSession, BodyOverTheLimitGets413AndClose) {
    SessionLimits limits;
    limits.parser.max_body_bytes = 10;
    std::string declared = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    std::string out = answer(declared, -1, limits);
    EXPECT_EQ(statuses(out), std::vector<int>{413});
    EXPECT_TRUE(out.ends_with("<closed>"));
    std::string at_limit = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789";
    EXPECT_EQ(statuses(answer(at_limit, -1, limits)), std::vector<int>{405});
    std::string chunked =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n";
    EXPECT_EQ(statuses(answer(chunked, -1, limits)), std::vector<int>{413});
}

TEST(HttpSession, ConflictingFramingIs400) {
    // Request smuggling: both Content-Length and Transfer-Encoding.
    std::string out = answer(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n");
    EXPECT_EQ(statuses(out), std::vector<int>{400});
}

// ---- Keep-alive ----

TEST(HttpSession, ConnectionCloseMakesTheResponseTheLast) {
    Driver driver;
    driver.feed(get("/plaintext", "Connection: close\r\n") + get("/json"));
    EXPECT_EQ(statuses(driver.transcript), std::vector<int>{200});
    EXPECT_NE(driver.transcript.find("Connection: close\r\n"), std::string::npos);
    EXPECT_TRUE(driver.closed);
    EXPECT_FALSE(driver.session.failed());
}

TEST(HttpSession, LingeringIsAskedForOnlyWhenThePeerMayStillBeSending) {
    Driver plain;
    plain.feed(get("/plaintext", "Connection: close\r\n"));
    EXPECT_TRUE(plain.closed);
    EXPECT_FALSE(plain.session.should_linger());
    Driver more;
    more.feed(get("/plaintext", "Connection: close\r\n") + get("/json"));
    EXPECT_TRUE(more.session.should_linger());
    Driver later;
    later.feed(get("/plaintext", "Connection: close\r\n"));
    later.session.feed("GET /json");  // after the last response
    EXPECT_TRUE(later.session.should_linger());
    Driver failed;
    failed.feed("nonsense\r\n\r\n");
    EXPECT_TRUE(failed.session.should_linger());
}

TEST(HttpSession, Http10ClosesUnlessItAsksForKeepAlive) {
    std::string plain = answer("GET /plaintext HTTP/1.0\r\n\r\n" + get("/json"));
    EXPECT_EQ(statuses(plain), std::vector<int>{200});
    EXPECT_NE(plain.find("Connection: close\r\n"), std::string::npos);
    EXPECT_TRUE(plain.ends_with("<closed>"));

    std::string kept =
        answer("GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/json"));
    EXPECT_EQ(statuses(kept), (std::vector<int>{200, 200}));
    EXPECT_NE(kept.find("Connection: keep-alive\r\n"), std::string::npos);
    EXPECT_FALSE(kept.ends_with("<closed>"));
}

TEST(HttpSession, DrainingMakesTheNextResponseTheLast) {
    Driver driver;
    driver.feed(get("/plaintext"));
    EXPECT_TRUE(driver.session.idle());
    driver.session.set_draining();
    driver.feed(get("/json") + get("/json"));
    EXPECT_EQ(statuses(driver.transcript), (std::vector<int>{200, 200}));
    EXPECT_NE(driver.transcript.find("Connection: close\r\n"), std::string::npos);
    EXPECT_TRUE(driver.closed);
}

TEST(HttpSession, IdleOnlyBetweenRequests) {
    Driver driver;
    EXPECT_TRUE(driver.session.idle());
    driver.feed("GET /plain");
    EXPECT_FALSE(driver.session.idle());
    driver.feed("text HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_TRUE(driver.session.idle());
    EXPECT_EQ(driver.session.requests(), 1u);
}

// ---- Pipelining ----

// Requests of every kind, pipelined: bodies of both framings, HEAD, 404,
// 405, the metrics, HTTP/1.0 keep-alive, and a last one that closes (what
// follows it must be dropped).
std::string pipeline() {
    return get("/plaintext") + "POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
           get("/json") +
           "PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n" +
           "HEAD /plaintext HTTP/1.1\r\nHost: a\r\n\r\n" + get("/nope?x=1") + get("/metrics") +
           "\r\n" +  // a stray CRLF between requests, which RFC 7230 section 3.5 allows
           "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/index.html") +
           get("/json", "Connection: close\r\n") + get("/plaintext");
}

TEST(HttpSession, PipelinedRequestsAreAllAnsweredInOrder) {
    TempDir root;
    root.write("index.html", "<p>index</p>\n");
    std::string out = answer(pipeline(), root.fd());
    EXPECT_EQ(statuses(out), (std::vector<int>{200, 405, 200, 405, 200, 404, 200, 200, 200, 200}));
    EXPECT_TRUE(out.ends_with("<closed>"));
    EXPECT_NE(out.find("<p>index</p>\n"), std::string::npos);
}

TEST(HttpSession, PipelineSplitAtEveryByteGivesTheSameResponses) {
    TempDir root;
    root.write("index.html", "<p>index</p>\n");
    std::string input = pipeline();
    std::string whole = answer(input, root.fd());
    for (std::size_t split = 0; split <= input.size(); ++split) {
        Driver driver(root.fd());
        driver.feed(std::string_view(input).substr(0, split));
        driver.feed(std::string_view(input).substr(split));
        ASSERT_EQ(driver.transcript + (driver.closed ? "<closed>" : ""), whole)
            << "split at " << split;
    }
}

TEST(HttpSession, PipelineFedOneByteAtATimeGivesTheSameResponses) {
    TempDir root;
    root.write("index.html", "<p>index</p>\n");
    std::string input = pipeline();
    std::string whole = answer(input, root.fd());
    Driver driver(root.fd());
    for (char byte : input) {
        driver.feed(std::string_view(&byte, 1));
    }
    EXPECT_EQ(driver.transcript + (driver.closed ? "<closed>" : ""), whole);
}

TEST(HttpSession, ErrorsAtEverySplitGiveTheSameResponses) {
    std::string input = get("/plaintext") + get("/json") + "GET /x HTTP/1.1\r\nBad Header\r\n\r\n";
    std::string whole = answer(input);
    EXPECT_EQ(statuses(whole), (std::vector<int>{200, 200, 400}));
    for (std::size_t split = 0; split <= input.size(); ++split) {
        Driver driver;
        driver.feed(std::string_view(input).substr(0, split));
        driver.feed(std::string_view(input).substr(split));
        ASSERT_EQ(driver.transcript + (driver.closed ? "<closed>" : ""), whole)
            << "split at " << split;
    }
}

TEST(HttpSession, LargeBatchesStopAtTheFlushSizeAndResume) {
    SessionLimits limits;
    limits.flush_bytes = 1024;
    std::string input;
    std::string expected;
    for (int i = 0; i < 100; ++i) {
        input += get("/plaintext");
        expected += plaintext_response;
    }
    Driver driver(-1, limits);
    driver.feed(input);
    EXPECT_EQ(driver.transcript, expected);
    EXPECT_GE(driver.flushes, 10);
    EXPECT_TRUE(driver.session.idle());
}

TEST(HttpSession, InputArrivingWhileAFileIsPendingIsKept) {
    TempDir root;
    root.write("a.txt", "AAAA");
    Driver driver(root.fd());
    Step step = driver.session.feed(get("/a.txt") + "GET /plain");
    ASSERT_EQ(step, Step::send_file);
    EXPECT_EQ(driver.session.file_size(), 4u);
    EXPECT_EQ(driver.session.feed("text HTTP/1.1\r\nHost: a\r\n\r\n"), Step::busy);
    std::string head = driver.session.output();
    driver.session.output_sent();
    driver.session.file_done();
    driver.handle(driver.session.resume());
    EXPECT_EQ(statuses(head + driver.transcript), (std::vector<int>{200, 200}));
    EXPECT_EQ(driver.transcript, plaintext_response);
}

TEST(HttpSession, PlaintextPathAllocatesNothing) {
    Driver driver;
    std::string batch;
    for (int i = 0; i < 16; ++i) {
        batch += get("/plaintext");
    }
    driver.feed(batch);  // warm up: buffers reach their working size
    driver.transcript.reserve(driver.transcript.size() * 8);
    long before = t_allocations;
    for (int i = 0; i < 4; ++i) {
        driver.feed(batch);
    }
    EXPECT_EQ(t_allocations - before, 0);
    EXPECT_EQ(driver.session.requests(), 80u);
}

TEST(HttpSession, CountersFollowTheResponses) {
    Driver driver;
    driver.feed(get("/plaintext") + get("/nope") + "PUT / HTTP/1.1\r\nHost: a\r\n\r\n" +
                "junk\r\n\r\n");
    EXPECT_EQ(driver.counters.requests, 3u);
    EXPECT_EQ(driver.counters.responses_by_class[1], 1u);
    EXPECT_EQ(driver.counters.responses_by_class[3], 3u);
    EXPECT_EQ(driver.counters.parse_errors, 1u);
}

}  // namespace
}  // namespace shardloop::httpd
