#include "apps/loadgen/report.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace shardloop::loadgen {

namespace {

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));

std::string printf_string(const char* format, ...) {
    char buffer[512];
    va_list args;
    va_start(args, format);
    int n = std::vsnprintf(buffer, sizeof buffer, format, args);
    va_end(args);
    return std::string(buffer, n < 0 ? 0 : std::min<std::size_t>(n, sizeof buffer - 1));
}

// 1234567 -> "1,234,567".
std::string grouped(uint64_t value) {
    std::string digits = std::to_string(value);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0) {
            out += ',';
        }
        out += digits[i];
    }
    return out;
}

double per_second(double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; }

double us(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// A finite JSON number (JSON has no NaN or infinity).
std::string number(double value, int decimals) {
    if (!std::isfinite(value)) {
        return "null";
    }
    return printf_string("%.*f", decimals, value);
}

std::string bytes_rate(double bytes_per_s) {
    if (bytes_per_s >= 1e9) {
        return printf_string("%.2f GB/s", bytes_per_s / 1e9);
    }
    if (bytes_per_s >= 1e6) {
        return printf_string("%.2f MB/s", bytes_per_s / 1e6);
    }
    return printf_string("%.2f kB/s", bytes_per_s / 1e3);
}

std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += printf_string("\\u%04x", c);
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace

std::string format_text(const Report& r) {
    const Options& o = r.options;
    const ShardResult& t = r.total;
    const LatencyHistogram& h = t.latency;
    auto requests = static_cast<double>(t.requests);
    std::string target = o.mode == Mode::echo ? printf_string("echo, %zu-byte messages", o.size)
                                              : "http, GET " + o.path;
    std::string out = printf_string(
        "%s to %s:%u: %u connections on %u shard%s, pipeline %u, %s\n", target.c_str(),
        o.host.c_str(), o.port, r.connections, r.shards, r.shards == 1 ? "" : "s", o.pipeline,
        o.rate > 0 ? printf_string("open loop at %.0f req/s", o.rate).c_str() : "closed loop");
    if (r.interrupted) {
        out += "  (interrupted: the figures cover the window up to the interruption)\n";
    }
    out += printf_string("  requests      %s in %.3f s = %.1f requests/s\n",
                         grouped(t.requests).c_str(), r.duration_s,
                         per_second(requests, r.duration_s));
    out += printf_string(
        "  transfer      received %s, sent %s\n",
        bytes_rate(per_second(static_cast<double>(t.bytes_received), r.duration_s)).c_str(),
        bytes_rate(per_second(static_cast<double>(t.bytes_sent), r.duration_s)).c_str());
    out += printf_string(
        "  latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
        us(h.percentile(0.50)), us(h.percentile(0.90)), us(h.percentile(0.99)),
        us(h.percentile(0.999)), us(h.max()), h.mean() / 1000.0);
    out += printf_string("  errors        %s", grouped(t.error_total()).c_str());
    if (t.error_total() != 0) {
        std::string kinds;
        for (std::size_t i = 0; i < error_kind_count; ++i) {
            if (t.errors[i] != 0) {
                kinds += (kinds.empty() ? "" : ", ") + std::string(error_kind_names[i]) + " " +
                         grouped(t.errors[i]);
            }
        }
        out += " (" + kinds + ")";
    }
    out += printf_string("; reconnects %s; lost requests %s\n", grouped(t.reconnects).c_str(),
                         grouped(t.lost_requests).c_str());
    if (o.mode == Mode::http) {
        std::string statuses;
        for (const auto& [status, count] : t.statuses) {
            statuses += printf_string("%s%u: %s", statuses.empty() ? "" : ", ", status,
                                      grouped(count).c_str());
        }
        out += "  status        " + (statuses.empty() ? std::string("none") : statuses) + "\n";
    }
    auto cpu_line = [&](const char* who, const std::optional<CpuTimes>& cpu) {
        if (!cpu) {
            return;
        }
        out += printf_string("  %s CPU    %.2f s (user %.2f, system %.2f)", who, cpu->total_s(),
                             cpu->user_s, cpu->system_s);
        if (t.requests != 0) {
            out += printf_string(" = %.2f us/request", cpu->total_s() * 1e6 / requests);
        }
        out += "\n";
    };
    cpu_line("client", r.client_cpu);
    cpu_line("server", r.server_cpu);
    return out;
}

std::string format_json(const Report& r) {
    const Options& o = r.options;
    const ShardResult& t = r.total;
    const LatencyHistogram& h = t.latency;
    auto requests = static_cast<double>(t.requests);
    std::string out = "{";
    out += "\"mode\": " + json_string(o.mode == Mode::echo ? "echo" : "http");
    out += ", \"host\": " + json_string(o.host);
    out += printf_string(", \"port\": %u", o.port);
    out += printf_string(", \"connections\": %u, \"shards\": %u, \"pipeline\": %u", r.connections,
                         r.shards, o.pipeline);
    out += ", \"rate\": " + (o.rate > 0 ? number(o.rate, 3) : std::string("null"));
    if (o.mode == Mode::echo) {
        out += printf_string(", \"size\": %zu", o.size);
    } else {
        out += ", \"path\": " + json_string(o.path);
    }
    out += ", \"duration_s\": " + number(r.duration_s, 6);
    out += printf_string(", \"requests\": %" PRIu64, t.requests);
    out += ", \"requests_per_s\": " + number(per_second(requests, r.duration_s), 1);
    out += printf_string(", \"bytes_received\": %" PRIu64 ", \"bytes_sent\": %" PRIu64,
                         t.bytes_received, t.bytes_sent);
    out += ", \"bytes_received_per_s\": " +
           number(per_second(static_cast<double>(t.bytes_received), r.duration_s), 1);
    out += ", \"bytes_sent_per_s\": " +
           number(per_second(static_cast<double>(t.bytes_sent), r.duration_s), 1);
    out += printf_string(", \"errors\": %" PRIu64 ", \"error_kinds\": {", t.error_total());
    for (std::size_t i = 0; i < error_kind_count; ++i) {
        out += printf_string("%s\"%s\": %" PRIu64, i == 0 ? "" : ", ", error_kind_names[i],
                             t.errors[i]);
    }
    out += printf_string("}, \"reconnects\": %" PRIu64 ", \"lost_requests\": %" PRIu64,
                         t.reconnects, t.lost_requests);
    out += ", \"latency_us\": {\"p50\": " + number(us(h.percentile(0.50)), 3) +
           ", \"p90\": " + number(us(h.percentile(0.90)), 3) +
           ", \"p99\": " + number(us(h.percentile(0.99)), 3) +
           ", \"p99_9\": " + number(us(h.percentile(0.999)), 3) +
           ", \"max\": " + number(us(h.max()), 3) + ", \"mean\": " + number(h.mean() / 1000.0, 3) +
           ", \"min\": " + number(us(h.min()), 3) + "}";
    out += ", \"status\": {";
    bool first = true;
    for (const auto& [status, count] : t.statuses) {
        out += printf_string("%s\"%u\": %" PRIu64, first ? "" : ", ", status, count);
        first = false;
    }
    out += "}";
    auto cpu = [&](const char* who, const std::optional<CpuTimes>& times) {
        if (!times) {
            out += printf_string(
                ", \"%s_cpu_s\": null, \"%s_user_s\": null, \"%s_system_s\": null, "
                "\"%s_cpu_us_per_request\": null",
                who, who, who, who);
            return;
        }
        out += printf_string(", \"%s_cpu_s\": %s, \"%s_user_s\": %s, \"%s_system_s\": %s", who,
                             number(times->total_s(), 6).c_str(), who,
                             number(times->user_s, 6).c_str(), who,
                             number(times->system_s, 6).c_str());
        out += printf_string(
            ", \"%s_cpu_us_per_request\": %s", who,
            t.requests != 0 ? number(times->total_s() * 1e6 / requests, 4).c_str() : "null");
    };
    cpu("client", r.client_cpu);
    cpu("server", r.server_cpu);
    out += printf_string(", \"interrupted\": %s}", r.interrupted ? "true" : "false");
    return out;
}

std::string format_progress(double elapsed_s, double requests_per_s, uint64_t errors, bool warmup) {
    return printf_string("[%6.1fs] %s req/s, %s errors%s", elapsed_s,
                         grouped(static_cast<uint64_t>(std::llround(requests_per_s))).c_str(),
                         grouped(errors).c_str(), warmup ? " (warm-up)" : "");
}

}  // namespace shardloop::loadgen
