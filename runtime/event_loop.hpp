#pragma once

// EventLoop: asyncio's event loop for C++. One loop per thread, over its own
// io_uring. Methods are grouped under the headings of asyncio's "Event Loop"
// documentation, so that page doubles as a map of this header.
//
// Threading: a loop belongs to the thread that runs it. Every method except
// call_soon_threadsafe must be called on that thread; in debug mode a call
// from another thread while the loop runs throws RuntimeError.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/callback.hpp"
#include "runtime/exception_context.hpp"
#include "runtime/executor.hpp"
#include "runtime/future.hpp"
#include "runtime/handle.hpp"
#include "runtime/loop_inbox.hpp"
#include "runtime/loop_poller.hpp"
#include "runtime/loop_stats.hpp"
#include "runtime/reactor.hpp"
#include "runtime/ready_queue.hpp"
#include "runtime/stack_pool.hpp"
#include "runtime/task.hpp"
#include "runtime/timer_queue.hpp"

namespace shardloop {

// The I/O layer's types (net/); runtime/ only names them.
class BaseProtocol;
class BaseTransport;
class Transport;
class ReadTransport;
class WriteTransport;
class DatagramTransport;
class Server;
class SocketAddress;
struct AddrInfo;
struct AddrInfoHints;
struct NameInfo;
struct ConnectionOptions;
struct ServerOptions;
struct UnixConnectionOptions;
struct UnixServerOptions;
struct DatagramOptions;
template <class T>
struct Connection;

// Makes the protocol of each new connection.
using ProtocolFactory = std::function<std::shared_ptr<BaseProtocol>()>;

namespace detail {
class FdWatcher;
class AsyncGenBase;

// Per-loop state of a layer above the core (net/ keeps its buffer ring and
// transport registry here), destroyed with the loop before its reactor.
class LoopExtension {
public:
    virtual ~LoopExtension() = default;
    // At close(): the layer lets go of what it holds in the kernel.
    virtual void close() noexcept {}
    // add_reader / add_writer refuse an fd a transport owns (RuntimeError).
    virtual void ensure_fd_no_transport(int fd) const { (void)fd; }
};

// A function a task can run: callable with no arguments.
template <class F>
concept TaskFunction = std::is_invocable_v<std::add_lvalue_reference_t<std::decay_t<F>>>;
}  // namespace detail

// Called with every new task before its first step is scheduled. It may
// name it, instrument it, or start it (AnyTask::start / start_eagerly); a
// task the factory did not start is started as by default.
using TaskFactory = std::function<void(EventLoop&, AnyTask)>;

struct EventLoopOptions {
    unsigned io_entries = 256;  // io_uring submission queue size
    // Usable stack per task. AddressSanitizer builds need more room for
    // their redzones, hence the larger default there.
#if defined(__SANITIZE_ADDRESS__)
    std::size_t stack_size = std::size_t{512} * 1024;
#else
    std::size_t stack_size = std::size_t{128} * 1024;
#endif
    // Debug mode; unset: on when the environment has SHARDLOOP_DEBUG=1.
    std::optional<bool> debug{};
    // Idle polling (Seastar's idle-poll-time): before blocking in the kernel,
    // the loop spins this long watching its queues and its io_uring, so that
    // work arriving meanwhile (a cross-shard message, a completion, a
    // call_soon_threadsafe) costs no wake-up, which on a virtual machine
    // takes tens of microseconds. Burns the CPU while it spins: for loops
    // pinned to cores of their own. 0 (the default): block at once.
    std::chrono::nanoseconds idle_poll{0};
};

class EventLoop : public std::enable_shared_from_this<EventLoop> {
public:
    // Creates a loop with its own io_uring. Throws std::system_error naming
    // the cause when io_uring cannot be set up on this machine.
    explicit EventLoop(EventLoopOptions options = {});
    // Closes the loop if it is not closed yet (it must not be running).
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // ---- Running and stopping the loop ----

    // Runs the loop until `future` is done; returns its result or throws its
    // exception. Throws RuntimeError("Event loop stopped before Future
    // completed.") when stop() ends the run first, and std::invalid_argument
    // when the future belongs to another loop.
    template <class T>
    T run_until_complete(const Future<T>& future);

