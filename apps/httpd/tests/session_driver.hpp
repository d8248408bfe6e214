#pragma once

// What the core tests share: a Driver that plays HttpConnection's part
// around an HttpSession, synchronously, and helpers to build requests and
// read the transcript of the responses.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "http_date.hpp"
#include "http_session.hpp"
#include "request_handler.hpp"
#include "static_files.hpp"
#include "temp_dir.hpp"

namespace shardloop::httpd::test_support {

// RFC 7231's example date: Sun, 06 Nov 1994 08:49:37 GMT.
constexpr std::time_t example_time = 784111777;
constexpr std::string_view example_date = "Sun, 06 Nov 1994 08:49:37 GMT";

inline const std::string plaintext_response =
    "HTTP/1.1 200 OK\r\nServer: shardloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
inline const std::string json_response =
    "HTTP/1.1 200 OK\r\nServer: shardloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    "Content-Type: application/json\r\nContent-Length: 27\r\n\r\n"
    "{\"message\":\"Hello, World!\"}";

inline std::string get(std::string_view path, std::string_view extra_headers = {}) {
    return "GET " + std::string(path) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) +
           "\r\n";
}

// Drives a session as HttpConnection does, synchronously: it writes
// (appends to the transcript) at each step, reads a file body itself, and
// answers the metrics with a fixed text.
class Driver {
public:
    explicit Driver(int root_fd = -1, SessionLimits limits = {})
        : handler(StaticFiles(root_fd)), session(handler, date, counters, limits) {}

    void feed(std::string_view data) {
        if (!closed) {
            handle(session.feed(data));
        }
    }

    void handle(Step step) {
        for (;;) {
            transcript += session.output();
            session.output_sent();
            switch (step) {
                case Step::need_more:
                    return;
                case Step::flush:
                    ++flushes;
                    step = session.resume();
                    continue;
                case Step::send_file: {
                    std::string body(session.file_size(), '\0');
                    ssize_t got = ::pread(session.file_fd(), body.data(), body.size(), 0);
                    EXPECT_EQ(got, static_cast<ssize_t>(body.size()));
                    transcript += body;
                    session.file_done();
                    step = session.resume();
                    continue;
                }
                case Step::metrics:
                    session.metrics_done("metrics 1\n");
                    step = session.resume();
                    continue;
                case Step::close:
                    closed = true;
                    return;
                case Step::busy:
                    ADD_FAILURE() << "busy with nothing pending";
                    return;
            }
        }
    }

    DateCache date{example_time};
    ServerCounters counters;
    RequestHandler handler;
    HttpSession session;
    std::string transcript;
    bool closed = false;
    int flushes = 0;
};

inline std::string answer(std::string_view input, int root_fd = -1, SessionLimits limits = {}) {
    Driver driver(root_fd, limits);
    driver.feed(input);
    return driver.transcript + (driver.closed ? "<closed>" : "");
}

// The status codes of the responses in a transcript, in order.
inline std::vector<int> statuses(std::string_view transcript) {
    std::vector<int> found;
    for (std::size_t at = transcript.find("HTTP/1.1 "); at != std::string_view::npos;
         at = transcript.find("HTTP/1.1 ", at + 1)) {
        found.push_back(std::atoi(std::string(transcript.substr(at + 9, 3)).c_str()));
    }
    return found;
}

}  // namespace shardloop::httpd::test_support
