// The load generator's parts on their own: the latency histogram against
// exact percentiles, the command line, the HTTP response parser on
// responses cut at every byte, the division of the load among shards, and
// the JSON report's keys.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "apps/loadgen/histogram.hpp"
#include "apps/loadgen/http_response_parser.hpp"
#include "apps/loadgen/options.hpp"
#include "apps/loadgen/report.hpp"
#include "apps/loadgen/run_config.hpp"

namespace shardloop::loadgen {
namespace {

// ---- LatencyHistogram ----

// The exact percentile by the histogram's definition: the smallest value
// that at least a fraction q of the values do not exceed.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, double q) {
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

void expect_within_precision(uint64_t reported, uint64_t exact, double q) {
    double error = std::fabs(static_cast<double>(reported) - static_cast<double>(exact));
    EXPECT_LE(error, static_cast<double>(exact) * LatencyHistogram::relative_error + 0.5)
        << "q=" << q << " reported " << reported << " exact " << exact;
}

TEST(LatencyHistogram, PercentilesMatchASortedArrayWithinThePrecision) {
    std::mt19937_64 random(12345);
    // Log-uniform from 1 ns to about two minutes: every bucket size is hit.
    std::uniform_real_distribution<double> exponent(0.0, std::log(120e9));
    std::vector<uint64_t> values;
    LatencyHistogram histogram;
    for (int i = 0; i < 100'000; ++i) {
        auto v = static_cast<uint64_t>(std::exp(exponent(random)));
        values.push_back(v);
        histogram.record(v);
    }
    std::sort(values.begin(), values.end());
    for (double q : {0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
        expect_within_precision(histogram.percentile(q), exact_percentile(values, q), q);
    }
    EXPECT_EQ(histogram.count(), values.size());
    EXPECT_EQ(histogram.max(), values.back());
    EXPECT_EQ(histogram.min(), values.front());
    EXPECT_EQ(histogram.percentile(1.0), values.back());
}

TEST(LatencyHistogram, SmallValuesAreExact) {
    LatencyHistogram histogram;
    for (uint64_t v = 0; v < 128; ++v) {
        histogram.record(v);
    }
    EXPECT_EQ(histogram.percentile(0.5), 63u);
    EXPECT_EQ(histogram.percentile(0.0), 0u);
    EXPECT_EQ(histogram.percentile(1.0), 127u);
    EXPECT_DOUBLE_EQ(histogram.mean(), 63.5);
}

TEST(LatencyHistogram, HugeValuesNeitherClampNorOverflow) {
    LatencyHistogram histogram;
    histogram.record(UINT64_MAX);
    histogram.record(uint64_t{1} << 63);
    EXPECT_EQ(histogram.max(), UINT64_MAX);
    expect_within_precision(histogram.percentile(0.5), uint64_t{1} << 63, 0.5);
}

TEST(LatencyHistogram, EmptyReportsZeros) {
    LatencyHistogram histogram;
    EXPECT_EQ(histogram.count(), 0u);
    EXPECT_EQ(histogram.percentile(0.5), 0u);
    EXPECT_EQ(histogram.min(), 0u);
    EXPECT_EQ(histogram.max(), 0u);
    EXPECT_EQ(histogram.mean(), 0.0);
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
    std::mt19937_64 random(7);
    std::uniform_int_distribution<uint64_t> value(1, 50'000'000);
    LatencyHistogram parts[3];
    LatencyHistogram whole;
    std::vector<uint64_t> values;
    for (int i = 0; i < 30'000; ++i) {
        uint64_t v = value(random);
        parts[i % 3].record(v);
        whole.record(v);
        values.push_back(v);
    }
    LatencyHistogram merged;
    for (const LatencyHistogram& part : parts) {
        merged.merge(part);
    }
    std::sort(values.begin(), values.end());
    EXPECT_EQ(merged.count(), whole.count());
    EXPECT_EQ(merged.max(), whole.max());
    EXPECT_EQ(merged.min(), whole.min());
    EXPECT_DOUBLE_EQ(merged.mean(), whole.mean());
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        EXPECT_EQ(merged.percentile(q), whole.percentile(q));
        expect_within_precision(merged.percentile(q), exact_percentile(values, q), q);
    }
}

// ---- Options ----

Options parse(std::vector<std::string_view> args) { return parse_options(args); }

// The OptionError's message, or "" when the arguments parse.
std::string error_of(std::vector<std::string_view> args) {
    try {
        parse_options(args);
    } catch (const OptionError& e) {
        return e.what();
    }
    return "";
}

TEST(LoadgenOptions, DefaultsFollowTheDocumentation) {
    Options o = parse({"--port", "8080"});
    EXPECT_EQ(o.mode, Mode::echo);
    EXPECT_EQ(o.host, "127.0.0.1");
    EXPECT_EQ(o.port, 8080);
    EXPECT_EQ(o.connections, 64u);
    EXPECT_EQ(o.shards, 0u);
    EXPECT_EQ(o.duration, 5.0);
    EXPECT_EQ(o.requests, 0u);
    EXPECT_EQ(o.warmup, 0.0);
    EXPECT_EQ(o.rate, 0.0);
    EXPECT_EQ(o.pipeline, 1u);
    EXPECT_EQ(o.size, 64u);
    EXPECT_EQ(o.path, "/plaintext");
    EXPECT_FALSE(o.json);
    EXPECT_FALSE(o.quiet);
    EXPECT_TRUE(o.server_pids.empty());
}

TEST(LoadgenOptions, EveryOptionIsRead) {
    Options o =
        parse({"--mode", "http",       "--host=::1", "--port",       "1",     "--connections",
               "3",      "--shards",   "3",          "--cpus",       "0,2-3", "--duration",
               "0.25",   "--requests", "10",         "--warmup",     "1.5",   "--rate",
               "1000.5", "--pipeline", "16",         "--size",       "4096",  "--path",
               "/a?b=c", "--json",     "--quiet",    "--server-pid", "7",     "--server-pid",
               "8"});
    EXPECT_EQ(o.mode, Mode::http);
    EXPECT_EQ(o.host, "::1");
    EXPECT_EQ(o.connections, 3u);
    EXPECT_EQ(o.shards, 3u);
    EXPECT_EQ(o.cpus, (std::vector<unsigned>{0, 2, 3}));
    EXPECT_EQ(o.duration, 0.25);
    EXPECT_EQ(o.requests, 10u);
    EXPECT_EQ(o.warmup, 1.5);
    EXPECT_EQ(o.rate, 1000.5);
    EXPECT_EQ(o.pipeline, 16u);
    EXPECT_EQ(o.size, 4096u);
    EXPECT_EQ(o.path, "/a?b=c");
    EXPECT_TRUE(o.json);
    EXPECT_TRUE(o.quiet);
    EXPECT_EQ(o.server_pids, (std::vector<int>{7, 8}));
}

TEST(LoadgenOptions, ARequestCountAloneLiftsTheTimeLimit) {
    EXPECT_EQ(parse({"--port", "1", "--requests", "5"}).duration, 0.0);
    EXPECT_EQ(parse({"--port", "1", "--requests", "5", "--duration", "2"}).duration, 2.0);
}

TEST(LoadgenOptions, HelpNeedsNoPort) { EXPECT_TRUE(parse({"--help"}).help); }

TEST(LoadgenOptions, BadValuesNameTheOption) {
    struct Case {
        std::vector<std::string_view> args;
        std::string option;
    };
    std::vector<Case> cases = {
        {{}, "--port"},
        {{"--port", "0"}, "--port"},
        {{"--port", "65536"}, "--port"},
        {{"--port", "http"}, "--port"},
        {{"--port"}, "--port"},
        {{"--port", "1", "--mode", "ftp"}, "--mode"},
        {{"--port", "1", "--connections", "0"}, "--connections"},
        {{"--port", "1", "--connections", "-5"}, "--connections"},
        {{"--port", "1", "--shards", "x"}, "--shards"},
        {{"--port", "1", "--cpus", "1-0"}, "--cpus"},
        {{"--port", "1", "--cpus", "0,0"}, "--cpus"},
        {{"--port", "1", "--cpus", "0,"}, "--cpus"},
        {{"--port", "1", "--cpus", "0,1", "--shards", "3"}, "--shards"},
        {{"--port", "1", "--duration", "0"}, "--duration"},
        {{"--port", "1", "--duration", "-1"}, "--duration"},
        {{"--port", "1", "--duration", "nan"}, "--duration"},
        {{"--port", "1", "--duration", "5s"}, "--duration"},
        {{"--port", "1", "--requests", "0"}, "--requests"},
        {{"--port", "1", "--warmup", "-0.5"}, "--warmup"},
        {{"--port", "1", "--rate", "0"}, "--rate"},
        {{"--port", "1", "--pipeline", "0"}, "--pipeline"},
        {{"--port", "1", "--size", "0"}, "--size"},
        {{"--port", "1", "--path", "plaintext"}, "--path"},
        {{"--port", "1", "--path", "/a b"}, "--path"},
        {{"--port", "1", "--host", ""}, "--host"},
        {{"--port", "1", "--server-pid", "0"}, "--server-pid"},
        {{"--port", "1", "--json=yes"}, "--json"},
        {{"--port", "1", "--frobnicate"}, "--frobnicate"},
        {{"--port", "1", "--size", "16777216", "--pipeline", "8"}, "--pipeline"},
    };
    for (const Case& c : cases) {
        std::string error = error_of(c.args);
        EXPECT_NE(error.find(c.option), std::string::npos)
            << "arguments: " << ::testing::PrintToString(c.args) << " gave '" << error << "'";
    }
}

// ---- HttpResponseParser ----

struct Responses {
    std::vector<unsigned> statuses;
    static void record(void* self, unsigned status) {
        static_cast<Responses*>(self)->statuses.push_back(status);
    }
};

const std::string ok_response =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const std::string chunked_response =
    "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nHello\r\n8;ext=1\r\n, World!\r\n0\r\nTrailer: x\r\n\r\n";
const std::string empty_response = "HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n";
const std::string close_response =
    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye";

TEST(HttpResponseParser, CountsPipelinedResponsesSplitAtEveryByte) {
    std::string stream = ok_response + chunked_response + empty_response + ok_response;
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        Responses seen;
        HttpResponseParser parser(&Responses::record, &seen);
        EXPECT_EQ(parser.feed(std::string_view(stream).substr(0, cut)),
                  HttpResponseParser::Result::ok);
        EXPECT_EQ(parser.feed(std::string_view(stream).substr(cut)),
                  HttpResponseParser::Result::ok);
        EXPECT_EQ(seen.statuses, (std::vector<unsigned>{200, 404, 204, 200})) << "cut at " << cut;
        EXPECT_FALSE(parser.in_response());
    }
}

TEST(HttpResponseParser, CountsResponsesFedOneByteAtATime) {
    std::string stream = chunked_response + ok_response + chunked_response;
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    for (char c : stream) {
        ASSERT_EQ(parser.feed(std::string_view(&c, 1)), HttpResponseParser::Result::ok);
    }
    EXPECT_EQ(seen.statuses, (std::vector<unsigned>{404, 200, 404}));
}

TEST(HttpResponseParser, ConnectionCloseEndsTheStreamAfterItsResponse) {
    std::string stream = ok_response + close_response + ok_response;
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        Responses seen;
        HttpResponseParser parser(&Responses::record, &seen);
        HttpResponseParser::Result first = parser.feed(std::string_view(stream).substr(0, cut));
        HttpResponseParser::Result second = parser.feed(std::string_view(stream).substr(cut));
        EXPECT_EQ(second, HttpResponseParser::Result::closed) << "cut at " << cut;
        if (cut < ok_response.size() + close_response.size()) {
            EXPECT_EQ(first, HttpResponseParser::Result::ok);
        }
        // The response after the close is not ours to count.
        EXPECT_EQ(seen.statuses, (std::vector<unsigned>{200, 503})) << "cut at " << cut;
    }
}

