// The parts of the core beside the session: the static-file lookup on a
// temporary directory, path normalization, the MIME table, target paths,
// dates, the metrics text and the command line.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "http_date.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "request_handler.hpp"
#include "session_driver.hpp"
#include "static_files.hpp"

namespace shardloop::httpd {
namespace {

using namespace test_support;

// ---- Static files ----

TEST(StaticFiles, ServesFilesWithTypeLengthAndLastModified) {
    TempDir root;
    root.write("style.css", "body{}");
    std::string out = answer(get("/style.css"), root.fd());
    EXPECT_TRUE(out.starts_with("HTTP/1.1 200 OK\r\n")) << out;
    EXPECT_NE(out.find("Content-Type: text/css; charset=utf-8\r\n"), std::string::npos);
    EXPECT_NE(out.find("Content-Length: 6\r\n"), std::string::npos);
    EXPECT_NE(out.find("Last-Modified: "), std::string::npos);
    EXPECT_TRUE(out.ends_with("\r\n\r\nbody{}")) << out;
    std::string head = answer("HEAD /style.css HTTP/1.1\r\nHost: a\r\n\r\n", root.fd());
    EXPECT_TRUE(head.ends_with("Content-Length: 6\r\n") ||
                head.find("Content-Length: 6\r\n") != std::string::npos);
    EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
}

TEST(StaticFiles, EmptyFileHasNoBodyToSend) {
    TempDir root;
    root.write("empty.txt", "");
    std::string out = answer(get("/empty.txt") + get("/json"), root.fd());
    EXPECT_EQ(statuses(out), (std::vector<int>{200, 200}));
    EXPECT_NE(out.find("Content-Length: 0\r\n"), std::string::npos);
}

TEST(StaticFiles, SlashServesIndexHtml) {
    TempDir root;
    root.write("index.html", "<h1>home</h1>");
    root.mkdir("docs");
    root.write("docs/index.html", "<h1>docs</h1>");
    EXPECT_TRUE(answer(get("/"), root.fd()).ends_with("<h1>home</h1>"));
    EXPECT_TRUE(answer(get("/docs/"), root.fd()).ends_with("<h1>docs</h1>"));
    std::string redirect = answer(get("/docs"), root.fd());
    EXPECT_EQ(statuses(redirect), std::vector<int>{301});
    EXPECT_NE(redirect.find("Location: /docs/\r\n"), std::string::npos);
}

TEST(StaticFiles, DirectoryWithoutIndexIsForbidden) {
    TempDir root;
    root.mkdir("empty");
    EXPECT_EQ(statuses(answer(get("/empty/"), root.fd())), std::vector<int>{403});
    EXPECT_EQ(statuses(answer(get("/"), root.fd())), std::vector<int>{403});
}

TEST(StaticFiles, PercentEncodedNamesAreDecoded) {
    TempDir root;
    root.write("a b.txt", "spaced");
    EXPECT_TRUE(answer(get("/a%20b.txt"), root.fd()).ends_with("spaced"));
    EXPECT_EQ(statuses(answer(get("/a%2"), root.fd())), std::vector<int>{400});
    EXPECT_EQ(statuses(answer(get("/a%zz"), root.fd())), std::vector<int>{400});
}

TEST(StaticFiles, PathTraversalIsRefused) {
    TempDir root;
    root.write("inside.txt", "in");
    for (std::string path : {"/../inside.txt", "/a/../../etc/passwd", "/%2e%2e/etc/passwd",
                             "/%2E%2E%2Fetc%2Fpasswd", "/..", "/./../x"}) {
        EXPECT_EQ(statuses(answer(get(path), root.fd())), std::vector<int>{403}) << path;
    }
    // ".." that stays inside the root is resolved.
    EXPECT_TRUE(answer(get("/sub/../inside.txt"), root.fd()).ends_with("in"));
}

TEST(StaticFiles, NulBytesAreNotFound) {
    TempDir root;
    root.write("a.txt", "a");
    EXPECT_EQ(statuses(answer(get("/a.txt%00.png"), root.fd())), std::vector<int>{404});
}

TEST(StaticFiles, SymlinksMayNotLeaveTheRoot) {
    TempDir root;
    TempDir outside;
    outside.write("secret.txt", "secret");
    root.write("real.txt", "real");
    ASSERT_EQ(
        ::symlink((outside.path() + "/secret.txt").c_str(), (root.path() + "/absolute").c_str()),
        0);
    ASSERT_EQ(::symlink("../", (root.path() + "/up").c_str()), 0);
    ASSERT_EQ(::symlink("real.txt", (root.path() + "/alias.txt").c_str()), 0);
    EXPECT_EQ(statuses(answer(get("/absolute"), root.fd())), std::vector<int>{403});
    EXPECT_EQ(statuses(answer(get("/up/"), root.fd())), std::vector<int>{403});
    EXPECT_TRUE(answer(get("/alias.txt"), root.fd()).ends_with("real"));
}

TEST(StaticFiles, NonRegularFilesAreForbidden) {
    TempDir root;
    ASSERT_EQ(::mkfifo((root.path() + "/fifo").c_str(), 0644), 0);
    EXPECT_EQ(statuses(answer(get("/fifo"), root.fd())), std::vector<int>{403});
}

TEST(StaticFiles, MissingFileIs404) {
    TempDir root;
    EXPECT_EQ(statuses(answer(get("/missing.txt"), root.fd())), std::vector<int>{404});
    EXPECT_EQ(statuses(answer(get("/missing/deeper"), root.fd())), std::vector<int>{404});
}

TEST(NormalizePath, ResolvesDotsAndSlashes) {
    struct Case {
        std::string_view in;
        PathStatus status;
        std::string_view out;
        bool trailing;
    };
    for (const Case& c : {
             Case{"/", PathStatus::ok, "", true},
             Case{"/a/b.txt", PathStatus::ok, "a/b.txt", false},
             Case{"//a///b/", PathStatus::ok, "a/b", true},
             Case{"/a/./b/../c", PathStatus::ok, "a/c", false},
             Case{"/a/..", PathStatus::ok, "", true},
             Case{"/a%2Fb", PathStatus::ok, "a/b", false},
             Case{"/%41", PathStatus::ok, "A", false},
             Case{"/..", PathStatus::forbidden, "", false},
             Case{"/a/../..", PathStatus::forbidden, "", false},
             Case{"a", PathStatus::bad_request, "", false},
             Case{"/%", PathStatus::bad_request, "", false},
             Case{"/%0", PathStatus::bad_request, "", false},
             Case{"/%00", PathStatus::not_found, "", false},
             Case{std::string_view("/a\0b", 4), PathStatus::not_found, "", false},
         }) {
        std::string out;
        bool trailing = false;
        EXPECT_EQ(normalize_path(c.in, out, trailing), c.status) << c.in;
        if (c.status == PathStatus::ok) {
            EXPECT_EQ(out, c.out) << c.in;
            EXPECT_EQ(trailing, c.trailing) << c.in;
        }
    }
}

TEST(ContentType, ByExtension) {
    EXPECT_EQ(content_type_for("a/index.html"), "text/html; charset=utf-8");
    EXPECT_EQ(content_type_for("x.JSON"), "application/json");
    EXPECT_EQ(content_type_for("p.png"), "image/png");
    EXPECT_EQ(content_type_for("noext"), "application/octet-stream");
    EXPECT_EQ(content_type_for("dir.d/file"), "application/octet-stream");
    EXPECT_EQ(content_type_for("trailing."), "application/octet-stream");
}

TEST(RequestPath, SplitsTargets) {
    EXPECT_EQ(request_path("/a/b?c=d"), "/a/b");
    EXPECT_EQ(request_path("/a#frag"), "/a");
    EXPECT_EQ(request_path("http://host:80/x?y"), "/x");
    EXPECT_EQ(request_path("HTTPS://host"), "/");
    EXPECT_EQ(request_path("*"), "");
    EXPECT_EQ(request_path("ftp://host/x"), "");
}

// ---- Dates, metrics, options ----

TEST(HttpDate, FormatsImfFixdate) {
    char buffer[http_date_size];
    EXPECT_EQ(format_http_date(example_time, buffer), example_date);
    EXPECT_EQ(format_http_date(0, buffer), "Thu, 01 Jan 1970 00:00:00 GMT");
    EXPECT_EQ(format_http_date(951782400, buffer), "Tue, 29 Feb 2000 00:00:00 GMT");
}

TEST(HttpDate, CacheFormatsOncePerSecond) {
    DateCache cache(example_time);
    EXPECT_EQ(cache.value(), example_date);
    EXPECT_FALSE(cache.update(example_time));
    EXPECT_TRUE(cache.update(example_time + 1));
    EXPECT_EQ(cache.value(), "Sun, 06 Nov 1994 08:49:38 GMT");
}

TEST(Metrics, OneSeriesPerShardWithHelpAndType) {
    ShardMetrics a;
    a.shard = 0;
    a.iterations = 10;
    a.sleep_seconds = 1.5;
    a.idle_poll_seconds = 0.25;
    a.server.requests = 7;
    a.server.responses_by_class[1] = 6;
    ShardMetrics b;
    b.shard = 1;
    b.iterations = 20;
    b.server.connections_open = 3;
    std::vector<ShardMetrics> shards{a, b};
    std::string text = format_metrics(shards);
    EXPECT_NE(text.find("# HELP shardloop_loop_iterations_total "), std::string::npos);
    EXPECT_NE(text.find("# TYPE shardloop_loop_iterations_total counter\n"), std::string::npos);
    EXPECT_NE(text.find("shardloop_loop_iterations_total{shard=\"0\"} 10\n"), std::string::npos);
    EXPECT_NE(text.find("shardloop_loop_iterations_total{shard=\"1\"} 20\n"), std::string::npos);
    EXPECT_NE(text.find("shardloop_loop_sleep_seconds_total{shard=\"0\"} 1.5"), std::string::npos);
    EXPECT_NE(text.find("shardloop_loop_idle_poll_seconds_total{shard=\"0\"} 0.25"),
              std::string::npos);
    EXPECT_NE(text.find("httpd_requests_total{shard=\"0\"} 7\n"), std::string::npos);
    EXPECT_NE(text.find("httpd_responses_total{shard=\"0\",class=\"2xx\"} 6\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE httpd_open_connections gauge\n"), std::string::npos);
    EXPECT_NE(text.find("httpd_open_connections{shard=\"1\"} 3\n"), std::string::npos);
    for (std::string_view name :
         {"shardloop_io_uring_submissions_total", "shardloop_io_uring_completions_total",
          "shardloop_io_uring_enters_total", "shardloop_loop_wakeups_total",
          "shardloop_cross_shard_messages_sent_total",
          "shardloop_cross_shard_messages_received_total", "shardloop_loop_callbacks_total",
          "shardloop_loop_task_steps_total", "shardloop_loop_run_seconds_total",
          "httpd_received_bytes_total", "httpd_sent_bytes_total", "httpd_parse_errors_total",
          "httpd_timeouts_total", "httpd_connections_accepted_total"}) {
        EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << name;
    }
    EXPECT_TRUE(text.ends_with("\n"));
}

CommandLine parse(std::vector<const char*> args) {
    args.insert(args.begin(), "shardloop_httpd");
    return parse_command_line(static_cast<int>(args.size()), args.data());
}

TEST(Options, Defaults) {
    CommandLine line = parse({});
    EXPECT_TRUE(line.error.empty());
    EXPECT_EQ(line.options.host, "127.0.0.1");
    EXPECT_EQ(line.options.port, 8080);
    EXPECT_EQ(line.options.shards, 0u);
    EXPECT_EQ(line.options.idle_timeout, 10.0);
    EXPECT_EQ(line.options.max_header_bytes, 8192u);
    EXPECT_EQ(line.options.max_body_bytes, 1048576u);
    EXPECT_TRUE(line.options.root.empty());
}

TEST(Options, EveryOptionTakesItsValue) {
    CommandLine line =
        parse({"--host", "0.0.0.0", "--port=0", "--shards", "2", "--cpus", "0,1", "--root", "/srv",
               "--idle-timeout", "0.5", "--max-header-bytes", "1024", "--max-body-bytes=0",
               "--idle-poll", "50", "--spread", "cpu"});
    ASSERT_TRUE(line.error.empty()) << line.error;
    EXPECT_EQ(line.options.host, "0.0.0.0");
    EXPECT_EQ(line.options.port, 0);
    EXPECT_EQ(line.options.shards, 2u);
    EXPECT_EQ(line.options.cpus, (std::vector<unsigned>{0, 1}));
    EXPECT_EQ(line.options.root, "/srv");
    EXPECT_EQ(line.options.idle_timeout, 0.5);
    EXPECT_EQ(line.options.max_header_bytes, 1024u);
    EXPECT_EQ(line.options.max_body_bytes, 0u);
    EXPECT_EQ(line.options.idle_poll_us, 50u);
    EXPECT_TRUE(line.options.spread_by_cpu);
    EXPECT_FALSE(parse({"--spread=hash"}).options.spread_by_cpu);
    EXPECT_EQ(parse({"--cpus", "2-4,7"}).options.cpus, (std::vector<unsigned>{2, 3, 4, 7}));
    EXPECT_TRUE(parse({"--help"}).help);
}

TEST(Options, BadValuesNameTheOption) {
    struct Case {
        std::vector<const char*> args;
        std::string_view names;
    };
    for (const Case& c : {
             Case{{"--port", "65536"}, "--port"},
             Case{{"--port", "http"}, "--port"},
             Case{{"--port"}, "--port"},
             Case{{"--shards", "-1"}, "--shards"},
             Case{{"--cpus", "1,"}, "--cpus"},
             Case{{"--cpus", "3-1"}, "--cpus"},
             Case{{"--idle-timeout", "0"}, "--idle-timeout"},
             Case{{"--idle-timeout", "nan"}, "--idle-timeout"},
             Case{{"--idle-timeout", "1s"}, "--idle-timeout"},
             Case{{"--max-header-bytes", "8"}, "--max-header-bytes"},
             Case{{"--max-body-bytes", "1e6"}, "--max-body-bytes"},
             Case{{"--root", ""}, "--root"},
             Case{{"--idle-poll", "2000000"}, "--idle-poll"},
             Case{{"--spread", "round-robin"}, "--spread"},
             Case{{"--bogus"}, "--bogus"},
             Case{{"--shards", "3", "--cpus", "0,1"}, "--shards"},
         }) {
        CommandLine line = parse(c.args);
        EXPECT_NE(line.error.find(c.names), std::string::npos) << line.error;
    }
    EXPECT_NE(usage_text("shardloop_httpd").find("--max-body-bytes"), std::string::npos);
}

}  // namespace
}  // namespace shardloop::httpd