    // Wraps `fn` in a task (asyncio wraps a coroutine) and runs it to the end.
    template <detail::TaskFunction F>
    auto run_until_complete(F&& fn) -> std::invoke_result_t<std::decay_t<F>&>;

    // Runs until stop() is called. A stop() before the call makes it run one
    // iteration. Throws RuntimeError when the loop is closed, already running,
    // or another loop runs on this thread.
    void run_forever();

    // Stops the loop once the callbacks of the current iteration have run.
    void stop();

    bool is_running() const noexcept { return _running; }
    bool is_closed() const noexcept { return _closed; }

    // Closes the loop: pending callbacks and timers are dropped, pending
    // tasks reported and unwound, fd watchers removed, the default executor
    // shut down (its threads are joined, so close() waits for the jobs
    // already given to it; their results are dropped). Idempotent. Throws
    // RuntimeError while the loop runs.
    void close();

    // Closes every async generator that is still alive (aclose), as asyncio
    // does before closing a loop. The future completes when all have
    // finished; their errors go to the exception handler.
    Future<void> shutdown_asyncgens();

    // Shuts the default executor down, on a separate thread so the loop
    // keeps running; the future completes when its threads have joined, or
    // after `timeout` seconds (a warning is logged and the shutdown goes on
    // without waiting).
    Future<void> shutdown_default_executor(std::optional<double> timeout = std::nullopt);

    // ---- Scheduling callbacks ----

    // Runs fn() in the next iteration, after the callbacks already scheduled
    // (FIFO). Callbacks scheduled while a batch runs wait for the next one.
    // Throws RuntimeError("Event loop is closed") after close().
    template <class F>
    Handle call_soon(F&& fn) {
        return call_soon_callback(detail::Callback<void()>(std::forward<F>(fn)));
    }
    template <class F, class A, class... Rest>
    Handle call_soon(F&& fn, A&& arg, Rest&&... rest) {
        return call_soon(std::bind_front(std::forward<F>(fn), std::forward<A>(arg),
                                         std::forward<Rest>(rest)...));
    }

    // Like call_soon, from any thread. Wakes the loop if it sleeps; costs no
    // system call when it is awake.
    template <class F>
    Handle call_soon_threadsafe(F&& fn) {
        return call_soon_threadsafe_callback(detail::Callback<void()>(std::forward<F>(fn)));
    }

    // ---- Scheduling delayed callbacks ----

    // Runs fn() `delay` seconds from now (a negative delay means now).
    // Throws std::invalid_argument when delay is NaN.
    template <class F>
    TimerHandle call_later(double delay, F&& fn) {
        return call_at_ns(deadline_after(delay), detail::Callback<void()>(std::forward<F>(fn)));
    }
    template <class Rep, class Period, class F>
    TimerHandle call_later(std::chrono::duration<Rep, Period> delay, F&& fn) {
        return call_at_ns(deadline_after(std::chrono::duration<double>(delay).count()),
                          detail::Callback<void()>(std::forward<F>(fn)));
    }

    // Runs fn() at loop time `when` (see time()); never earlier.
    // Throws std::invalid_argument when `when` is NaN.
    template <class F>
    TimerHandle call_at(double when, F&& fn) {
        return call_at_ns(seconds_to_ns(when, "call_at: when"),
                          detail::Callback<void()>(std::forward<F>(fn)));
    }

    // The loop's clock: monotonic seconds, as asyncio's loop.time().
    double time() const noexcept { return static_cast<double>(now_ns()) * 1e-9; }

    // ---- Creating futures and tasks ----

    template <class T = void>
    Future<T> create_future() {
        check_closed();
        return Future<T>(detail::Ref<detail::FutureBase>::adopt(new detail::FutureState<T>(*this)));
    }

    // Runs fn() in a new task (on a fiber of its own), starting at the next
    // iteration. `name` defaults to "Task-N".
    template <class F>
    auto create_task(F&& fn, std::string name = {})
        -> Task<std::invoke_result_t<std::decay_t<F>&>> {
        using R = std::invoke_result_t<std::decay_t<F>&>;
        check_closed();
        if (_debug) {
            check_thread();
        }
        auto* state =
            new detail::TaskState<R, std::decay_t<F>>(*this, std::forward<F>(fn), std::move(name));
        Task<R> task(detail::Ref<detail::FutureBase>::adopt(state));
        adopt_new_task(state);
        return task;
    }

