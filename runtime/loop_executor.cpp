// EventLoop's thread-pool side: the default executor and its shutdown.

#include "runtime/event_loop.hpp"
#include "runtime/log.hpp"
#include "runtime/thread_pool_executor.hpp"

namespace shardloop {

Executor& EventLoop::default_executor() {
    if (_executor_shutdown_called) {
        throw RuntimeError("Executor shutdown has been called");
    }
    if (!_default_executor) {
        _default_executor = std::make_shared<ThreadPoolExecutor>(ThreadPoolExecutor::Options{
            .max_workers = std::nullopt, .thread_name_prefix = "shardloop-exec"});
    }
    return *_default_executor;
}

void EventLoop::set_default_executor(std::shared_ptr<Executor> executor) {
    _default_executor = std::move(executor);
}

Future<void> EventLoop::shutdown_default_executor(std::optional<double> timeout) {
    check_closed();
    _executor_shutdown_called = true;
    Future<void> done = create_future<void>();
    if (!_default_executor) {
        done.set_result();
        return done;
    }
    if (_executor_shutdown_thread.joinable()) {
        _executor_shutdown_thread.join();  // a previous call's thread has finished its work
    }
    // Joining the pool's threads blocks, so it happens on a thread of its
    // own; the loop hears of the end through a posted callback.
    detail::PostedCallback joined = prepare_posted_callback([done]() mutable {
        if (!done.done()) {
            done.set_result();
        }
    });
    _executor_shutdown_thread =
        std::thread([executor = _default_executor, joined = std::move(joined)]() mutable {
            executor->shutdown(/*wait=*/true);
            joined.post();
        });
    if (timeout) {
        TimerHandle timer = call_later(*timeout, [done, seconds = *timeout]() mutable {
            if (!done.done()) {
                log(LogLevel::warning,
                    "The executor did not finishing joining its threads within " +
                        std::to_string(seconds) + " seconds.");
                done.set_result();
            }
        });
        done.add_done_callback([timer](const Future<void>&) mutable { timer.cancel(); });
    }
    return done;
}

}  // namespace shardloop
