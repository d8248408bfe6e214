// ShardedPolicy: starting the shards, running them, stopping them.

#include "policy/sharded_policy.hpp"

#include <barrier>
#include <thread>

#include "runtime/log.hpp"

namespace shardloop {

namespace detail {

namespace {
thread_local ShardContext* t_shard = nullptr;
}  // namespace

ShardContext* current_shard() noexcept { return t_shard; }

ShardContext& current_shard_or_throw(const char* what) {
    if (t_shard == nullptr) {
        throw RuntimeError(std::string(what) + ": the calling thread is not a shard");
    }
    return *t_shard;
}

void report_sharded_leak() noexcept {
    try {
        log(LogLevel::error,
            "a Sharded<T> was destroyed while started (stop() it first): its instances are "
            "leaked, since they can only be destroyed on their own shards");
    } catch (...) {
        // nothing more can be done from a destructor
    }
}

void at_shard_exit(const void* owner, std::function<void()> cleanup) {
    current_shard_or_throw("at_shard_exit").at_exit.emplace_back(owner, std::move(cleanup));
}

void cancel_at_shard_exit(const void* owner) noexcept {
    if (ShardContext* here = current_shard()) {
        std::erase_if(here->at_exit, [owner](const auto& entry) { return entry.first == owner; });
    }
}

void ShardedPolicyBase::check_shard(unsigned shard, const char* what) const {
    if (shard >= shard_count()) {
        throw std::out_of_range(std::string(what) + ": shard " + std::to_string(shard) +
                                " does not exist (there are " + std::to_string(shard_count()) +
                                ")");
    }
}

}  // namespace detail

unsigned this_shard_id() { return detail::current_shard_or_throw("this_shard_id").id; }

int this_shard_cpu() { return detail::current_shard_or_throw("this_shard_cpu").cpu; }

unsigned shard_count() {
    return detail::current_shard_or_throw("shard_count").policy->shard_count();
}

bool on_shard() noexcept { return detail::current_shard() != nullptr; }

namespace {

std::vector<unsigned> choose_cpus(const ShardedPolicyOptions& options, const Topology& topology) {
    if (!options.cpus.empty()) {
        topology.validate_cpu_list(options.cpus);
        if (options.shards != 0 && options.shards != options.cpus.size()) {
            throw std::invalid_argument("ShardedPolicyOptions: shards (" +
                                        std::to_string(options.shards) +
                                        ") does not match the size of the cpus list (" +
                                        std::to_string(options.cpus.size()) + ")");
        }
        return options.cpus;
    }
    const std::vector<CpuCore>& cores = topology.cores();
    std::size_t count = options.shards != 0 ? options.shards : cores.size();
    std::vector<unsigned> cpus;
    for (std::size_t shard = 0; shard < count; ++shard) {
        cpus.push_back(cores[shard % cores.size()].cpu);
    }
    return cpus;
}

// The policy whose run() handles the stop signals (one at a time).
std::atomic<ShardedPolicy*> g_signal_target{nullptr};

extern "C" void stop_on_signal(int /*signal*/) {
    if (ShardedPolicy* policy = g_signal_target.load(std::memory_order_acquire)) {
        policy->stop();
    }
}

// Installs stop_on_signal for `signals` and puts the old handlers back.
class StopSignals {
public:
    StopSignals(ShardedPolicy& policy, const std::vector<int>& signals) {
        if (signals.empty()) {
            return;
        }
        ShardedPolicy* expected = nullptr;
        if (!g_signal_target.compare_exchange_strong(expected, &policy)) {
            throw RuntimeError(
                "ShardedPolicy::run: another policy's run() already handles stop signals");
        }
        struct sigaction action {};
        action.sa_handler = stop_on_signal;
        sigemptyset(&action.sa_mask);
        for (int signal : signals) {
            struct sigaction old {};
            if (::sigaction(signal, &action, &old) != 0) {
                int error = errno;
                restore();
                detail::throw_errno(
                    -error, "ShardedPolicy::run: sigaction(" + std::to_string(signal) + ")");
            }
            _saved.push_back({signal, old});
        }
        _owner = true;
    }
    ~StopSignals() { restore(); }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

private:
    void restore() noexcept {
        for (auto& [signal, old] : _saved) {
            ::sigaction(signal, &old, nullptr);
        }
        _saved.clear();
        if (_owner) {
            g_signal_target.store(nullptr, std::memory_order_release);
            _owner = false;
        }
    }