    // The loop's tasks that are not done yet (asyncio.all_tasks(loop)).
    std::vector<AnyTask> all_tasks() const;

    // Sets (or, with nullptr, resets) the task factory create_task uses.
    void set_task_factory(TaskFactory factory);
    const TaskFactory& get_task_factory() const noexcept { return _task_factory; }

    // ---- Watching file descriptors ----

    // Calls fn() once per iteration while `fd` is readable, through an
    // io_uring poll. A second add_reader on the same fd replaces (and
    // cancels) the first. Throws RuntimeError when the loop is closed,
    // std::invalid_argument for a negative fd.
    void add_reader(int fd, detail::Callback<void()> fn);
    // Stops watching; returns whether fd was watched. False after close().
    bool remove_reader(int fd);
    void add_writer(int fd, detail::Callback<void()> fn);
    bool remove_writer(int fd);

    // ---- DNS (net/dns.cpp) ----

    // The libc resolver, run on the default executor. A port may be a
    // number or a service name; an empty host means none (Python's None).
    // Fails with GaiError.
    Future<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port);
    Future<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port,
                                              AddrInfoHints hints);
    Future<NameInfo> getnameinfo(SocketAddress address, int flags = 0);

    // ---- Working with sockets directly (net/sock_ops.cpp) ----
    // Each waits for readiness through the reactor and does the call then,
    // as asyncio does: cancelling the future leaves the socket usable and
    // loses nothing it received. The socket must be non-blocking, and not
    // owned by a transport (RuntimeError names the transport).

    Future<std::string> sock_recv(int fd, std::size_t nbytes);
    // `buffer` must stay valid until the future is done.
    Future<std::size_t> sock_recv_into(int fd, std::span<char> buffer);
    Future<std::pair<std::string, SocketAddress>> sock_recvfrom(int fd, std::size_t bufsize);
    // Reads at most `nbytes` (0: the whole buffer) into `buffer`; throws
    // std::invalid_argument when nbytes is larger than the buffer.
    Future<std::pair<std::size_t, SocketAddress>> sock_recvfrom_into(int fd, std::span<char> buffer,
                                                                     std::size_t nbytes = 0);
    Future<void> sock_sendall(int fd, std::string data);
    Future<std::size_t> sock_sendto(int fd, std::string data, SocketAddress to);
    Future<void> sock_connect(int fd, SocketAddress to);
    // Resolves `host` first (a name needs getaddrinfo), as asyncio does.
    Future<void> sock_connect(int fd, std::string host, uint16_t port);
    // The accepted socket (non-blocking, close-on-exec) and its peer.
    Future<std::pair<int, SocketAddress>> sock_accept(int fd);
    // Sends `count` bytes of `file` from `offset` (all of it: nullopt) with
    // sendfile(2); with `fallback`, reads and sends where that is refused.
    Future<std::size_t> sock_sendfile(int fd, int file, uint64_t offset = 0,
                                      std::optional<std::size_t> count = std::nullopt,
                                      bool fallback = true);

    // ---- Streams, servers and endpoints (net/) ----

    Future<Connection<Transport>> create_connection(ProtocolFactory factory, std::string host,
                                                    uint16_t port);
    Future<Connection<Transport>> create_connection(ProtocolFactory factory, std::string host,
                                                    uint16_t port, ConnectionOptions options);
    // An empty host listens on every interface (IPv4 and IPv6).
    Future<std::shared_ptr<Server>> create_server(ProtocolFactory factory, std::string host,
                                                  uint16_t port);
    Future<std::shared_ptr<Server>> create_server(ProtocolFactory factory, std::string host,
                                                  uint16_t port, ServerOptions options);
    Future<std::shared_ptr<Server>> create_server(ProtocolFactory factory,
                                                  std::vector<std::string> hosts, uint16_t port,
                                                  ServerOptions options);
    Future<Connection<Transport>> create_unix_connection(ProtocolFactory factory, std::string path);
    Future<Connection<Transport>> create_unix_connection(ProtocolFactory factory, std::string path,
                                                         UnixConnectionOptions options);
    Future<std::shared_ptr<Server>> create_unix_server(ProtocolFactory factory, std::string path);
    Future<std::shared_ptr<Server>> create_unix_server(ProtocolFactory factory, std::string path,
                                                       UnixServerOptions options);
    // Wraps a connected stream socket (from accept() elsewhere) in a transport.
    Future<Connection<Transport>> connect_accepted_socket(ProtocolFactory factory, int sock);
    Future<Connection<DatagramTransport>> create_datagram_endpoint(ProtocolFactory factory,
                                                                   DatagramOptions options);
    Future<Connection<ReadTransport>> connect_read_pipe(ProtocolFactory factory, int fd);
    Future<Connection<WriteTransport>> connect_write_pipe(ProtocolFactory factory, int fd);
    // Sends a file over a stream transport: splice from the file without a
    // copy where it can; with `fallback`, reads and writes where it cannot.
    // transport.write() is refused while it runs.
    Future<std::size_t> sendfile(std::shared_ptr<Transport> transport, int file,
                                 uint64_t offset = 0,
                                 std::optional<std::size_t> count = std::nullopt,
                                 bool fallback = true);

    // ---- Executing code in thread pools ----

    // Runs fn() on `executor` (nullptr: the default executor, a
    // ThreadPoolExecutor created on first use) and returns a future of its
    // result. Cancelling the future before fn starts keeps it from running.
    // Throws RuntimeError when the default executor was shut down.
    template <class F>
    auto run_in_executor(Executor* executor, F&& fn)
        -> Future<std::invoke_result_t<std::decay_t<F>&>>;

    // Replaces the default executor used by run_in_executor(nullptr, ...).
    void set_default_executor(std::shared_ptr<Executor> executor);

    // ---- Error handling API ----

    void set_exception_handler(ExceptionHandler handler);
    const ExceptionHandler& get_exception_handler() const noexcept { return _exception_handler; }
    // Logs the context (message, exception, and every other key) as asyncio does.
    void default_exception_handler(const ExceptionContext& context);
    // Calls the handler (or the default one). A handler that throws is
    // reported through the default handler; nothing escapes.
    void call_exception_handler(const ExceptionContext& context) noexcept;

    // ---- Enabling debug mode ----

    bool get_debug() const noexcept { return _debug; }
    void set_debug(bool enabled) noexcept { _debug = enabled; }
    // Callbacks that run longer than this (seconds) are logged in debug mode.
    double slow_callback_duration = 0.1;

    // ---- Statistics (not in asyncio) ----

    // What the loop has done so far. Any thread; at most one iteration old.
    LoopStats stats() const noexcept;

    // ---- Idle polling (not in asyncio; see EventLoopOptions::idle_poll) ----

    std::chrono::nanoseconds idle_poll() const noexcept { return _idle_poll; }
    // Throws std::invalid_argument naming idle_poll when negative.
    void set_idle_poll(std::chrono::nanoseconds duration);

    // ---- Internals the layers below build on ----

    // Installs the poller the loop checks every iteration (the sharding
    // layer's cross-shard queues); nullptr removes it. Loop thread, while
    // the loop does not run; the poller must outlive its installation.
    void set_poller(detail::LoopPoller* poller);

    detail::Reactor& reactor() noexcept { return *_reactor; }
    // The door other threads wake this loop through. Any thread.
    const std::shared_ptr<detail::LoopInbox>& inbox() const noexcept { return _inbox; }
    detail::StackPool& stack_pool() noexcept { return _stacks; }
    // Queues a runnable for the next batch; the queue takes a reference.
    void schedule(detail::Runnable* runnable) { _ready.push(runnable); }
    // Task handoff: while the loop runs a batch of ready callbacks, a task
    // that suspends may switch straight into the next runnable of the batch
    // when that is a task (TaskBase::suspend), saving a trip through the
    // loop. Null when there is none, or outside a batch, or when handoff is
    // held off (debug mode times each callback; an eager task start must
    // come back to its caller).
    detail::Runnable* next_in_batch() const noexcept {
        return _batch_left != 0 ? _ready.front() : nullptr;
    }
    // Takes next_in_batch() off the queue; its reference goes with it.
    void take_next_in_batch() noexcept {
        --_batch_left;
        _ready.pop();
        count(_counters.task_steps_run, 1);
    }
    // Holds handoff off for its lifetime.
    class NoHandoffScope {
    public:
        explicit NoHandoffScope(EventLoop& loop) noexcept
            : _loop(loop), _saved(std::exchange(loop._batch_left, 0)) {}
        ~NoHandoffScope() { _loop._batch_left = _saved; }
        NoHandoffScope(const NoHandoffScope&) = delete;
        NoHandoffScope& operator=(const NoHandoffScope&) = delete;

    private:
        EventLoop& _loop;
        std::size_t _saved;
    };
    // A callback to be posted to this loop later from any thread.
    detail::PostedCallback prepare_posted_callback(detail::Callback<void()> fn);
    // Throws RuntimeError("Event loop is closed") after close().
    void check_closed() const;
    // In debug mode, throws RuntimeError when called off the loop's thread
    // while the loop runs.
    void check_thread() const;
    int64_t now_ns() const noexcept;
    // A scheduled timer was cancelled (TimerHandle::cancel).
    void note_timer_cancelled() noexcept { _timers.note_cancelled(); }
    std::size_t live_task_count() const noexcept { return _task_count; }
    void register_asyncgen(detail::AsyncGenBase* gen);
    void unregister_asyncgen(detail::AsyncGenBase* gen);
    void unregister_task(detail::TaskBase* task) noexcept;
    // The I/O layer's per-loop state, created on first use by that layer.
    std::unique_ptr<detail::LoopExtension>& net_extension() noexcept { return _net; }

