#pragma once

// The pieces submit_to is made of: running a function for another shard and
// carrying its outcome (a value or an exception) back. Futures are
// shard-local, so only the outcome crosses threads; the future it completes
// stays on the shard that made it.

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/future.hpp"
#include "runtime/task.hpp"

namespace shardloop::detail {

// What fn() gives, seen through a future: X for a Future<X> (or Task<X>),
// else fn's own result type.
template <class T>
struct AwaitedType {
    using type = T;
};
template <class X>
struct AwaitedType<Future<X>> {
    using type = X;
};
template <class X>
struct AwaitedType<Task<X>> {
    using type = X;
};
template <class F>
using SubmitResult = typename AwaitedType<std::invoke_result_t<std::decay_t<F>&>>::type;

// A done future's exception, with CancelledError for a cancelled one.
template <class R>
std::exception_ptr error_of(const Future<R>& done) {
    return done.cancelled() ? std::make_exception_ptr(CancelledError()) : done.exception();
}

template <class R>
struct Outcome {
    std::optional<StoredValue<R>> value{};
    std::exception_ptr error{};

    static Outcome of(const Future<R>& done) {
        Outcome outcome;
        if (std::exception_ptr error = error_of(done)) {
            outcome.error = std::move(error);
        } else if constexpr (std::is_void_v<R>) {
            outcome.value.emplace();
        } else {
            outcome.value.emplace(take_result<R>(*done.state()));
        }
        return outcome;
    }

    // Completes `future` with it, unless the future is already done
    // (cancelled by its owner meanwhile).
    void deliver(Future<R>& future) {
        if (future.done()) {
            return;
        }
        if (error) {
            future.set_exception(error);
        } else if constexpr (std::is_void_v<R>) {
            future.set_result();
        } else {
            future.set_result(std::move(*value));
        }
    }
};

// Runs fn() on the calling loop's thread and hands its outcome to
// reply(Outcome<R>&&) exactly once: at once for a plain value or an
// exception, or when the future fn returned is done.
template <class F, class Reply>
void run_for_reply(F& fn, Reply reply) noexcept {
    using T = std::invoke_result_t<F&>;
    using R = typename AwaitedType<T>::type;
    try {
        if constexpr (!std::is_same_v<T, R>) {
            Future<R> inner = fn();
            inner.add_done_callback([reply = std::move(reply)](Future<R> done) mutable {
                reply(Outcome<R>::of(done));
            });
        } else if constexpr (std::is_void_v<R>) {
            fn();
            reply(Outcome<R>{.value = std::monostate{}});
        } else {
            reply(Outcome<R>{.value = fn()});
        }
    } catch (...) {
        reply(Outcome<R>{.error = std::current_exception()});
    }
}

// A future waiting on this shard for a reply from another. The replies a
// shard still waits for are linked in a list, so that the ones that never
// come (the shards stopped first) are freed on this shard's thread.
class ReplySlotBase {
public:
    virtual ~ReplySlotBase() { unlink(); }

    void link(ReplySlotBase*& head) noexcept {
        _head = &head;
        _next = head;
        if (head != nullptr) {
            head->_prev = this;
        }
        head = this;
    }

    // Frees every slot of the list.
    static void free_all(ReplySlotBase*& head) noexcept {
        while (head != nullptr) {
            delete head;
        }
    }

private:
    void unlink() noexcept {
        if (_head == nullptr) {
            return;
        }
        (_prev != nullptr ? _prev->_next : *_head) = _next;
        if (_next != nullptr) {
            _next->_prev = _prev;
        }
        _head = nullptr;
    }

    ReplySlotBase** _head = nullptr;
    ReplySlotBase* _prev = nullptr;
    ReplySlotBase* _next = nullptr;
};

template <class R>
class ReplySlot final : public ReplySlotBase {
public:
    explicit ReplySlot(Future<R> future) : _future(std::move(future)) {}

    // On the waiting shard: completes the future and frees the slot.
    void complete(Outcome<R>&& outcome) {
        std::unique_ptr<ReplySlot> self(this);
        outcome.deliver(_future);
    }

private:
    Future<R> _future;
};

}  // namespace shardloop::detail
