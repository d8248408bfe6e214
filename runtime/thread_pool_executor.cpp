#include "runtime/thread_pool_executor.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/errors.hpp"

namespace shardloop {
namespace detail {

// Everything the workers touch. The workers co-own it, so a pool destroyed
// from one of its own workers can detach that worker without leaving it
// running on freed memory.
struct ThreadPoolState {
    std::size_t max_workers = 0;
    std::string thread_name_prefix;

    std::mutex mutex;
    std::condition_variable work_available;  // workers wait here for a job or shutdown
    std::condition_variable joins_finished;  // shutdown(wait) callers wait for other joiners
    std::deque<Executor::Job> queue;
    // Started workers not yet claimed by a shutdown(wait) caller for joining.
    // Claiming moves a thread out, so each worker is joined by exactly one
    // caller.
    std::vector<std::thread> threads;
    // Workers that are inside shutdown(wait) themselves, joining others. No
    // worker claims one of these: two workers shutting the pool down at once
    // would otherwise join each other forever. Outside callers may claim
    // them, since nothing joins an outside thread.
    std::vector<std::thread::id> joining_workers;
    std::size_t joins_in_progress = 0;
    std::size_t started = 0;
    std::size_t idle = 0;  // workers blocked on work_available
    bool shutdown = false;
};

namespace {

// The pool the current thread works for, if any: lets shutdown() and the
// destructor recognise a job acting on its own pool.
thread_local const ThreadPoolState* t_owning_pool = nullptr;

constexpr const char* default_prefix = "shardloop-pool";

// Linux keeps at most 15 bytes of a thread name. The prefix is shortened
// rather than the whole name so that the index, which tells the workers
// apart in top and gdb, survives: "shardloop-pool_0" becomes
// "shardloop-poo_0".
std::string worker_name(const std::string& prefix, std::size_t index) {
    constexpr std::size_t limit = 15;
    const std::string suffix = "_" + std::to_string(index);
    const std::size_t room = suffix.size() < limit ? limit - suffix.size() : 0;
    return (prefix.substr(0, room) + suffix).substr(0, limit);
}

// `state` refers to the std::thread's own copy of the shared_ptr, which
// keeps the state alive until this function has returned.
void run_worker(const std::shared_ptr<ThreadPoolState>& state, std::size_t index) {
    t_owning_pool = state.get();
    // A failure only loses the name, which is cosmetic.
    pthread_setname_np(pthread_self(), worker_name(state->thread_name_prefix, index).c_str());

    std::unique_lock lock(state->mutex);
    for (;;) {
        while (state->queue.empty() && !state->shutdown) {
            ++state->idle;
            state->work_available.wait(lock);
            --state->idle;
        }
        if (state->queue.empty()) {
            // Shut down and drained. Without cancel_futures every accepted
            // job runs before the workers leave.
            return;
        }
        Executor::Job job = std::move(state->queue.front());
        state->queue.pop_front();
        lock.unlock();
        try {
            job();
        } catch (...) {
            // run_in_executor's wrapper delivers errors through the future;
            // anything that still escapes must not take the worker down.
        }
        // Destroyed before relocking: a job's destructor may call back into
        // the pool (worker_count(), submit()).
        job.reset();
        lock.lock();
    }
}

}  // namespace
}  // namespace detail

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers, std::string thread_name_prefix)
    : ThreadPoolExecutor(Options{
          .max_workers = max_workers == 0 ? std::nullopt : std::optional(max_workers),
          .thread_name_prefix = std::move(thread_name_prefix),
      }) {}

ThreadPoolExecutor::ThreadPoolExecutor(Options options)
    : _state(std::make_shared<detail::ThreadPoolState>()) {
    if (options.max_workers.has_value() && *options.max_workers == 0) {
        throw std::invalid_argument("max_workers must be greater than 0");
    }
    _state->max_workers = options.max_workers.value_or(default_max_workers());
    _state->thread_name_prefix = options.thread_name_prefix.empty()
                                     ? std::string(detail::default_prefix)
                                     : std::move(options.thread_name_prefix);
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
    shutdown(/*wait=*/true, /*cancel_futures=*/false);
    if (detail::t_owning_pool == _state.get()) {
        // Destroyed by one of our own jobs: shutdown() joined every worker it
        // could, but not this one, nor any other worker busy joining. Nobody
        // is left to join them, so they finish the queue on their own; they
        // keep the state alive through their shared_ptr.
        std::lock_guard lock(_state->mutex);
        for (std::thread& thread : _state->threads) {
            if (thread.joinable()) {
                thread.detach();
            }
        }
    }
}