private:
    // Single writer (this thread), readers anywhere: a relaxed load and store
    // cost what a plain increment does.
    template <class T>
    static void count(std::atomic<T>& counter, std::type_identity_t<T> amount) noexcept {
        counter.store(counter.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
    }
    Handle call_soon_callback(detail::Callback<void()> fn);
    Handle call_soon_threadsafe_callback(detail::Callback<void()> fn);
    TimerHandle call_at_ns(int64_t when_ns, detail::Callback<void()> fn);
    static int64_t seconds_to_ns(double seconds, const char* what);
    // now + delay (seconds) in nanoseconds, rounded up and saturating
    // instead of overflowing; throws std::invalid_argument for a NaN delay.
    int64_t deadline_after(double delay) const;
    void adopt_new_task(detail::TaskBase* task);
    Executor& default_executor();
    void run_once();
    std::chrono::nanoseconds poll_before_sleeping(std::chrono::nanoseconds timeout);
    void run_ready_batch();
    void run_timed(detail::Runnable* runnable);
    void drain_inbox();
    void set_fd_watcher(int fd, bool write, detail::Callback<void()> fn);
    bool remove_fd_watcher(int fd, bool write);
    void close_fd_watchers();
    void drop_pending_tasks();
    void check_not_running() const;

    std::shared_ptr<detail::Reactor> _reactor;
    std::unique_ptr<detail::LoopExtension> _net;  // after the reactor: destroyed before it
    std::shared_ptr<detail::LoopInbox> _inbox;
    detail::LoopPoller* _poller = nullptr;
    detail::ReadyQueue _ready;
    std::size_t _batch_left = 0;  // runnables of the running batch not yet taken
    detail::TimerQueue _timers;
    detail::StackPool _stacks;
    std::unordered_map<int, detail::FdWatcher*> _readers;
    std::unordered_map<int, detail::FdWatcher*> _writers;
    detail::TaskBase* _tasks = nullptr;  // registry of live tasks
    std::size_t _task_count = 0;
    uint64_t _task_counter = 0;
    std::vector<detail::AsyncGenBase*> _asyncgens;
    bool _asyncgens_shutdown_called = false;
    TaskFactory _task_factory;
    ExceptionHandler _exception_handler;
    std::shared_ptr<Executor> _default_executor;
    bool _executor_shutdown_called = false;
    std::thread _executor_shutdown_thread;
    std::thread::id _thread_id;  // set while running
    bool _running = false;
    bool _stopping = false;
    bool _closed = false;
    bool _debug = false;
    std::chrono::nanoseconds _idle_poll{0};
    detail::LoopCounters _counters;
};

