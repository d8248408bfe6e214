// EventLoop: construction, running and stopping, closing, scheduling.

#include "runtime/event_loop.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <stdexcept>
#include <string>

#include "runtime/fd_watcher.hpp"
#include "runtime/log.hpp"
#include "runtime/object_pool.hpp"

namespace shardloop {

namespace {

thread_local EventLoop* t_running_loop = nullptr;

bool debug_from_environment() {
    const char* value = std::getenv("SHARDLOOP_DEBUG");
    return value != nullptr && value[0] != '\0' && std::string(value) != "0";
}

}  // namespace

namespace detail {
void set_running_loop(EventLoop* loop) noexcept { t_running_loop = loop; }
}  // namespace detail

EventLoop& get_running_loop() {
    if (t_running_loop == nullptr) {
        throw RuntimeError("no running event loop");
    }
    return *t_running_loop;
}

EventLoop* get_running_loop_or_null() noexcept { return t_running_loop; }

std::shared_ptr<EventLoop> new_event_loop(EventLoopOptions options) {
    return std::make_shared<EventLoop>(options);
}

EventLoop::EventLoop(EventLoopOptions options)
    : _reactor(detail::make_io_uring_reactor({.sq_entries = options.io_entries})),
      _inbox(std::make_shared<detail::LoopInbox>(_reactor)),
      _stacks(options.stack_size),
      _debug(options.debug.value_or(debug_from_environment())) {
    set_idle_poll(options.idle_poll);
}

EventLoop::~EventLoop() {
    if (_running) {
        log(LogLevel::error, "an EventLoop was destroyed while running; aborting");
        std::abort();
    }
    close();
    if (_executor_shutdown_thread.joinable()) {
        _executor_shutdown_thread.join();
    }
    drain_inbox();  // callbacks posted after close are dropped here, on the loop's thread
}

// ---- Running and stopping ----

void EventLoop::check_closed() const {
    if (_closed) {
        throw RuntimeError("Event loop is closed");
    }
}

void EventLoop::check_not_running() const {
    if (_running) {
        throw RuntimeError("This event loop is already running");
    }
    if (t_running_loop != nullptr) {
        throw RuntimeError("Cannot run the event loop while another loop is running");
    }
}

void EventLoop::check_thread() const {
    if (!_running) {
        return;  // asyncio checks only while the loop runs: before, any thread may set it up
    }
    if (std::this_thread::get_id() != _thread_id) {
        throw RuntimeError(
            "Non-thread-safe operation invoked on an event loop other than the current one");
    }
}

int64_t EventLoop::now_ns() const noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t EventLoop::seconds_to_ns(double seconds, const char* what) {
    if (std::isnan(seconds)) {
        throw std::invalid_argument(std::string(what) + " must not be NaN");
    }
    // Round up: a timer must never fire before the time it was given. But
    // a time that is a whole nanosecond (loop.time() + 10, say) comes out of
    // the multiplication a few units in the last place off, and rounding
    // that noise up would move the deadline a whole nanosecond: within a few
    // ulps of a whole nanosecond, it is that nanosecond.
    double scaled = seconds * 1e9;
    double nearest = std::nearbyint(scaled);
    double noise = 4 * (std::nextafter(std::fabs(scaled), HUGE_VAL) - std::fabs(scaled));
    double ns = std::fabs(scaled - nearest) <= noise ? nearest : std::ceil(scaled);
    if (ns >= 9.2e18) {
        return INT64_MAX;
    }
    if (ns <= -9.2e18) {
        return INT64_MIN;
    }
    return static_cast<int64_t>(ns);
}

int64_t EventLoop::deadline_after(double delay) const {
    int64_t delay_ns = seconds_to_ns(delay, "call_later: delay");
    int64_t now = now_ns();
    return delay_ns > 0 && now > INT64_MAX - delay_ns ? INT64_MAX : now + delay_ns;
}

void EventLoop::run_forever() {
    check_closed();
    check_not_running();
    _thread_id = std::this_thread::get_id();
    _running = true;
    detail::set_running_loop(this);
    _counters.run_started_ns.store(now_ns(), std::memory_order_relaxed);
    struct Reset {
        EventLoop* loop;
        ~Reset() {
            detail::LoopCounters& counters = loop->_counters;
            count(counters.finished_runs_ns,
                  loop->now_ns() - counters.run_started_ns.load(std::memory_order_relaxed));
            counters.run_started_ns.store(0, std::memory_order_relaxed);
            loop->_stopping = false;
            loop->_running = false;
            loop->_thread_id = {};
            detail::set_running_loop(nullptr);
        }
    } reset{this};
    while (true) {
        run_once();
        if (_stopping) {
            break;
        }
    }
}

void EventLoop::stop() { _stopping = true; }

// One iteration, the only place callbacks run (as in asyncio's _run_once).
// I/O comes first so that its completions, the timers that fell due while
// we waited and the callbacks other threads posted all join the same batch;
// the batch runs last, and whatever it schedules waits for the next
// iteration, so a callback that reschedules itself cannot starve I/O.
void EventLoop::run_once() {
    count(_counters.iterations, 1);
    if (_poller != nullptr) {
        _poller->flush();  // what the last batch sent to other shards
    }

    // 1. How long may we wait in the kernel? Not at all with callbacks
    //    ready or a stop pending; otherwise until the earliest timer.
    std::chrono::nanoseconds timeout{-1};
    std::optional<int64_t> deadline = _timers.next_deadline();
    if (!_ready.empty() || _stopping) {
        timeout = std::chrono::nanoseconds{0};
    } else if (deadline) {
        int64_t now = now_ns();
        timeout = std::chrono::nanoseconds{*deadline <= now ? 0 : *deadline - now};
    }

    // 2. Before blocking, spin a while if asked to: work that arrives then
    //    costs nobody a wake-up. Then tell other threads we sleep, so that
    //    their next call_soon_threadsafe wakes us (and only then costs a
    //    system call).
    if (timeout.count() != 0 && _idle_poll.count() > 0) {
        timeout = poll_before_sleeping(timeout);
    }
    bool sleeping = timeout.count() != 0 && _inbox->prepare_to_sleep();
    if (sleeping && _poller != nullptr && _poller->pending()) {
        _inbox->woke_up();
        sleeping = false;
    }
    if (timeout.count() != 0 && !sleeping) {
        timeout = std::chrono::nanoseconds{0};
    }

    // 3. One trip to the kernel: submit queued I/O, wait, dispatch completions.
    int64_t sleep_start = sleeping ? now_ns() : 0;
    int result = _reactor->wait(timeout);
    if (sleeping) {
        _inbox->woke_up();
        count(_counters.sleep_ns, now_ns() - sleep_start);
    }
    _counters.io_submissions.store(_reactor->submissions(), std::memory_order_relaxed);
    _counters.kernel_entries.store(_reactor->kernel_entries(), std::memory_order_relaxed);
    if (result > 0) {
        count(_counters.io_completions, static_cast<uint64_t>(result));
    }
    if (result == -EEXIST) {
        throw RuntimeError(
            "this event loop's io_uring belongs to the thread that first ran it "
            "(IORING_SETUP_SINGLE_ISSUER): run a loop on one thread only");
    }
    if (result < 0) {
        detail::throw_errno(result, "io_uring_enter");
    }

    // 4. Callbacks posted from other threads, messages from other shards.
    drain_inbox();
    if (_poller != nullptr) {
        _poller->poll();
    }

    // 5. Timers that are due (deadline <= now).
    if (_timers.size() != 0) {
        int64_t end = now_ns() + 1;
        while (detail::TimerState* timer = _timers.pop_due(end)) {
            _ready.push(timer);  // the heap's reference goes to the queue
        }
    }

    // 6. The batch that is ready now.
    run_ready_batch();
}

// Spins until work shows up (returns 0: do not block) or the idle-poll time
// or `timeout` runs out (returns what is left of `timeout`). Everything it
// watches is a load from memory other threads or the kernel write: the
// inbox, the cross-shard rings, the io_uring queues and flags.
std::chrono::nanoseconds EventLoop::poll_before_sleeping(std::chrono::nanoseconds timeout) {
    int64_t start = now_ns();
    int64_t end = start + _idle_poll.count();
    if (timeout.count() > 0) {
        end = std::min(end, start + timeout.count());
    }
    int64_t now = start;
    bool work = false;
    for (unsigned spins = 1;; ++spins) {
        if (!_inbox->empty() || _reactor->has_pending_events() ||
            (_poller != nullptr && _poller->pending())) {
            work = true;
            break;
        }
        // The clock costs more than a look at the queues: read it now and then.
        if (spins % 16 == 0) {
            now = now_ns();
            if (now >= end) {
                break;
            }
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (work) {
        now = now_ns();
    }
    count(_counters.idle_poll_ns, now - start);
    if (work) {
        return std::chrono::nanoseconds{0};
    }
    if (timeout.count() < 0) {
        return timeout;
    }
    return std::chrono::nanoseconds{std::max<int64_t>(0, start + timeout.count() - now)};
}

void EventLoop::set_idle_poll(std::chrono::nanoseconds duration) {
    if (duration.count() < 0) {
        throw std::invalid_argument("idle_poll must not be negative");
    }
    _idle_poll = duration;
}

void EventLoop::run_ready_batch() {
    if (_debug) {
        for (std::size_t left = _ready.size(); left > 0; --left) {
            detail::Runnable* runnable = _ready.pop();
            count(_counters.runnables_run, 1);
            if (detail::TaskBase::is_task(runnable)) {
                count(_counters.task_steps_run, 1);
            }
            run_timed(runnable);
        }
        return;
    }
    // The count is a member: tasks take runnables of the batch too (see
    // next_in_batch). It is zero again after the batch, even when a
    // runnable throws.
    struct EndBatch {
        std::size_t& left;
        ~EndBatch() { left = 0; }
    } end_batch{_batch_left};
    _batch_left = _ready.size();
    count(_counters.runnables_run, _batch_left);
    while (_batch_left != 0) {
        --_batch_left;
        detail::Runnable* runnable = _ready.pop();
        if (detail::TaskBase::is_task(runnable)) {
            count(_counters.task_steps_run, 1);
        }
        runnable->ops->run(runnable);
    }
}

// Debug mode: runs one callback and logs it when it took too long.
void EventLoop::run_timed(detail::Runnable* runnable) {
    std::string name;
    if (runnable->ops == &detail::HandleState::runnable_ops) {
        name = static_cast<detail::HandleState*>(runnable)->repr();
    } else if (detail::FdWatcher::is_watcher(runnable)) {
        name = static_cast<detail::FdWatcher*>(runnable)->repr();
    } else {
        name = static_cast<detail::TaskBase*>(runnable)->repr();
    }
    int64_t start = now_ns();
    runnable->ops->run(runnable);
    double seconds = static_cast<double>(now_ns() - start) * 1e-9;
    if (seconds >= slow_callback_duration) {
        char took[32];
        std::snprintf(took, sizeof took, "%.3f", seconds);
        log(LogLevel::warning, "Executing " + name + " took " + took + " seconds");
    }
}

LoopStats EventLoop::stats() const noexcept {
    auto read = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
    LoopStats stats;
    stats.iterations = read(_counters.iterations);
    stats.task_steps_run = read(_counters.task_steps_run);
    uint64_t runnables = read(_counters.runnables_run);
    stats.callbacks_run = runnables > stats.task_steps_run ? runnables - stats.task_steps_run : 0;
    stats.io_submissions = read(_counters.io_submissions);
    stats.io_completions = read(_counters.io_completions);
    stats.kernel_entries = read(_counters.kernel_entries);
    stats.wakeups = read(_inbox->wakes);
    stats.sleep_ns = read(_counters.sleep_ns);
    stats.idle_poll_ns = read(_counters.idle_poll_ns);
    stats.run_ns = read(_counters.finished_runs_ns);
    if (int64_t started = read(_counters.run_started_ns); started != 0) {
        stats.run_ns += now_ns() - started;
    }
    return stats;
}

void EventLoop::set_poller(detail::LoopPoller* poller) {
    if (_running) {
        throw RuntimeError("set_poller: the loop is running");
    }
    _poller = poller;
}

void EventLoop::drain_inbox() {
    while (detail::HandleState* handle = _inbox->pop()) {
        if (_closed) {
            handle->release();
        } else {
            _ready.push(handle);
        }
    }
}

void EventLoop::close() {
    if (_running) {
        throw RuntimeError("Cannot close a running event loop");
    }
    if (_closed) {
        return;
    }
    if (_debug) {
        log(LogLevel::debug, "Close event loop");
    }
    // Pending tasks go first, while the loop still works: the destructors
    // their unwinding runs may use it.
    drop_pending_tasks();
    close_fd_watchers();
    if (_net) {
        _net->close();  // transports still open are aborted; their operations cancelled
    }
    _closed = true;
    _inbox->closed.store(true, std::memory_order_release);
    _executor_shutdown_called = true;
    if (std::shared_ptr<Executor> executor = std::move(_default_executor)) {
        executor->shutdown(/*wait=*/false);
    }
    while (!_ready.empty()) {
        detail::Runnable* runnable = _ready.pop();
        runnable->ops->release(runnable);
    }
    _timers.clear();
    drain_inbox();
    // Operations still in flight (cancelled watchers) own buffers the
    // kernel may write to: let their completions arrive before the ring goes.
    int64_t give_up = now_ns() + 1'000'000'000;
    while (_reactor->in_flight() != 0 && now_ns() < give_up) {
        _reactor->wait(std::chrono::milliseconds(10));
    }
}

void EventLoop::drop_pending_tasks() {
    while (_tasks != nullptr) {
        detail::Ref<detail::FutureBase> keep(_tasks);
        _tasks->destroy_pending();
    }
}

// ---- Scheduling callbacks ----

Handle EventLoop::call_soon_callback(detail::Callback<void()> fn) {
    check_closed();
    if (_debug) {
        check_thread();
    }
    if (!_inbox->empty()) {
        // Callbacks other threads posted before this call go first, as in
        // asyncio, where call_soon_threadsafe appends to the same ready deque.
        drain_inbox();
    }
    auto* handle = new (detail::BlockCache<sizeof(detail::HandleState)>::allocate())
        detail::HandleState(this, std::move(fn), false);
    handle->add_ref();
    _ready.push(handle);
    return Handle(detail::Ref<detail::HandleState>::adopt(handle));
}

Handle EventLoop::call_soon_threadsafe_callback(detail::Callback<void()> fn) {
    if (_inbox->closed.load(std::memory_order_acquire)) {
        throw RuntimeError("Event loop is closed");
    }
    auto* handle = new (detail::BlockCache<sizeof(detail::HandleState)>::allocate())
        detail::HandleState(this, std::move(fn), true);
    handle->add_ref();
    _inbox->post(handle);
    return Handle(detail::Ref<detail::HandleState>::adopt(handle));
}

detail::PostedCallback EventLoop::prepare_posted_callback(detail::Callback<void()> fn) {
    check_closed();
    auto* handle = new (detail::BlockCache<sizeof(detail::HandleState)>::allocate())
        detail::HandleState(this, std::move(fn), true);
    return detail::PostedCallback(_inbox, handle);
}

TimerHandle EventLoop::call_at_ns(int64_t when_ns, detail::Callback<void()> fn) {
    check_closed();
    if (_debug) {
        check_thread();
    }
    auto* timer = new (detail::BlockCache<sizeof(detail::TimerState)>::allocate())
        detail::TimerState(this, when_ns, std::move(fn));
    _timers.push(timer);
    return TimerHandle(detail::Ref<detail::HandleState>::adopt(timer));
}

// ---- Tasks ----

void EventLoop::adopt_new_task(detail::TaskBase* task) {
    task->set_number(++_task_counter);
    // The loop keeps every live task alive, so a task's fiber never loses
    // its stack while it waits; the reference goes when the task finishes.
    task->FutureBase::add_ref();
    task->registry_prev = nullptr;
    task->registry_next = _tasks;
    if (_tasks != nullptr) {
        _tasks->registry_prev = task;
    }
    _tasks = task;
    ++_task_count;
    if (_task_factory) {
        try {
            _task_factory(*this, AnyTask(detail::Ref<detail::FutureBase>(task)));
        } catch (...) {
            unregister_task(task);  // create_task fails as a whole: no task is left behind
            throw;
        }
    }
    task->start();
}

std::vector<AnyTask> EventLoop::all_tasks() const {
    std::vector<AnyTask> tasks;
    for (detail::TaskBase* task = _tasks; task != nullptr; task = task->registry_next) {
        if (!task->done()) {
            tasks.emplace_back(detail::Ref<detail::FutureBase>(task));
        }
    }
    return tasks;
}

void EventLoop::unregister_task(detail::TaskBase* task) noexcept {
    bool registered = task->registry_prev != nullptr || _tasks == task;
    if (!registered) {
        return;
    }
    if (task->registry_prev != nullptr) {
        task->registry_prev->registry_next = task->registry_next;
    } else {
        _tasks = task->registry_next;
    }
    if (task->registry_next != nullptr) {
        task->registry_next->registry_prev = task->registry_prev;
    }
    task->registry_prev = nullptr;
    task->registry_next = nullptr;
    --_task_count;
    task->FutureBase::release();
}

void EventLoop::set_task_factory(TaskFactory factory) { _task_factory = std::move(factory); }

}  // namespace shardloop

namespace shardloop::detail {

LoopInbox::~LoopInbox() {
    // Posts that arrived after the loop was gone: dropped without running.
    while (HandleState* handle = pop()) {
        handle->release();
    }
}

}  // namespace shardloop::detail
