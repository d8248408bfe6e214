#pragma once

// wait_for(): a future with a deadline (asyncio.wait_for).

#include <memory>
#include <optional>

#include "runtime/event_loop.hpp"

namespace shardloop {

// A future that takes `inner`'s outcome, unless `timeout` seconds pass
// first: then `inner` is cancelled and the future fails with TimeoutError.
// No timeout waits for ever. Cancelling the returned future cancels `inner`.
// A timeout of zero or less on a future that is already done returns its
// result, as asyncio does.
template <class T>
Future<T> wait_for(Future<T> inner, std::optional<double> timeout) {
    EventLoop& loop = inner.get_loop();
    Future<T> outer = loop.create_future<T>();
    auto timed_out = std::make_shared<bool>(false);
    TimerHandle timer;
    if (timeout && !inner.done()) {
        timer = loop.call_later(*timeout, [inner, timed_out]() mutable {
            *timed_out = true;
            inner.cancel();
        });
    }
    inner.add_done_callback([outer, timer, timed_out](const Future<T>& done) mutable {
        timer.cancel();
        if (outer.done()) {
            return;
        }
        if (done.cancelled()) {
            if (*timed_out) {
                outer.set_exception(TimeoutError());
            } else {
                outer.cancel(done.state()->cancel_message());
            }
        } else if (std::exception_ptr error = done.exception()) {
            outer.set_exception(error);
        } else if constexpr (std::is_void_v<T>) {
            outer.set_result();
        } else {
            outer.set_result(*detail::value_slot_of<T>(*done.state()));
        }
    });
    outer.add_done_callback([inner](const Future<T>& f) mutable {
        if (f.cancelled()) {
            inner.cancel();
        }
    });
    return outer;
}

}  // namespace shardloop