// ---- Getting the event loop ----

// The loop running on this thread. Throws RuntimeError("no running event
// loop") when none runs.
EventLoop& get_running_loop();
// The loop running on this thread, or null.
EventLoop* get_running_loop_or_null() noexcept;
// A new loop (the policy's new_event_loop() is the one to override).
std::shared_ptr<EventLoop> new_event_loop(EventLoopOptions options = {});

namespace detail {
// Sets or clears the running loop of this thread (run_forever does it).
void set_running_loop(EventLoop* loop) noexcept;

template <class R>
struct ExecutorOutcome {
    std::atomic<bool> cancelled{false};
    bool ran = false;
    std::optional<StoredValue<R>> value;
    std::exception_ptr error;
};

// The future run_in_executor returns: cancelling it tells the job at once,
// so a job that has not started yet never runs.
template <class R>
class ExecutorFutureState final : public FutureBase {
public:
    ExecutorFutureState(EventLoop& loop, std::shared_ptr<ExecutorOutcome<R>> outcome) noexcept
        : FutureBase(loop, &value, false), _outcome(std::move(outcome)) {}

    bool cancel(std::string message) override {
        if (!cancel_future(std::move(message))) {
            return false;
        }
        _outcome->cancelled.store(true, std::memory_order_relaxed);
        return true;
    }

