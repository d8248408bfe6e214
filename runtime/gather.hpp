#pragma once

// gather(): one future for many (asyncio.gather).

#include <memory>
#include <tuple>
#include <vector>

#include "runtime/event_loop.hpp"

namespace shardloop {

namespace detail {

// Shared by the children's callbacks: counts them home and fails fast.
struct GatherProgress {
    std::size_t remaining;
    bool cancel_requested = false;
};

// Wires one child into the outer future; `finish` builds the result.
template <class Outer, class Finish>
void gather_child(AnyFuture child, Outer outer, std::shared_ptr<GatherProgress> progress,
                  std::shared_ptr<Finish> finish) {
    child.state()->add_done_callback([outer, progress, finish](FutureBase& done) mutable {
        if (outer.done()) {
            if (!done.cancelled()) {
                done.exception();  // mark it retrieved: the outer future reported first
            }
            return;
        }
        if (done.cancelled()) {
            outer.set_exception(CancelledError(done.cancel_message()));
            return;
        }
        if (std::exception_ptr error = done.exception()) {
            outer.set_exception(error);
            return;
        }
        if (--progress->remaining == 0) {
            (*finish)();
        }
    });
}

}  // namespace detail

// Every future's result, in order, once all are done. The first exception
// (or cancellation) of a child fails the whole; the other children go on.
// Cancelling the returned future cancels every child.
template <class T>
Future<std::vector<detail::StoredValue<T>>> gather(std::vector<Future<T>> children,
                                                   EventLoop& loop = get_running_loop()) {
    using Result = std::vector<detail::StoredValue<T>>;
    Future<Result> outer = loop.create_future<Result>();
    if (children.empty()) {
        outer.set_result(Result{});
        return outer;
    }
    auto progress = std::make_shared<detail::GatherProgress>(detail::GatherProgress{children.size()});
    auto finish = std::make_shared<std::function<void()>>([outer, children]() mutable {
        Result results;
        results.reserve(children.size());
        for (auto& child : children) {
            results.push_back(detail::stored_result(child));
        }
        outer.set_result(std::move(results));
    });
    for (auto& child : children) {
        detail::gather_child(AnyFuture(child), outer, progress, finish);
    }
    outer.add_done_callback([children](const Future<Result>& f) mutable {
        if (f.cancelled()) {
            for (auto& child : children) {
                child.cancel();
            }
        }
    });
    return outer;
}

// The futures themselves, each done, once all are done: asyncio's
// gather(..., return_exceptions=True). Inspect each with result()/exception().
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

template <class T>
Future<std::vector<Future<T>>> gather(std::vector<Future<T>> children, ReturnExceptions,
                                      EventLoop& loop = get_running_loop()) {
    using Result = std::vector<Future<T>>;
    Future<Result> outer = loop.create_future<Result>();
    if (children.empty()) {
        outer.set_result(Result{});
        return outer;
    }
    auto remaining = std::make_shared<std::size_t>(children.size());
    for (auto& child : children) {
        child.add_done_callback([outer, children, remaining](const Future<T>& done) mutable {
            if (!done.cancelled()) {
                done.exception();  // it is returned, so it counts as retrieved
            }
            if (--*remaining == 0 && !outer.done()) {
                outer.set_result(children);
            }
        });
    }
    outer.add_done_callback([children](const Future<Result>& f) mutable {
        if (f.cancelled()) {
            for (auto& child : children) {
                child.cancel();
            }
        }
    });
    return outer;
}

// Futures of different types: a future of the tuple of their results.
template <class... Ts>
Future<std::tuple<detail::StoredValue<Ts>...>> gather(Future<Ts>... children) {
    using Result = std::tuple<detail::StoredValue<Ts>...>;
    static_assert(sizeof...(Ts) > 0, "gather() needs at least one future");
    EventLoop& loop = std::get<0>(std::tie(children...)).get_loop();
    Future<Result> outer = loop.create_future<Result>();
    auto progress = std::make_shared<detail::GatherProgress>(detail::GatherProgress{sizeof...(Ts)});
    auto finish = std::make_shared<std::function<void()>>([outer, children...]() mutable {
        outer.set_result(Result{detail::stored_result(children)...});
    });
    (detail::gather_child(AnyFuture(children), outer, progress, finish), ...);
    outer.add_done_callback([children...](const Future<Result>& f) mutable {
        if (f.cancelled()) {
            (children.cancel(), ...);
        }
    });
    return outer;
}

}  // namespace shardloop
