#pragma once

// gather(): one future for many (asyncio.gather).

#include <functional>
#include <memory>
#include <tuple>
#include <vector>

#include "runtime/event_loop.hpp"

namespace shardloop {

namespace detail {

// asyncio's _GatheringFuture: cancelling it cancels the children, and it
// fails with CancelledError once they are done. It refuses the cancel (and
// keeps its result) when no child could still be cancelled.
template <class Result>
class GatheringState final : public FutureBase {
public:
    explicit GatheringState(EventLoop& loop) : FutureBase(loop, &value, false) {}

    bool cancel(std::string message) override {
        if (done()) {
            return false;
        }
        bool any = false;
        for (AnyFuture& child : children) {
            any = child.cancel(message) || any;
        }
        if (any) {
            cancel_requested = true;
            requested_message = std::move(message);
        }
        return any;
    }

    std::optional<StoredValue<Result>> value;
    std::vector<AnyFuture> children;
    std::size_t remaining = 0;
    bool cancel_requested = false;
    std::string requested_message;
};

template <class Result>
Future<Result> make_gathering(EventLoop& loop, std::vector<AnyFuture> children) {
    auto* state = new GatheringState<Result>(loop);
    state->children = std::move(children);
    state->remaining = state->children.size();
    return Future<Result>(Ref<FutureBase>::adopt(state));
}

// Wires every child into the gathering future. `fail_fast`: the first
// exception or cancellation of a child fails the whole (return_exceptions
// false). `finish` builds the result once every child is done.
template <class Result>
void gather_children(Future<Result> outer, bool fail_fast, std::function<void()> finish) {
    auto* state = static_cast<GatheringState<Result>*>(outer.state());
    auto shared_finish = std::make_shared<std::function<void()>>(std::move(finish));
    for (AnyFuture& child : state->children) {
        child.state()->add_done_callback(
            [outer, fail_fast, shared_finish](FutureBase& done) mutable {
                auto* gathering = static_cast<GatheringState<Result>*>(outer.state());
                if (outer.done()) {
                    if (!done.cancelled()) {
                        done.exception();  // mark it retrieved: the outer future reported first
                    }
                    return;
                }
                if (fail_fast) {
                    if (done.cancelled()) {
                        outer.set_exception(CancelledError(done.cancel_message()));
                        return;
                    }
                    if (std::exception_ptr error = done.exception()) {
                        outer.set_exception(error);
                        return;
                    }
                } else if (!done.cancelled()) {
                    done.exception();  // it is returned, so it counts as retrieved
                }
                if (--gathering->remaining != 0) {
                    return;
                }
                if (gathering->cancel_requested) {
                    outer.set_exception(CancelledError(gathering->requested_message));
                    return;
                }
                (*shared_finish)();
            });
    }
}

// The two vector forms of gather(): `result_of` turns the done children
// into the result.
template <class Result, class T, class ResultOf>
Future<Result> gather_vector(std::vector<Future<T>> children, EventLoop& loop, bool fail_fast,
                             ResultOf result_of) {
    Future<Result> outer =
        make_gathering<Result>(loop, std::vector<AnyFuture>(children.begin(), children.end()));
    if (children.empty()) {
        outer.set_result(Result{});
        return outer;
    }
    gather_children<Result>(outer, fail_fast, [outer, children, result_of]() mutable {
        outer.set_result(result_of(children));
    });
    return outer;
}

}  // namespace detail

// Every future's result, in order, once all are done. The first exception
// (or cancellation) of a child fails the whole; the other children go on.
// Cancelling the returned future cancels every child.
template <class T>
Future<std::vector<detail::StoredValue<T>>> gather(std::vector<Future<T>> children,
                                                   EventLoop& loop = get_running_loop()) {
    using Result = std::vector<detail::StoredValue<T>>;
    return detail::gather_vector<Result>(std::move(children), loop, true,
                                         [](std::vector<Future<T>>& done) {
                                             Result results;
                                             results.reserve(done.size());
                                             for (auto& child : done) {
                                                 results.push_back(detail::stored_result(child));
                                             }
                                             return results;
                                         });
}

// The futures themselves, each done, once all are done: asyncio's
// gather(..., return_exceptions=True). Inspect each with result()/exception().
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

template <class T>
Future<std::vector<Future<T>>> gather(std::vector<Future<T>> children, ReturnExceptions,
                                      EventLoop& loop = get_running_loop()) {
    return detail::gather_vector<std::vector<Future<T>>>(
        std::move(children), loop, false, [](std::vector<Future<T>>& done) { return done; });
}

// Futures of different types: a future of the tuple of their results.
template <class... Ts>
Future<std::tuple<detail::StoredValue<Ts>...>> gather(Future<Ts>... children) {
    using Result = std::tuple<detail::StoredValue<Ts>...>;
    static_assert(sizeof...(Ts) > 0, "gather() needs at least one future");
    EventLoop& loop = std::get<0>(std::tie(children...)).get_loop();
    Future<Result> outer =
        detail::make_gathering<Result>(loop, std::vector<AnyFuture>{AnyFuture(children)...});
    detail::gather_children<Result>(outer, true, [outer, children...]() mutable {
        outer.set_result(Result{detail::stored_result(children)...});
    });
    return outer;
}

}  // namespace shardloop
