#pragma once

// The executor interface behind run_in_executor (asyncio's
// concurrent.futures.Executor, reduced to what the loop needs).

#include "runtime/callback.hpp"

namespace shardloop {

class Executor {
public:
    using Job = detail::Callback<void()>;

    virtual ~Executor() = default;

    // Runs `job` on some other thread, eventually. A job that is dropped
    // without running (shutdown with cancel_futures) is destroyed instead;
    // run_in_executor relies on that to cancel the job's future.
    // Throws RuntimeError("cannot schedule new futures after shutdown")
    // after shutdown(). Any thread.
    virtual void submit(Job job) = 0;

    // Stops accepting jobs. With `wait`, returns once every accepted job has
    // run (or was dropped) and the worker threads are joined; without it,
    // returns at once and the workers finish by themselves. With
    // `cancel_futures`, jobs not yet started are dropped. Idempotent. Any
    // thread except one of the executor's own workers.
    virtual void shutdown(bool wait = true, bool cancel_futures = false) = 0;
};

}  // namespace shardloop
