#include "apps/loadgen/run.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "apps/loadgen/worker.hpp"
#include "shardloop.hpp"

namespace shardloop::loadgen {

namespace {

constexpr int64_t ns_per_s = 1'000'000'000;

double seconds(int64_t ns) { return static_cast<double>(ns) * 1e-9; }

std::string describe(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

// SIGINT and SIGTERM, while a run lasts, write a byte into a socket pair
// whose other end shard 0 reads through a read-pipe transport: the
// self-pipe asyncio's add_signal_handler uses (a send is all a signal
// handler may safely do, and MSG_NOSIGNAL keeps a late one from raising
// SIGPIPE). The handlers reset themselves: a second signal kills the
// program the default way.
int interrupt_sender = -1;

extern "C" void on_interrupt(int) {
    char byte = 1;
    ssize_t sent = ::send(interrupt_sender, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)sent;
}

class InterruptHandlers {
public:
    InterruptHandlers() {
        int ends[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, ends) != 0) {
            throw std::system_error(errno, std::generic_category(), "socketpair");
        }
        _receiver = ends[0];
        interrupt_sender = ends[1];
        struct sigaction action {};
        action.sa_handler = &on_interrupt;
        action.sa_flags = SA_RESETHAND | SA_RESTART;
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, &_old_int);
        sigaction(SIGTERM, &action, &_old_term);
    }
    ~InterruptHandlers() {
        sigaction(SIGINT, &_old_int, nullptr);
        sigaction(SIGTERM, &_old_term, nullptr);
        ::close(interrupt_sender);
        interrupt_sender = -1;
        if (_receiver >= 0) {
            ::close(_receiver);
        }
    }
    InterruptHandlers(const InterruptHandlers&) = delete;
    InterruptHandlers& operator=(const InterruptHandlers&) = delete;

    // The end to read, for a transport that then owns it.
    int take_receiver() noexcept { return std::exchange(_receiver, -1); }

private:
    int _receiver = -1;
    struct sigaction _old_int {};
    struct sigaction _old_term {};
};

// Any byte from the signal handler is an interruption.
class InterruptListener final : public Protocol {
public:
    explicit InterruptListener(std::function<void()> on_interrupt)
        : _on_interrupt(std::move(on_interrupt)) {}
    void data_received(std::string_view) override { _on_interrupt(); }

private:
    std::function<void()> _on_interrupt;
};

// The run, as seen from shard 0: a task that drives every shard's Worker
// through messages.
class Driver {
public:
    Driver(const Options& options, std::shared_ptr<const RunConfig> config, ShardedPolicy& policy,
           Sharded<Worker>& workers, InterruptHandlers& interrupts, Report& report)
        : _options(options),
          _config(std::move(config)),
          _policy(policy),
          _workers(workers),
          _interrupts(interrupts),
          _report(report) {}

    // The task body; ends by stopping the policy. Throws what ended the run
    // early (ConnectError...), after cleaning up.
    void run() {
        EventLoop& loop = get_running_loop();
        std::exception_ptr error;
        Connection<ReadTransport> signals;
        try {
            signals = await(loop.connect_read_pipe(
                [this] { return std::make_shared<InterruptListener>([this] { interrupt(); }); },
                _interrupts.take_receiver()));
            measure(loop);
        } catch (...) {
            error = std::current_exception();
        }
        if (_started) {
            try {
                await(_workers.stop());
            } catch (...) {
                error = error ? error : std::current_exception();
            }
        }
        if (signals.transport) {
            signals.transport->close();
        }
        _policy.stop();
        if (error) {
            std::rethrow_exception(error);
        }
    }

private:
    void interrupt() {
        if (_interrupted) {
            return;
        }
        _interrupted = true;
        _report.interrupted = true;
        if (_started) {
            (void)_workers.invoke_on_all([](Worker& worker) { worker.finish(); });
        }
    }