TEST(HttpResponseParser, Http10WithoutKeepAliveCloses) {
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    EXPECT_EQ(parser.feed("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
              HttpResponseParser::Result::closed);
    EXPECT_EQ(seen.statuses, (std::vector<unsigned>{200}));
}

TEST(HttpResponseParser, ABodyThatRunsToTheEndOfTheConnectionEndsAtFinish) {
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    EXPECT_EQ(parser.feed("HTTP/1.1 200 OK\r\n\r\nsome body"), HttpResponseParser::Result::ok);
    EXPECT_TRUE(seen.statuses.empty());
    EXPECT_TRUE(parser.in_response());
    EXPECT_EQ(parser.finish(), HttpResponseParser::Result::closed);
    EXPECT_EQ(seen.statuses, (std::vector<unsigned>{200}));
}

TEST(HttpResponseParser, AResponseCutShortIsAnError) {
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    EXPECT_EQ(parser.feed(ok_response.substr(0, ok_response.size() - 3)),
              HttpResponseParser::Result::ok);
    EXPECT_EQ(parser.finish(), HttpResponseParser::Result::error);
    EXPECT_FALSE(parser.error().empty());
    EXPECT_TRUE(seen.statuses.empty());
}

TEST(HttpResponseParser, MalformedInputIsAnErrorUntilReset) {
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    EXPECT_EQ(parser.feed("HTTP/1.1 OK 200\r\n\r\n"), HttpResponseParser::Result::error);
    EXPECT_NE(parser.error(), "");
    EXPECT_EQ(parser.feed(ok_response), HttpResponseParser::Result::error);
    parser.reset();
    EXPECT_EQ(parser.feed(ok_response), HttpResponseParser::Result::ok);
    EXPECT_EQ(seen.statuses, (std::vector<unsigned>{200}));
}

TEST(HttpResponseParser, InterimResponsesAreNotCounted) {
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    EXPECT_EQ(parser.feed("HTTP/1.1 100 Continue\r\n\r\n" + ok_response),
              HttpResponseParser::Result::ok);
    EXPECT_EQ(seen.statuses, (std::vector<unsigned>{200}));
}

TEST(HttpResponseParser, ResetStartsAFreshConnection) {
    Responses seen;
    HttpResponseParser parser(&Responses::record, &seen);
    EXPECT_EQ(parser.feed(close_response + ok_response), HttpResponseParser::Result::closed);
    parser.reset();
    EXPECT_EQ(parser.feed(ok_response.substr(0, 20)), HttpResponseParser::Result::ok);
    EXPECT_TRUE(parser.in_response());
    parser.reset();
    EXPECT_EQ(parser.feed(ok_response), HttpResponseParser::Result::ok);
    EXPECT_EQ(seen.statuses, (std::vector<unsigned>{503, 200}));
}

// ---- Dividing the load ----

TEST(ShardShares, AddUpToTheTotals) {
    RunConfig config;
    config.connections = 10;
    config.requests = 1001;
    config.rate = 500;
    for (unsigned shards : {1u, 3u, 4u, 10u}) {
        config.shards = shards;
        unsigned connections = 0;
        uint64_t requests = 0;
        double rate = 0;
        for (unsigned shard = 0; shard < shards; ++shard) {
            ShardShare share = share_of(config, shard);
            EXPECT_GE(share.connections, 10 / shards);
            EXPECT_LE(share.connections, 10 / shards + 1);
            connections += share.connections;
            requests += share.requests;
            rate += share.rate;
        }
        EXPECT_EQ(connections, 10u);
        EXPECT_EQ(requests, 1001u);
        EXPECT_NEAR(rate, 500.0, 1e-9);
    }
}

// ---- The report ----

TEST(LoadgenReport, JsonHasTheKeysScriptsRelyOn) {
    Report report;
    report.options.mode = Mode::http;
    report.shards = 2;
    report.connections = 8;
    report.duration_s = 2;
    report.total.requests = 4;
    for (uint64_t ns : {1000, 2000, 3000, 4000}) {
        report.total.latency.record(ns);
    }
    report.total.statuses = {{200, 3}, {404, 1}};
    report.client_cpu = CpuTimes{0.5, 1.5};
    std::string json = format_json(report);
    for (const char* key : {"\"mode\": \"http\"",
                            "\"connections\": 8",
                            "\"shards\": 2",
                            "\"pipeline\": 1",
                            "\"duration_s\": 2.0",
                            "\"requests\": 4",
                            "\"requests_per_s\": 2.0",
                            "\"bytes_received_per_s\": ",
                            "\"bytes_sent_per_s\": ",
                            "\"errors\": 0",
                            "\"latency_us\": {\"p50\": 2.0",
                            "\"p90\": 4.0",
                            "\"p99\": 4.0",
                            "\"p99_9\": 4.0",
                            "\"max\": 4.0",
                            "\"mean\": 2.5",
                            "\"status\": {\"200\": 3, \"404\": 1}",
                            "\"client_cpu_s\": 2.0",
                            "\"server_cpu_s\": null",
                            "\"server_cpu_us_per_request\": null"}) {
        EXPECT_NE(json.find(key), std::string::npos) << key << " not in " << json;
    }
    EXPECT_EQ(json.front(), '{');
    EXPECT_EQ(json.back(), '}');
    EXPECT_EQ(std::count(json.begin(), json.end(), '{'), std::count(json.begin(), json.end(), '}'));
}

TEST(LoadgenReport, TextNamesEveryFigure) {
    Report report;
    report.options.mode = Mode::http;
    report.duration_s = 1;
    report.total.requests = 1;
    report.total.latency.record(1500);
    report.total.statuses = {{200, 1}};
    report.server_cpu = CpuTimes{0.001, 0.002};
    std::string text = format_text(report);
    for (const char* word : {"requests", "requests/s", "received", "sent", "p50", "p90", "p99",
                             "p99.9", "max", "errors", "200: 1", "server CPU"}) {
        EXPECT_NE(text.find(word), std::string::npos) << word << " not in " << text;
    }
}

}  // namespace
}  // namespace shardloop::loadgen