void ThreadPoolExecutor::submit(Job job) {
    if (!job) {
        throw std::invalid_argument("ThreadPoolExecutor::submit: empty job");
    }
    detail::ThreadPoolState& state = *_state;
    // A job taken back after a failed thread start; declared before the
    // lock so that it is destroyed after the unlock.
    Job unrunnable;
    std::unique_lock lock(state.mutex);
    if (state.shutdown) {
        throw RuntimeError("cannot schedule new futures after shutdown");
    }
    state.queue.push_back(std::move(job));
    state.work_available.notify_one();

    // Python's _adjust_thread_count: a new thread only when the idle
    // workers cannot take every queued job. A notified worker stays counted
    // as idle until it wakes, and its job stays queued until then, so the
    // comparison is exact.
    if (state.queue.size() <= state.idle || state.started >= state.max_workers) {
        return;
    }
    try {
        state.threads.emplace_back(detail::run_worker, _state, state.started);
        ++state.started;
    } catch (...) {
        if (state.started > 0) {
            return;  // a running worker will get to the job
        }
        unrunnable = std::move(state.queue.back());
        state.queue.pop_back();
        lock.unlock();
        throw;
    }
}

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_futures) {
    detail::ThreadPoolState& state = *_state;
    const bool on_own_worker = detail::t_owning_pool == &state;
    const std::thread::id self = std::this_thread::get_id();

    std::deque<Job> dropped;
    std::unique_lock lock(state.mutex);
    state.shutdown = true;
    if (cancel_futures) {
        dropped.swap(state.queue);
    }
    state.work_available.notify_all();
    if (!dropped.empty()) {
        // Job destructors run arbitrary code (run_in_executor's cancels a
        // future), which may call back into the pool.
        lock.unlock();
        dropped.clear();
        lock.lock();
    }
    if (!wait) {
        return;
    }

    if (on_own_worker) {
        state.joining_workers.push_back(self);
    }
    for (;;) {
        std::vector<std::thread> claimed;
        for (std::thread& thread : state.threads) {
            const std::thread::id id = thread.get_id();
            const bool joining =
                std::find(state.joining_workers.begin(), state.joining_workers.end(), id) !=
                state.joining_workers.end();
            if (thread.joinable() && id != self && !(on_own_worker && joining)) {
                claimed.push_back(std::move(thread));
            }
        }
        std::erase_if(state.threads, [](const std::thread& t) { return !t.joinable(); });

        if (!claimed.empty()) {
            ++state.joins_in_progress;
            lock.unlock();
            // join() fails only on a broken invariant (self-join, a thread
            // already joined); the joinable threads left in `claimed` then
            // terminate the process, which is the right outcome.
            for (std::thread& thread : claimed) {
                thread.join();
            }
            lock.lock();
            --state.joins_in_progress;
            state.joins_finished.notify_all();
        }

        if (on_own_worker) {
            // Only the claims above: waiting for other joiners could mean
            // waiting for a thread that is joining this one.
            std::erase(state.joining_workers, self);
            return;
        }
        if (state.threads.empty()) {
            if (state.joins_in_progress == 0) {
                return;
            }
            // Another caller is joining the rest; "returns once every worker
            // is joined" holds for this caller too.
            state.joins_finished.wait(lock);
        }
    }
}

std::size_t ThreadPoolExecutor::max_workers() const noexcept { return _state->max_workers; }

std::size_t ThreadPoolExecutor::worker_count() const {
    std::lock_guard lock(_state->mutex);
    return _state->started;
}

std::size_t ThreadPoolExecutor::idle_worker_count() const {
    std::lock_guard lock(_state->mutex);
    return _state->idle;
}

std::size_t ThreadPoolExecutor::default_max_workers() {
    std::size_t cpus = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    // Fails with EINVAL on machines with more CPUs than a cpu_set_t holds;
    // hardware_concurrency() is the fallback there.
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        cpus = static_cast<std::size_t>(CPU_COUNT(&set));
    }
    if (cpus == 0) {
        cpus = std::thread::hardware_concurrency();
    }
    return std::min<std::size_t>(32, std::max<std::size_t>(cpus, 1) + 4);
}

}  // namespace shardloop