    std::vector<std::pair<int, struct sigaction>> _saved;
    bool _owner = false;
};

// Puts the previous event-loop policy back when run() ends.
class InstalledPolicy {
public:
    explicit InstalledPolicy(std::shared_ptr<AbstractEventLoopPolicy> policy)
        : _previous(get_event_loop_policy()) {
        set_event_loop_policy(std::move(policy));
    }
    ~InstalledPolicy() { set_event_loop_policy(std::move(_previous)); }
    InstalledPolicy(const InstalledPolicy&) = delete;
    InstalledPolicy& operator=(const InstalledPolicy&) = delete;

private:
    std::shared_ptr<AbstractEventLoopPolicy> _previous;
};

// After the stop, as asyncio.run() does before it closes its loop: cancels
// the tasks still pending and lets them unwind (their finally blocks, their
// destructors), but never waits more than a second for a task that ignores
// its cancellation; close() then destroys what is left. Messages still
// flow meanwhile, so a task may await another shard while it winds down.
void cancel_remaining_tasks(EventLoop& loop) {
    std::vector<AnyTask> tasks = loop.all_tasks();
    if (tasks.empty()) {
        return;
    }
    std::size_t left = tasks.size();
    for (AnyTask& task : tasks) {
        task.cancel();
        task.state()->add_done_callback([&left, &loop](detail::FutureBase&) {
            if (--left == 0) {
                loop.stop();
            }
        });
    }
    TimerHandle deadline = loop.call_later(1.0, [&loop] { loop.stop(); });
    loop.run_forever();
    deadline.cancel();
}

// What services left on the shard goes, newest first, on the shard's own
// thread. A cleanup that throws is reported and the others still run.
void run_exit_cleanups(detail::ShardContext& context) {
    while (!context.at_exit.empty()) {
        std::function<void()> cleanup = std::move(context.at_exit.back().second);
        context.at_exit.pop_back();
        try {
            cleanup();
        } catch (...) {
            ExceptionContext report;
            report.message = "Exception in a shard's exit cleanup";
            report.exception = std::current_exception();
            context.loop->call_exception_handler(report);
        }
    }
}

}  // namespace

// One run(): the mesh, the rendezvous points, the first error.
struct ShardedPolicy::Run {
    explicit Run(unsigned shards, std::size_t queue_capacity)
        : mesh(shards, queue_capacity),
          started(shards),
          stopped(shards, Closing{&mesh}),
          inboxes(shards) {}

    // Any thread, async-signal-safe.
    void request_stop() noexcept {
        mesh.stop_requested.store(true, std::memory_order_seq_cst);
        for (auto& inbox : inboxes) {
            if (detail::LoopInbox* door = inbox.load(std::memory_order_acquire)) {
                door->wake_if_sleeping();
            }
        }
    }

    void fail(std::exception_ptr error) noexcept {
        {
            std::lock_guard lock(mutex);
            if (!first_error) {
                first_error = std::move(error);
            }
        }
        failed.store(true, std::memory_order_relaxed);
        request_stop();
    }

    // Runs once every shard has stopped: from then on sends are dropped.
    struct Closing {
        detail::ShardMesh* mesh;
        void operator()() noexcept { mesh->closing.store(true, std::memory_order_relaxed); }
    };