    void measure(EventLoop& loop) {
        await(_workers.start(_config));
        _started = true;
        if (_interrupted) {
            return;
        }
        try {
            await(_workers.invoke_on_all([](Worker& worker) { return worker.connect(); }));
        } catch (...) {
            if (_interrupted) {
                return;
            }
            throw ConnectError("cannot connect to " + _options.host + ":" +
                               std::to_string(_options.port) + ": " +
                               describe(std::current_exception()));
        }

        Window window;
        window.start_ns = monotonic_ns();
        window.measure_ns = window.start_ns + static_cast<int64_t>(_options.warmup * 1e9);
        if (_options.duration > 0) {
            window.end_ns = window.measure_ns + static_cast<int64_t>(_options.duration * 1e9);
        }
        TimerHandle before_timer;
        TimerHandle after_timer;
        if (window.measure_ns == window.start_ns) {
            sample_before();
        } else {
            before_timer = loop.call_at(seconds(window.measure_ns), [this] { sample_before(); });
        }
        if (window.end_ns != Window{}.end_ns) {
            after_timer = loop.call_at(seconds(window.end_ns), [this] { sample_after(); });
        }
        await(_workers.invoke_on_all([window](Worker& worker) { worker.start(window); }));
        std::optional<Task<void>> progress;
        if (!_options.quiet) {
            progress = loop.create_task([this, window] { show_progress(window); });
        }

        await(_workers.invoke_on_all([](Worker& worker) { return worker.done(); }));
        int64_t finished_ns = monotonic_ns();
        before_timer.cancel();
        after_timer.cancel();
        sample_after();
        if (progress) {
            progress->cancel();
            try {
                await(*progress);
            } catch (...) {
                // Cancelled, as asked.
            }
            if (_progress_shown && isatty(STDERR_FILENO)) {
                std::fputc('\n', stderr);
            }
        }

        _report.total =
            await(_workers.map_reduce([](Worker& worker) { return worker.result(); }, ShardResult{},
                                      [](ShardResult total, const ShardResult& part) {
                                          total.merge(part);
                                          return total;
                                      }));
        int64_t end_ns = window.end_ns;
        if (_interrupted) {
            end_ns = std::min(end_ns, finished_ns);
        } else if (end_ns == Window{}.end_ns) {
            // A request count: the window closes with its last response.
            end_ns = _report.total.requests != 0 ? _report.total.last_response_ns : finished_ns;
        }
        _report.duration_s = seconds(std::max<int64_t>(0, end_ns - window.measure_ns));
        if (_client_before && _client_after) {
            _report.client_cpu = *_client_after - *_client_before;
        }
        if (_server_before && _server_after) {
            _report.server_cpu = *_server_after - *_server_before;
        }
    }

    void sample_before() {
        _client_before = own_cpu_times();
        if (!_options.server_pids.empty()) {
            _server_before = process_cpu_times(_options.server_pids);
        }
    }

    // Once, at the end of the window; nothing before it was sampled when
    // an interruption came during the warm-up.
    void sample_after() {
        if (!_client_before || _client_after) {
            return;
        }
        _client_after = own_cpu_times();
        if (!_options.server_pids.empty()) {
            std::string error;
            _server_after = process_cpu_times(_options.server_pids, &error);
            if (!_server_after) {
                std::fprintf(stderr, "shardloop_loadgen: --server-pid: %s\n", error.c_str());
            }
        }
    }

    // A line on stderr each second (overwritten in place on a terminal).
    void show_progress(const Window& window) {
        bool terminal = isatty(STDERR_FILENO) != 0;
        uint64_t last_responses = 0;
        int64_t last_ns = window.start_ns;
        for (int64_t tick = window.start_ns + ns_per_s;; tick += ns_per_s) {
            await(sleep(seconds(tick - monotonic_ns())));
            Progress now = await(_workers.map_reduce(
                [](Worker& worker) { return worker.progress(); }, Progress{},
                [](Progress total, Progress part) {
                    return Progress{total.responses + part.responses, total.errors + part.errors};
                }));
            int64_t now_ns = monotonic_ns();
            double rate = static_cast<double>(now.responses - last_responses) /
                          seconds(std::max<int64_t>(1, now_ns - last_ns));
            last_responses = now.responses;
            last_ns = now_ns;
            std::string line = format_progress(seconds(now_ns - window.start_ns), rate, now.errors,
                                               now_ns < window.measure_ns);
            std::fprintf(stderr, terminal ? "\r%s\x1b[K" : "%s\n", line.c_str());
            std::fflush(stderr);
            _progress_shown = true;
        }
    }

    const Options& _options;
    std::shared_ptr<const RunConfig> _config;
    ShardedPolicy& _policy;
    Sharded<Worker>& _workers;
    InterruptHandlers& _interrupts;
    Report& _report;
    bool _started = false;  // the workers exist
    bool _interrupted = false;
    bool _progress_shown = false;
    std::optional<CpuTimes> _client_before;
    std::optional<CpuTimes> _client_after;
    std::optional<CpuTimes> _server_before;
    std::optional<CpuTimes> _server_after;
};

}  // namespace

Report run_load(const Options& options, std::shared_ptr<const RunConfig> config,
                std::vector<unsigned> cpus) {
    Report report;
    report.options = options;
    report.shards = config->shards;
    report.connections = config->connections;
    auto policy = std::make_shared<ShardedPolicy>(
        ShardedPolicyOptions{.shards = config->shards, .cpus = std::move(cpus)});
    InterruptHandlers interrupts;
    Sharded<Worker> workers;
    Driver driver(options, config, *policy, workers, interrupts, report);
    policy->run([&] {
        if (this_shard_id() == 0) {
            driver.run();
        }
    });
    return report;
}

}  // namespace shardloop::loadgen
