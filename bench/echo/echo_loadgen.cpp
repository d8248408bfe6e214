// Closed-loop load generator for echo servers, on liburing. Each connection
// sends one message of --size bytes, waits for the whole echo, records the
// round trip, and sends the next. This file holds the command line, the
// connections, the measured window and the report; loadgen_worker.cpp is
// the ring loop that each of the --threads threads runs.
//
//   echo_loadgen --port N [--host 127.0.0.1] [--connections 10] [--size 64]
//                [--duration 5] [--warmup 1] [--threads 1] [--server-pid PID]
//   echo_loadgen --idle --port N [--connections 10000]
//
// Run mode prints "measuring" and "done" on stderr when the measured window
// opens and closes, then one JSON object on stdout. At exactly those two
// instants it samples CPU time (cpu_times.hpp): its own, the machine's, and
// with --server-pid the server's, so the CPU figures cover the same window
// as the request count.
//
// Idle mode opens the connections, sends nothing, prints "ready" on stdout,
// and holds them until stdin reaches end-of-file or SIGINT/SIGTERM arrives.
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "cpu_times.hpp"
#include "echo_common.hpp"
#include "loadgen_worker.hpp"

namespace {

using echo_bench::die;
using echo_bench::now_ns;

constexpr const char* program_name = "echo_loadgen";

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    int connections = 10;
    uint32_t size = 64;
    double duration = 5;
    double warmup = 1;
    int threads = 1;
    int server_pid = 0;
    bool idle = false;
};

void sleep_until_ns(uint64_t deadline) {
    timespec ts{static_cast<time_t>(deadline / 1'000'000'000u),
                static_cast<long>(deadline % 1'000'000'000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
}

int connect_one(const sockaddr_in& addr) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die(program_name, "socket", errno);
    }
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        die(program_name, "connect", errno);
    }
    int on = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
        die(program_name, "setsockopt(TCP_NODELAY)", errno);
    }
    return fd;
}

std::vector<int> connect_all(const Options& options) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(options.port));
    if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
        echo_bench::usage_error(program_name, "--host: not an IPv4 address: " + options.host);
    }
    std::vector<int> fds;
    fds.reserve(static_cast<size_t>(options.connections));
    for (int i = 0; i < options.connections; ++i) {
        fds.push_back(connect_one(addr));
    }
    return fds;
}

// CPU time at one edge of the measured window.
struct CpuSample {
    echo_bench::CpuTimes server;
    echo_bench::CpuTimes client;
    double machine_busy_us = 0;
};

CpuSample sample_cpu(const Options& options) {
    CpuSample sample;
    if (options.server_pid != 0) {
        sample.server = echo_bench::process_cpu_times(program_name, options.server_pid);
    }
    sample.client = echo_bench::own_cpu_times(program_name);
    sample.machine_busy_us = echo_bench::machine_busy_us(program_name);
    return sample;
}

void print_json(const Options& options, const echo_bench::WorkerResults& total,
                const CpuSample& before, const CpuSample& after) {
    const echo_bench::LatencyHistogram& h = total.latency;
    double requests = static_cast<double>(h.count());
    uint64_t errors = total.lost_connections + total.mismatches + total.stalled;
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    std::printf(
        "{\"connections\": %d, \"size\": %u, \"threads\": %d, \"requests\": %llu, "
        "\"seconds\": %.3f, \"requests_per_s\": %.1f, \"bytes_per_s\": %.1f, "
        "\"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, "
        "\"max_us\": %.2f, \"errors\": %llu, \"lost_connections\": %llu, "
        "\"mismatches\": %llu, \"stalled\": %llu",
        options.connections, options.size, options.threads,
        static_cast<unsigned long long>(h.count()), options.duration, requests / options.duration,
        requests * options.size / options.duration, us(h.percentile(0.50)), us(h.percentile(0.90)),
        us(h.percentile(0.99)), us(h.percentile(0.999)), us(h.max()),
        static_cast<unsigned long long>(errors),
        static_cast<unsigned long long>(total.lost_connections),
        static_cast<unsigned long long>(total.mismatches),
        static_cast<unsigned long long>(total.stalled));
    echo_bench::CpuTimes client = after.client - before.client;
    std::printf(", \"client_user_us\": %.0f, \"client_sys_us\": %.0f, \"machine_busy_us\": %.0f",
                client.user_us, client.sys_us, after.machine_busy_us - before.machine_busy_us);
    if (options.server_pid != 0) {
        echo_bench::CpuTimes server = after.server - before.server;
        std::printf(", \"server_pid\": %d, \"server_user_us\": %.0f, \"server_sys_us\": %.0f",
                    options.server_pid, server.user_us, server.sys_us);
    }
    std::printf("}\n");
}

