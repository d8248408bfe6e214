#pragma once

// AsyncGenerator<T>: asyncio's asynchronous generator for C++, on a fiber.
// The body runs in a task of its own and hands values out with yield(v);
// a consumer task pulls them with await(gen.anext()) and may await inside
// the body between values:
//
//     AsyncGenerator<int> ticks(loop, [](AsyncGenerator<int>::Yield& yield) {
//         for (int i = 0; i < 3; ++i) { await(sleep(0.1)); yield(i); }
//     });
//     while (auto tick = await(ticks.anext())) { use(*tick); }
//
// Like a Python generator it starts at the first anext(). aclose() makes
// the pending yield throw GeneratorExit so the body's destructors run; the
// loop's shutdown_asyncgens() closes every generator still alive, and one
// dropped while suspended is closed too. Loop thread only.

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "runtime/event_loop.hpp"

namespace shardloop {

// Thrown by yield() in a generator being closed. Like Python's GeneratorExit
// it is not a std::exception: let it propagate.
struct GeneratorExit {};

namespace detail {

class AsyncGenBase {
public:
    virtual ~AsyncGenBase() = default;
    // Starts closing; the future completes when the body has ended.
    virtual Future<void> aclose() = 0;
    virtual std::string repr() const = 0;
};

template <class T>
class AsyncGenState final : public AsyncGenBase,
                            public std::enable_shared_from_this<AsyncGenState<T>> {
public:
    class Yield {
    public:
        explicit Yield(AsyncGenState& state) : _state(state) {}
        // Hands `value` to the consumer and waits for the next anext().
        // Throws GeneratorExit when the generator is being closed.
        void operator()(T value) { _state.yield_value(std::move(value)); }

    private:
        AsyncGenState& _state;
    };

    using Body = Callback<void(Yield&)>;

    AsyncGenState(EventLoop& loop, Body body) : _loop(loop), _body(std::move(body)) {}
    ~AsyncGenState() override {
        if (_registered) {
            _loop.unregister_asyncgen(this);
        }
    }

    Future<std::optional<T>> anext() {
        if (_phase == Phase::closed) {
            auto done = _loop.create_future<std::optional<T>>();
            done.set_result(std::nullopt);
            return done;
        }
        if (_next.valid() && !_next.done()) {
            throw RuntimeError("anext(): asynchronous generator is already running");
        }
        _next = _loop.create_future<std::optional<T>>();
        // A consumer cancelled while it waits for a value cancels the body,
        // which in Python runs inside the consumer's own task.
        _next.add_done_callback(
            [weak = this->weak_from_this()](const Future<std::optional<T>>& next) {
                auto self = weak.lock();
                if (self && next.cancelled() && self->_phase == Phase::running &&
                    self->_runner.valid()) {
                    self->_runner.cancel(next.state()->cancel_message());
                }
            });
        if (_phase == Phase::created) {
            _phase = Phase::running;
            _loop.register_asyncgen(this);  // asyncio's firstiter hook
            _registered = true;
            _runner =
                _loop.create_task([self = this->shared_from_this()] { self->run(); }, "asyncgen");
        } else {
            _phase = Phase::running;
            _resume.set_result();
        }
        return _next;
    }

    Future<void> aclose() override {
        if (_phase == Phase::created || _phase == Phase::closed) {
            _phase = Phase::closed;
            auto done = _loop.create_future<void>();
            done.set_result();
            return done;
        }
        if (_closing) {
            return _closed;
        }
        if (_phase == Phase::running) {
            throw RuntimeError("aclose(): asynchronous generator is already running");
        }
        _closing = true;
        _closed = _loop.create_future<void>();
        _phase = Phase::running;
        _resume.set_result();  // the pending yield wakes and throws GeneratorExit
        return _closed;
    }

    std::string repr() const override { return "<async_generator " + runner_name() + ">"; }

    bool suspended() const noexcept { return _phase == Phase::suspended; }
    bool running() const noexcept { return _phase == Phase::running; }
    // Every AsyncGenerator copy is gone while the body runs: its next yield
    // closes it, as a collected Python generator would be.
    void orphan() noexcept { _orphaned = true; }

private:
    enum class Phase { created, running, suspended, closed };

    std::string runner_name() const { return _runner.valid() ? _runner.get_name() : "unstarted"; }

    void yield_value(T value) {
        if (_closing) {
            throw RuntimeError("async generator ignored GeneratorExit");
        }
        if (_next.done()) {
            // The consumer gave up on this value (its anext was cancelled).
            throw CancelledError(_next.state()->cancel_message());
        }
        _resume = _loop.create_future<void>();
        _phase = Phase::suspended;
        _next.set_result(std::optional<T>(std::move(value)));
        if (_orphaned) {
            throw GeneratorExit{};  // nobody is left to ask for another value
        }
        await(_resume);
        if (_closing) {
            throw GeneratorExit{};
        }
    }

    void run() {
        Yield yield(*this);
        std::exception_ptr error;
        try {
            _body(yield);
        } catch (const FiberUnwind&) {
            throw;  // the loop is closing: let the task unwind
        } catch (const GeneratorExit&) {
            if (!_closing && !_orphaned) {
                error =
                    std::make_exception_ptr(RuntimeError("GeneratorExit raised outside aclose()"));
            }
        } catch (...) {
            error = std::current_exception();
        }
        _body.reset();
        _phase = Phase::closed;
        if (_registered) {
            _registered = false;
            _loop.unregister_asyncgen(this);
        }
        if (_next.valid() && !_next.done()) {
            if (error) {
                _next.set_exception(error);
                error = nullptr;
            } else {
                _next.set_result(std::nullopt);  // StopAsyncIteration
            }
        }
        if (_closing) {
            if (error) {
                _closed.set_exception(error);
            } else {
                _closed.set_result();
            }
        }
    }

    EventLoop& _loop;
    Body _body;
    Phase _phase = Phase::created;
    bool _closing = false;
    bool _orphaned = false;
    bool _registered = false;
    Task<void> _runner;
    Future<std::optional<T>> _next;
    Future<void> _resume;
    Future<void> _closed;
};

}  // namespace detail

template <class T>
class AsyncGenerator {
public:
    using Yield = typename detail::AsyncGenState<T>::Yield;

    template <class F>
    AsyncGenerator(EventLoop& loop, F&& body)
        : _owner(std::make_shared<Owner>(std::make_shared<detail::AsyncGenState<T>>(
              loop, typename detail::AsyncGenState<T>::Body(std::forward<F>(body))))) {}

    // The next value, or nullopt once the body has returned (Python's
    // StopAsyncIteration). The body's exception, if it throws, comes out
    // here. Throws RuntimeError if the previous anext() is still pending.
    Future<std::optional<T>> anext() { return _owner->state->anext(); }

    // Closes the generator: its pending yield throws GeneratorExit. The
    // future completes once the body has ended. Throws RuntimeError when
    // the body is running (between anext() and its next yield).
    Future<void> aclose() { return _owner->state->aclose(); }

private:
    // When the last AsyncGenerator copy goes while the body waits at a
    // yield, the body is closed (asyncio's finalizer hook does the same).
    struct Owner {
        explicit Owner(std::shared_ptr<detail::AsyncGenState<T>> s) : state(std::move(s)) {}
        ~Owner() {
            if (state->suspended()) {
                try {
                    state->aclose();
                } catch (...) {  // the loop is closed: nothing left to run the body
                }
            } else if (state->running()) {
                state->orphan();
            }
        }
        std::shared_ptr<detail::AsyncGenState<T>> state;
    };
    std::shared_ptr<Owner> _owner;
};

}  // namespace shardloop
