#pragma once

// ShardedPolicy: the Seastar part of shardloop. It spawns one thread per
// shard, pins each to its own core, gives each an EventLoop over its own
// io_uring, and installs itself as the event-loop policy, so that
// get_event_loop() on a shard returns that shard's loop. Shards share
// nothing; they talk by messages: submit_to(shard, fn) runs fn on another
// shard and brings its result (or exception) back as a Future on the
// caller's shard.
//
//     auto policy = std::make_shared<ShardedPolicy>();
//     policy->run([&] {
//         // runs as a task on every shard
//         int peer = (this_shard_id() + 1) % shard_count();
//         int got = await(submit_to(peer, [] { return 42; }));
//         ...
//         if (this_shard_id() == 0) policy->stop();
//     });

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/cross_shard.hpp"
#include "policy/event_loop_policy.hpp"
#include "policy/shard_mesh.hpp"
#include "policy/topology.hpp"
#include "runtime/event_loop.hpp"

namespace shardloop {

struct ShardedPolicyOptions {
    // How many shards; 0: one per core of the process's cpuset. More shards
    // than cores share cores (round-robin): useful for tests, not for speed.
    unsigned shards = 0;
    // Explicit CPUs (logical numbers, as in taskset), one shard per entry,
    // in order; they must be allowed to the process. Overrides the default
    // one-per-core placement; `shards`, when set, must match its size.
    std::vector<unsigned> cpus{};
    // Pin each shard's thread to its CPU.
    bool pin = true;
    // Usable stack per task, and the io_uring submission queue size.
    std::size_t stack_size = EventLoopOptions{}.stack_size;
    unsigned io_entries = EventLoopOptions{}.io_entries;
    // Messages each ordered pair of shards can have in flight before the
    // sender's overflow list takes the rest (rounded up to a power of two).
    std::size_t queue_capacity = 1024;
    // How long an idle shard spins before it sleeps (EventLoopOptions::
    // idle_poll): a message or completion that arrives meanwhile is picked
    // up in a fraction of a microsecond instead of after a wake-up (tens of
    // microseconds on a virtual machine), at the cost of a busy CPU while it
    // spins. 0 (the default): sleep at once. Seastar spins 200 µs by default.
    std::chrono::nanoseconds idle_poll{0};
    // Signals that stop every shard while run() runs (SIGINT, SIGTERM...);
    // their previous handlers come back when run() returns.
    std::vector<int> stop_signals{};
};

// A shard's statistics: its loop's, plus the cross-shard traffic.
struct ShardStats : LoopStats {
    unsigned shard = 0;
    int cpu = -1;  // the CPU the shard is pinned to; -1 when not pinned
    uint64_t messages_sent = 0;
    uint64_t messages_received = 0;
};

namespace detail {
// Which shard the calling thread is, while it runs one.
struct ShardContext {
    class ShardedPolicyBase* policy = nullptr;
    unsigned id = 0;
    int cpu = -1;  // the CPU the shard is pinned to; -1 when not pinned
    ShardPort* port = nullptr;
    EventLoop* loop = nullptr;
    ReplySlotBase* replies = nullptr;  // futures of this shard waiting for another
    // Run when the shard stops, newest first, on its thread, before its loop
    // closes: what services (Sharded<T>) still hold on this shard is
    // destroyed there. Keyed by the owner, so that it can withdraw its entry.
    std::vector<std::pair<const void*, std::function<void()>>> at_exit{};
};
// The calling thread's shard, or null.
ShardContext* current_shard() noexcept;
// Logs that a Sharded<T> was destroyed while its instances lived.
void report_sharded_leak() noexcept;
// On a shard: registers (or withdraws) `owner`'s cleanup for the shard's stop.
void at_shard_exit(const void* owner, std::function<void()> cleanup);
void cancel_at_shard_exit(const void* owner) noexcept;
ShardContext& current_shard_or_throw(const char* what);

// The non-template part of ShardedPolicy, which the free functions below
// reach through the calling thread's ShardContext.
class ShardedPolicyBase : public AbstractEventLoopPolicy {
public:
    virtual unsigned shard_count() const noexcept = 0;
    // The loop of `shard` while run() runs (null otherwise). Any thread.
    virtual std::shared_ptr<EventLoop> loop_of(unsigned shard) const = 0;
    // Throws std::out_of_range naming `what` and the shard when `shard` is
    // not below shard_count().
    void check_shard(unsigned shard, const char* what) const;
};
}  // namespace detail

class ShardedPolicy final : public detail::ShardedPolicyBase,
                            public std::enable_shared_from_this<ShardedPolicy> {
public:
    // Finds the machine's topology (hwloc) and checks the options: throws
    // std::invalid_argument naming a bad option (an explicit CPU list with a
    // CPU the process may not use or a duplicate, a shard count that does
    // not match it, queue_capacity 0), std::system_error when hwloc fails.
    explicit ShardedPolicy(ShardedPolicyOptions options = {});
    ~ShardedPolicy() override;
    ShardedPolicy(const ShardedPolicy&) = delete;
    ShardedPolicy& operator=(const ShardedPolicy&) = delete;

    // Runs fn as a task on every shard, then keeps the shards' loops
    // running until stop(). Returns once every loop has stopped, every
    // shard's loop is closed and every thread joined. Installs this policy
    // for the duration (the previous one comes back after). Throws the
    // first exception that escaped fn on a shard (which stops every shard),
    // or the error that kept a shard from starting (pinning, io_uring
    // setup). Messages still in flight at the stop are dropped, and the
    // futures waiting for them are destroyed with their loops. One run at a
    // time; the policy can run again after run() returns. The policy must
    // be owned by a std::shared_ptr.
    void run(std::function<void()> fn);

    // Stops every shard: each loop stops at its next iteration (a sleeping
    // one is woken). Any thread, and async-signal-safe (a signal handler may
    // call it). Does nothing when run() is not running.
    void stop() noexcept;

    unsigned shard_count() const noexcept override { return static_cast<unsigned>(_cpus.size()); }
    // The CPU each shard is pinned to (the one it would be, when pin is off).
    const std::vector<unsigned>& cpus() const noexcept { return _cpus; }
    const ShardedPolicyOptions& options() const noexcept { return _options; }

    // Runs fn() on `shard` and returns a future, on the calling shard, for
    // its result: fn's value, or the result of the future fn returns (fn
    // may start a task there), or the exception fn threw. Call it on a
    // shard, or on any thread that runs an event loop (the reply then
    // comes through that loop's call_soon_threadsafe). fn is moved to the
    // target shard and destroyed there. Cancelling the returned future does
    // not stop fn. Throws std::out_of_range for a bad shard and RuntimeError
    // when run() is not running or the calling thread runs no loop.
    template <class F>
    auto submit_to(unsigned shard, F&& fn) -> Future<detail::SubmitResult<F>>;

    // Runs fn() on `shard` with no reply; an exception it throws goes to
    // that loop's exception handler. Messages from one sender run in the
    // order sent. From a shard it never blocks (see ShardPort::send);
    // from any other thread it is the target's call_soon_threadsafe.
    template <class F>
    void send_to(unsigned shard, F&& fn);

    // Runs a copy of fn() on every shard (this one included); the future
    // completes when all have, with the first exception if any threw.
    template <class F>
    Future<void> invoke_on_all(F fn);

    // Queues fn() on `shard`'s loop (its call_soon_threadsafe). Any thread,
    // while run() runs; throws RuntimeError otherwise.
    template <class F>
    Handle call_soon_threadsafe(unsigned shard, F&& fn) {
        return loop_or_throw(shard, "call_soon_threadsafe")
            ->call_soon_threadsafe(std::forward<F>(fn));
    }

    // The statistics of `shard` (its final ones once run() has returned).
    // Any thread.
    ShardStats stats(unsigned shard) const;
    std::vector<ShardStats> stats() const;

    // AbstractEventLoopPolicy: on a shard, that shard's loop (set and new
    // are refused there); elsewhere, the default policy's behaviour.
    std::shared_ptr<EventLoop> get_event_loop() override;
    void set_event_loop(std::shared_ptr<EventLoop> loop) override;
    std::shared_ptr<EventLoop> new_event_loop() override;

    std::shared_ptr<EventLoop> loop_of(unsigned shard) const override;

private:
    struct Run;

    void run_shard(Run& run, unsigned id, const std::function<void()>& fn);
    void wait_for_stoppers() const noexcept;
    // The loop of `shard`; throws RuntimeError when run() is not running.
    std::shared_ptr<EventLoop> loop_or_throw(unsigned shard, const char* what) const;
    template <class R, class F>
    Future<R> submit_from_loop_thread(unsigned shard, F&& fn);

    ShardedPolicyOptions _options;
    std::vector<unsigned> _cpus;
    Topology _topology;
    DefaultEventLoopPolicy _elsewhere;

    // The run in progress, for stop(): it counts itself in `_stoppers` while
    // it reads `_active` and the shards' wake-up doors, and neither the Run
    // nor a door goes while a stop() is inside (a plain atomic protocol: a
    // signal handler can take part).
    std::atomic<Run*> _active{nullptr};
    std::atomic<int> _stoppers{0};
    mutable std::mutex _mutex;  // guards _run_loops and _final_stats
    std::vector<std::shared_ptr<EventLoop>> _run_loops;
    std::vector<ShardStats> _final_stats;
};

// The running policy's services, for code on a shard (they throw
// RuntimeError on a thread that is not a shard).
unsigned this_shard_id();
unsigned shard_count();
// The CPU the calling shard is pinned to, or -1 when the policy does not pin.
int this_shard_cpu();
// Whether the calling thread is a shard.
bool on_shard() noexcept;

template <class F>
auto submit_to(unsigned shard, F&& fn) -> Future<detail::SubmitResult<F>> {
    auto& policy = static_cast<ShardedPolicy&>(*detail::current_shard_or_throw("submit_to").policy);
    return policy.submit_to(shard, std::forward<F>(fn));
}

template <class F>
Future<void> invoke_on_all(F fn) {
    auto& policy =
        static_cast<ShardedPolicy&>(*detail::current_shard_or_throw("invoke_on_all").policy);
    return policy.invoke_on_all(std::move(fn));
}

// ---- Template definitions ----

template <class F>
auto ShardedPolicy::submit_to(unsigned shard, F&& fn) -> Future<detail::SubmitResult<F>> {
    using R = detail::SubmitResult<F>;
    check_shard(shard, "submit_to");
    detail::ShardContext* here = detail::current_shard();
    if (here == nullptr || here->policy != this) {
        return submit_from_loop_thread<R>(shard, std::forward<F>(fn));
    }
    EventLoop& loop = *here->loop;
    Future<R> future = loop.create_future<R>();
    if (shard == here->id) {
        loop.call_soon([fn = std::forward<F>(fn), future]() mutable {
            detail::run_for_reply(
                fn, [future](detail::Outcome<R>&& outcome) mutable { outcome.deliver(future); });
        });
        return future;
    }
    auto* slot = new detail::ReplySlot<R>(future);
    slot->link(here->replies);
    unsigned origin = here->id;
    here->port->send(shard, [fn = std::forward<F>(fn), slot, origin]() mutable {
        detail::run_for_reply(fn, [slot, origin](detail::Outcome<R>&& outcome) {
            detail::current_shard()->port->send(origin,
                                                [slot, outcome = std::move(outcome)]() mutable {
                                                    slot->complete(std::move(outcome));
                                                });
        });
    });
    return future;
}

template <class F>
void ShardedPolicy::send_to(unsigned shard, F&& fn) {
    check_shard(shard, "send_to");
    detail::ShardContext* here = detail::current_shard();
    if (here == nullptr || here->policy != this) {
        loop_or_throw(shard, "send_to")->call_soon_threadsafe(std::forward<F>(fn));
    } else if (shard == here->id) {
        here->loop->call_soon(std::forward<F>(fn));
    } else {
        here->port->send(shard, std::forward<F>(fn));
    }
}

// From a thread that is not one of this policy's shards but runs a loop:
// the request goes through the target's call_soon_threadsafe, the reply
// through a callback posted back to the caller's loop.
template <class R, class F>
Future<R> ShardedPolicy::submit_from_loop_thread(unsigned shard, F&& fn) {
    EventLoop* origin = get_running_loop_or_null();
    if (origin == nullptr) {
        throw RuntimeError(
            "submit_to: the calling thread is not a shard and runs no event loop to "
            "receive the result on");
    }
    std::shared_ptr<EventLoop> target = loop_or_throw(shard, "submit_to");
    Future<R> future = origin->create_future<R>();
    auto outcome = std::make_shared<detail::Outcome<R>>();
    detail::PostedCallback deliver = origin->prepare_posted_callback([future, outcome]() mutable {
        if (!outcome->value && !outcome->error) {
            future.cancel("submit_to: the target shard stopped before running the function");
            return;
        }
        outcome->deliver(future);
    });
    target->call_soon_threadsafe(
        [fn = std::forward<F>(fn), outcome, deliver = std::move(deliver)]() mutable {
            detail::run_for_reply(
                fn, [outcome, deliver = std::move(deliver)](detail::Outcome<R>&& result) mutable {
                    *outcome = std::move(result);
                    deliver.post();
                });
        });
    return future;
}

template <class F>
Future<void> ShardedPolicy::invoke_on_all(F fn) {
    detail::ShardContext* here = detail::current_shard();
    EventLoop* loop = here != nullptr ? here->loop : get_running_loop_or_null();
    if (loop == nullptr) {
        throw RuntimeError("invoke_on_all: the calling thread runs no event loop");
    }
    struct Gather {
        unsigned left;
        std::exception_ptr first_error;
        Future<void> all;
    };
    auto gather =
        std::make_shared<Gather>(Gather{shard_count(), nullptr, loop->create_future<void>()});
    for (unsigned shard = 0; shard < shard_count(); ++shard) {
        using R = detail::SubmitResult<F>;
        submit_to(shard, fn).add_done_callback([gather](Future<R> done) {
            std::exception_ptr error = detail::error_of(done);
            if (error && !gather->first_error) {
                gather->first_error = error;
            }
            if (--gather->left == 0 && !gather->all.done()) {
                if (gather->first_error) {
                    gather->all.set_exception(gather->first_error);
                } else {
                    gather->all.set_result();
                }
            }
        });
    }
    return gather->all;
}

}  // namespace shardloop