    detail::ShardMesh mesh;
    std::barrier<> started;
    std::barrier<Closing> stopped;
    // Each shard's wake-up door while its loop exists. stop() reads the raw
    // pointer (no reference count in a signal handler); a shard withdraws
    // its door and waits for the stop() calls in progress to leave before
    // its loop goes (see wait_for_stoppers).
    std::vector<std::atomic<detail::LoopInbox*>> inboxes;
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::exception_ptr first_error;
};

ShardedPolicy::ShardedPolicy(ShardedPolicyOptions options)
    : _options(std::move(options)), _topology(Topology::discover()) {
    if (_options.idle_poll.count() < 0) {
        throw std::invalid_argument("ShardedPolicyOptions: idle_poll must not be negative");
    }
    if (_options.queue_capacity == 0) {
        throw std::invalid_argument("ShardedPolicyOptions: queue_capacity must be at least 1");
    }
    _cpus = choose_cpus(_options, _topology);
    _final_stats.resize(_cpus.size());
    for (unsigned shard = 0; shard < _cpus.size(); ++shard) {
        _final_stats[shard].shard = shard;
        _final_stats[shard].cpu = _options.pin ? static_cast<int>(_cpus[shard]) : -1;
    }
}

ShardedPolicy::~ShardedPolicy() = default;

void ShardedPolicy::run(std::function<void()> fn) {
    if (!fn) {
        throw std::invalid_argument("ShardedPolicy::run: fn is empty");
    }
    auto run = std::make_unique<Run>(shard_count(), _options.queue_capacity);
    Run* expected = nullptr;
    if (!_active.compare_exchange_strong(expected, run.get())) {
        throw RuntimeError("ShardedPolicy::run: this policy is already running");
    }
    struct Retire {
        ShardedPolicy& policy;
        ~Retire() {
            policy._active.store(nullptr, std::memory_order_seq_cst);
            policy.wait_for_stoppers();
        }
    } retire{*this};
    {
        std::lock_guard lock(_mutex);
        _run_loops.assign(shard_count(), nullptr);
    }
    InstalledPolicy installed(shared_from_this());
    StopSignals signals(*this, _options.stop_signals);

    std::vector<std::thread> threads;
    threads.reserve(shard_count());
    for (unsigned shard = 0; shard < shard_count(); ++shard) {
        try {
            threads.emplace_back([this, &run = *run, shard, &fn] { run_shard(run, shard, fn); });
        } catch (...) {
            // No thread for this shard or the ones after it: stand in for
            // them at both rendezvous points, so the others do not wait.
            run->fail(std::current_exception());
            for (unsigned missing = shard; missing < shard_count(); ++missing) {
                run->started.arrive_and_drop();
                run->stopped.arrive_and_drop();
            }
            break;
        }
    }
    for (std::thread& thread : threads) {
        thread.join();
    }
    if (run->first_error) {
        std::rethrow_exception(run->first_error);
    }
}

void ShardedPolicy::run_shard(Run& run, unsigned id, const std::function<void()>& fn) {
    detail::ShardPort& port = run.mesh.port(id);
    detail::ShardContext context{.policy = this, .id = id, .port = &port};
    std::shared_ptr<EventLoop> loop;
    try {
        if (_options.pin) {
            _topology.pin_this_thread_to_cpu(_cpus[id]);
            context.cpu = static_cast<int>(_cpus[id]);
        }
        EventLoopOptions loop_options;
        loop_options.io_entries = _options.io_entries;
        loop_options.stack_size = _options.stack_size;
        loop_options.idle_poll = _options.idle_poll;
        loop = std::make_shared<EventLoop>(loop_options);
        context.loop = loop.get();
        port.attach(*loop);
        loop->set_poller(&port);
        {
            std::lock_guard lock(_mutex);
            _run_loops[id] = loop;
        }
        run.inboxes[id].store(loop->inbox().get(), std::memory_order_release);
    } catch (...) {
        run.fail(std::current_exception());
    }
    // Every loop exists before any shard runs: a message may go anywhere.
    run.started.arrive_and_wait();

    detail::t_shard = &context;
    if (!run.failed.load(std::memory_order_relaxed)) {
        try {
            Task<void> main = loop->create_task([&run, &fn] {
                try {
                    fn();
                } catch (const CancelledError&) {
                    // the stop cancelled it (see cancel_remaining_tasks)
                } catch (const detail::FiberUnwind&) {
                    throw;  // the loop is closing: the fiber must unwind
                } catch (...) {
                    run.fail(std::current_exception());
                }
            });
            loop->run_forever();
            cancel_remaining_tasks(*loop);
            run_exit_cleanups(context);
        } catch (...) {
            run.fail(std::current_exception());
        }
    }
    run.stopped.arrive_and_wait();

    // Every loop has stopped and nothing can be sent any more: drop what
    // was in flight (on the shard that received it), then close the loop
    // on its own thread (its io_uring belongs to it).
    port.discard_all();
    if (loop) {
        try {
            loop->close();
        } catch (...) {
            run.fail(std::current_exception());
        }
        ShardStats final_stats = stats(id);
        loop->set_poller(nullptr);
        std::lock_guard lock(_mutex);
        _final_stats[id] = final_stats;
        _run_loops[id] = nullptr;
    }
    detail::ReplySlotBase::free_all(context.replies);
    detail::t_shard = nullptr;
    run.inboxes[id].store(nullptr, std::memory_order_seq_cst);
    wait_for_stoppers();
    loop.reset();
}

// stop() counts itself in _stoppers before it reads what it uses: once a
// pointer has been withdrawn (stored null, seq_cst) and the count seen at
// zero, no stop() can still hold it. A signal handler interrupting this
// wait on the same thread runs to its end first, so it cannot deadlock.
void ShardedPolicy::wait_for_stoppers() const noexcept {
    while (_stoppers.load(std::memory_order_seq_cst) != 0) {
        std::this_thread::yield();
    }
}

void ShardedPolicy::stop() noexcept {
    _stoppers.fetch_add(1, std::memory_order_seq_cst);
    if (Run* run = _active.load(std::memory_order_seq_cst)) {
        run->request_stop();
    }
    _stoppers.fetch_sub(1, std::memory_order_seq_cst);
}

std::shared_ptr<EventLoop> ShardedPolicy::loop_of(unsigned shard) const {
    check_shard(shard, "loop_of");
    std::lock_guard lock(_mutex);
    return shard < _run_loops.size() ? _run_loops[shard] : nullptr;
}

std::shared_ptr<EventLoop> ShardedPolicy::loop_or_throw(unsigned shard, const char* what) const {
    std::shared_ptr<EventLoop> loop = loop_of(shard);
    if (!loop) {
        throw RuntimeError(std::string(what) + ": the shards are not running");
    }
    // A caller racing with the end of run() holds the loop alive, and its
    // call_soon_threadsafe throws "Event loop is closed".
    return loop;
}

ShardStats ShardedPolicy::stats(unsigned shard) const {
    check_shard(shard, "stats");
    std::lock_guard lock(_mutex);
    std::shared_ptr<EventLoop> loop = shard < _run_loops.size() ? _run_loops[shard] : nullptr;
    Run* run = _active.load(std::memory_order_acquire);
    if (!loop || run == nullptr) {
        return _final_stats[shard];
    }
    ShardStats stats;
    static_cast<LoopStats&>(stats) = loop->stats();
    stats.shard = shard;
    stats.cpu = _options.pin ? static_cast<int>(_cpus[shard]) : -1;
    stats.messages_sent = run->mesh.port(shard).messages_sent();
    stats.messages_received = run->mesh.port(shard).messages_received();
    return stats;
}

std::vector<ShardStats> ShardedPolicy::stats() const {
    std::vector<ShardStats> all;
    for (unsigned shard = 0; shard < shard_count(); ++shard) {
        all.push_back(stats(shard));
    }
    return all;
}

std::shared_ptr<EventLoop> ShardedPolicy::get_event_loop() {
    detail::ShardContext* here = detail::current_shard();
    if (here != nullptr && here->policy == this) {
        return here->loop->shared_from_this();
    }
    return _elsewhere.get_event_loop();
}

void ShardedPolicy::set_event_loop(std::shared_ptr<EventLoop> loop) {
    detail::ShardContext* here = detail::current_shard();
    if (here != nullptr && here->policy == this) {
        throw RuntimeError(
            "set_event_loop: a shard's loop is the shard's own; it cannot be replaced");
    }
    _elsewhere.set_event_loop(std::move(loop));
}

std::shared_ptr<EventLoop> ShardedPolicy::new_event_loop() { return _elsewhere.new_event_loop(); }

}  // namespace shardloop