    std::optional<StoredValue<R>> value;

private:
    std::shared_ptr<ExecutorOutcome<R>> _outcome;
};
}  // namespace detail

// ---- Template definitions ----

template <class T>
T EventLoop::run_until_complete(const Future<T>& future) {
    check_closed();
    check_not_running();
    if (&future.get_loop() != this) {
        throw std::invalid_argument(
            "The future belongs to a different loop than the one specified as the loop "
            "argument");
    }
    uint64_t id = future.state()->add_done_callback([this](detail::FutureBase&) { stop(); });
    try {
        run_forever();
    } catch (...) {
        future.state()->remove_done_callback(id);
        throw;
    }
    future.state()->remove_done_callback(id);
    if (!future.done()) {
        throw RuntimeError("Event loop stopped before Future completed.");
    }
    return detail::take_result<T>(*future.state());
}

template <detail::TaskFunction F>
auto EventLoop::run_until_complete(F&& fn) -> std::invoke_result_t<std::decay_t<F>&> {
    check_closed();
    check_not_running();
    auto task = create_task(std::forward<F>(fn));
    return run_until_complete(
        static_cast<const Future<typename decltype(task)::value_type>&>(task));
}

template <class F>
auto EventLoop::run_in_executor(Executor* executor, F&& fn)
    -> Future<std::invoke_result_t<std::decay_t<F>&>> {
    using R = std::invoke_result_t<std::decay_t<F>&>;
    check_closed();
    check_thread();
    Executor& target = executor != nullptr ? *executor : default_executor();
    auto outcome = std::make_shared<detail::ExecutorOutcome<R>>();
    Future<R> future(
        detail::Ref<detail::FutureBase>::adopt(new detail::ExecutorFutureState<R>(*this, outcome)));
    // Built here, posted by the worker: the future is only touched on this thread.
    detail::PostedCallback deliver = prepare_posted_callback([future, outcome]() mutable {
        if (future.done()) {
            return;
        }
        if (!outcome->ran) {
            future.cancel();  // the executor dropped the job (shutdown with cancel_futures)
        } else if (outcome->error) {
            future.set_exception(outcome->error);
        } else if constexpr (std::is_void_v<R>) {
            future.set_result();
        } else {
            future.set_result(std::move(*outcome->value));
        }
    });
    target.submit([fn = std::forward<F>(fn), outcome, deliver = std::move(deliver)]() mutable {
        if (!outcome->cancelled.load(std::memory_order_relaxed)) {
            try {
                if constexpr (std::is_void_v<R>) {
                    fn();
                } else {
                    outcome->value.emplace(fn());
                }
            } catch (...) {
                outcome->error = std::current_exception();
            }
            outcome->ran = true;
        }
        deliver.post();
    });
    return future;
}

}  // namespace shardloop
