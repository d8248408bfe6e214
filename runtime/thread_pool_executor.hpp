#pragma once

// The thread-pool implementation of Executor, with the semantics of Python's
// concurrent.futures.ThreadPoolExecutor: threads start lazily, one per
// submitted job while no idle worker can take it, up to max_workers; idle
// workers are reused before a new thread is started.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "runtime/executor.hpp"

namespace shardloop {

namespace detail {
struct ThreadPoolState;  // shared by the pool and its workers; defined in the .cpp
}  // namespace detail

class ThreadPoolExecutor final : public Executor {
public:
    struct Options {
        // Upper bound on worker threads. Unset selects the default,
        // min(32, usable CPUs + 4), as in Python 3.13. An explicit 0 is
        // rejected.
        std::optional<std::size_t> max_workers;
        // Worker N (from 0) is named "<prefix>_N" with pthread_setname_np.
        // Linux keeps 15 bytes, so a long prefix is shortened to keep "_N":
        // the default gives "shardloop-poo_0". Empty selects the default.
        std::string thread_name_prefix = "shardloop-pool";
    };

    // `max_workers == 0` selects the default (see Options::max_workers).
    // Starts no thread. Throws std::bad_alloc only.
    explicit ThreadPoolExecutor(std::size_t max_workers = 0,
                                std::string thread_name_prefix = "shardloop-pool");

    // Designated-initialiser construction:
    //   ThreadPoolExecutor pool(ThreadPoolExecutor::Options{.max_workers = 4});
    // Throws std::invalid_argument("max_workers must be greater than 0") when
    // max_workers is explicitly 0. Starts no thread.
    explicit ThreadPoolExecutor(Options options);

    // shutdown(wait=true): runs every accepted job and joins every worker.
    // When the pool is destroyed by one of its own jobs, the workers that
    // shutdown() cannot join there (the calling one, and any inside a
    // shutdown(wait) of its own) are detached instead: they finish the
    // queue by themselves and touch only state they co-own, never this
    // object.
    ~ThreadPoolExecutor() override;

    ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
    ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;
    ThreadPoolExecutor(ThreadPoolExecutor&&) = delete;
    ThreadPoolExecutor& operator=(ThreadPoolExecutor&&) = delete;

    // Queues `job` and, when no idle worker is available for it and fewer
    // than max_workers threads exist, starts a thread. An exception thrown
    // by a job is swallowed: the worker keeps serving the queue. Throws
    // RuntimeError("cannot schedule new futures after shutdown") after
    // shutdown(), std::invalid_argument for an empty job, and
    // std::system_error when no worker exists and none can be started (the
    // job is then destroyed). Any thread, including the pool's own workers.
    void submit(Job job) override;

    // Stops accepting jobs; idempotent. With `cancel_futures`, jobs not yet
    // started are destroyed, outside the pool's lock, on the calling thread.
    // With `wait`, returns once the queue is empty and every worker has been
    // joined; without it, returns at once (the destructor joins later).
    // Throws nothing: a failed join would mean a broken invariant, and
    // terminates. Any thread.
    //
    // Called from one of this pool's own workers (a job shutting its own
    // pool down), `wait` never joins the caller itself, which would
    // deadlock, nor a worker that is inside shutdown(wait) itself, which
    // could be joining the caller; it joins the other workers. The calling
    // worker exits once its job has returned and the queue is empty, and
    // the destructor (or a later shutdown(wait) from outside) joins it.
    // Such a call may therefore return before every queued job has run.
    void shutdown(bool wait = true, bool cancel_futures = false) override;

    // The bound given at construction or its computed default. Any thread.
    std::size_t max_workers() const noexcept;

    // Threads started so far (never decreases, not even at shutdown). Any
    // thread; a snapshot, for tests and diagnostics.
    std::size_t worker_count() const;

    // Workers blocked waiting for a job right now. Any thread; a snapshot,
    // for tests (it lets a test know a finished worker has gone idle).
    std::size_t idle_worker_count() const;

    // min(32, usable CPUs + 4): the CPUs this process may run on, as
    // Python 3.13's os.process_cpu_count(), falling back to
    // std::thread::hardware_concurrency(), and to 1.
    static std::size_t default_max_workers();

private:
    std::shared_ptr<detail::ThreadPoolState> _state;
};

}  // namespace shardloop