int run_load(const Options& options) {
    std::vector<int> fds = connect_all(options);
    // Connection i goes to thread i % threads; each thread owns its sockets.
    std::vector<std::vector<int>> shares(static_cast<size_t>(options.threads));
    for (size_t i = 0; i < fds.size(); ++i) {
        shares[i % shares.size()].push_back(fds[i]);
    }
    uint64_t window_start = now_ns() + static_cast<uint64_t>(options.warmup * 1e9);
    uint64_t window_end = window_start + static_cast<uint64_t>(options.duration * 1e9);
    echo_bench::WorkerConfig config{options.size, window_start, window_end};
    std::vector<echo_bench::WorkerResults> results(shares.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < shares.size(); ++i) {
        threads.emplace_back([&config, &results, &shares, i] {
            results[i] = echo_bench::run_worker(config, shares[i]);
        });
    }

    sleep_until_ns(window_start);
    CpuSample before = sample_cpu(options);
    std::fprintf(stderr, "measuring\n");
    sleep_until_ns(window_end);
    CpuSample after = sample_cpu(options);
    std::fprintf(stderr, "done\n");
    for (std::thread& t : threads) {
        t.join();
    }

    echo_bench::WorkerResults total;
    for (const echo_bench::WorkerResults& r : results) {
        total.latency.merge(r.latency);
        total.lost_connections += r.lost_connections;
        total.mismatches += r.mismatches;
        total.stalled += r.stalled;
    }
    print_json(options, total, before, after);
    return 0;
}

// Holds idle connections until stdin closes or SIGINT/SIGTERM; the driver
// keeps a pipe to our stdin open for as long as it measures.
int run_idle(const Options& options) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
        die(program_name, "sigprocmask", errno);
    }
    int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);
    if (signal_fd < 0) {
        die(program_name, "signalfd", errno);
    }
    std::vector<int> fds = connect_all(options);
    std::printf("ready\n");
    std::fflush(stdout);
    pollfd watch[2] = {{STDIN_FILENO, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    for (;;) {
        if (poll(watch, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            die(program_name, "poll", errno);
        }
        if (watch[1].revents != 0) {
            break;
        }
        if (watch[0].revents != 0) {
            char scratch[256];
            ssize_t n = read(STDIN_FILENO, scratch, sizeof scratch);
            if (n <= 0) {
                break;  // end of file (or a broken stdin): stop holding
            }
        }
    }
    for (int fd : fds) {
        ::close(fd);
    }
    ::close(signal_fd);
    return 0;
}

double parse_seconds(std::string_view flag, const char* text) {
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= 0) || value > 86400) {
        echo_bench::usage_error(program_name,
                                std::string(flag) + ": expected seconds, got '" + text + "'");
    }
    return value;
}

Options parse_options(int argc, char** argv) {
    using echo_bench::parse_number;
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        if (flag == "--idle") {
            o.idle = true;
            continue;
        }
        if (i + 1 >= argc) {
            echo_bench::usage_error(program_name,
                                    std::string(flag) + " needs a value (or is unknown)");
        }
        const char* value = argv[++i];
        if (flag == "--host") {
            o.host = value;
        } else if (flag == "--port") {
            o.port = static_cast<int>(parse_number(program_name, flag, value, 1, 65535));
        } else if (flag == "--connections") {
            o.connections = static_cast<int>(parse_number(program_name, flag, value, 1, 1'000'000));
        } else if (flag == "--size") {
            o.size = static_cast<uint32_t>(parse_number(program_name, flag, value, 1, 64 << 20));
        } else if (flag == "--duration") {
            o.duration = parse_seconds(flag, value);
        } else if (flag == "--warmup") {
            o.warmup = parse_seconds(flag, value);
        } else if (flag == "--threads") {
            o.threads = static_cast<int>(parse_number(program_name, flag, value, 1, 256));
        } else if (flag == "--server-pid") {
            o.server_pid = static_cast<int>(parse_number(program_name, flag, value, 1, 1 << 30));
        } else {
            echo_bench::usage_error(program_name, "unknown flag '" + std::string(flag) + "'");
        }
    }
    if (o.port == 0) {
        echo_bench::usage_error(program_name, "--port is required");
    }
    if (o.duration <= 0) {
        echo_bench::usage_error(program_name, "--duration must be positive");
    }
    o.threads = std::min(o.threads, o.connections);
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse_options(argc, argv);
    // One descriptor per connection, plus the rings and stdio.
    echo_bench::raise_fd_limit(program_name, static_cast<rlim_t>(options.connections) + 64);
    return options.idle ? run_idle(options) : run_load(options);
}
