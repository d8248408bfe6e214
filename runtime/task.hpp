#pragma once

// Task<R>: asyncio.Task for C++. A task runs a function on a fiber of its
// own; inside it, await(fut) suspends only that fiber until fut is done.
// A Task<R> is also a Future<R> holding the function's result.

#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime/fiber.hpp"
#include "runtime/future.hpp"
#include "runtime/handle.hpp"

namespace shardloop {

namespace detail {

// Thrown by await() in a pending task whose loop is closing: it unwinds the
// task's stack so that every destructor on it runs. It is not a
// std::exception; a `catch (...)` in a task must rethrow it.
struct FiberUnwind {};

class TaskBase : public FutureBase, public Runnable {
public:
    TaskBase(EventLoop& loop, void* value_slot, std::string name);
    ~TaskBase() override;

    // asyncio's Task.cancel(): cancels the future the task waits for, or
    // makes its next await throw CancelledError.
    bool cancel(std::string message) override;
    int cancelling() const noexcept { return _num_cancels_requested; }
    int uncancel() noexcept;

    // "Task-N" unless a name was given; formatted on first use, so that
    // creating a task costs no string work.
    const std::string& name() const;
    void set_name(std::string name) { _name = std::move(name); }
    void set_number(uint64_t number) noexcept { _number = number; }
    std::string repr() const override;

    // Queues the task's first step (what the default task factory does).
    // Does nothing when it was started already.
    void start();
    // Runs the first step now, in the caller's context, until the task's
    // first await (asyncio's eager_start). Does nothing when started already.
    void start_eagerly();
    bool start_requested() const noexcept { return _start_requested; }

    // Inside the task: waits until `future` is done. Throws CancelledError
    // when the task is cancelled meanwhile.
    void await_future(FutureBase& future);
    // Inside the task: lets every other ready callback run once.
    void yield_now();

    // At loop close: reports the pending task and unwinds its fiber (its
    // destructors run) or, when it never started, drops its function.
    void destroy_pending();

    // The task whose fiber is running on this thread, or null.
    static TaskBase* current() noexcept { return t_current; }
    static inline thread_local TaskBase* t_current = nullptr;

    // The loop's registry of live tasks (an intrusive list).
    TaskBase* registry_prev = nullptr;
    TaskBase* registry_next = nullptr;

    // Whether a queued runnable is a task's step (not a callback).
    static bool is_task(const Runnable* runnable) noexcept {
        return runnable->ops == &runnable_ops;
    }

protected:
    virtual void run_body() = 0;            // in the fiber: run the function, store its value
    virtual void drop_body() noexcept = 0;  // destroy the function without running it
    const char* unretrieved_message() const noexcept override;

private:
    static const Ops runnable_ops;
    static void fiber_entry(void* arg);
    [[gnu::always_inline]] inline void schedule_step();
    // Runs the task until its fiber suspends or returns; returns the task
    // that came back to the loop (this one, or one it handed the CPU to).
    // Inlined into the ready queue's call: each extra return around a fiber
    // switch is a mispredicted one (see Fiber).
    [[gnu::always_inline]] inline TaskBase* step();
    void finish_step();
    // Throws what the loop asked of the task meanwhile: unwind at close, or
    // a cancellation. Inline: it runs at every wake-up and rarely throws.
    void check_interrupts() {
        if (_unwinding || _must_cancel) [[unlikely]] {
            raise_interrupt();
        }
    }
    [[noreturn]] void raise_interrupt();
    // Leaves the fiber until woken: into the next ready task of the batch
    // when there is one to resume, else back to the loop.
    [[gnu::always_inline]] inline void suspend();

    enum class Outcome : uint8_t { running, returned, threw, cancelled, unwound };

    // What a step and a handoff read come first, next to the Runnable
    // header: a yield touches as few cache lines of the next task as it can.
    Outcome _outcome = Outcome::running;
    bool _must_cancel = false;
    bool _unwinding = false;
    bool _start_requested = false;
    int _num_cancels_requested = 0;
    Fiber _fiber;
    Ref<FutureBase> _fut_waiter;
    mutable std::string _name;
    uint64_t _number = 0;
    std::string _must_cancel_message;
    std::exception_ptr _body_exception;
};

template <class R, class F>
class TaskState final : public TaskBase {
public:
    template <class G>
    TaskState(EventLoop& loop, G&& fn, std::string name)
        : TaskBase(loop, &value, std::move(name)), _fn(std::forward<G>(fn)) {}

    std::optional<StoredValue<R>> value;

private:
    void run_body() override {
        // What the function captured goes as soon as it returns or throws,
        // not when the last reference to the task does.
        struct ReleaseFunction {
            std::optional<F>& fn;
            ~ReleaseFunction() { fn.reset(); }
        } release{_fn};
        if constexpr (std::is_void_v<R>) {
            (*_fn)();
        } else {
            value.emplace((*_fn)());
        }
    }
    void drop_body() noexcept override { _fn.reset(); }

    std::optional<F> _fn;
};

}  // namespace detail

// A task of any result type: what task factories receive.
class AnyTask : public AnyFuture {
public:
    AnyTask() = default;
    explicit AnyTask(detail::Ref<detail::FutureBase> state) : AnyFuture(std::move(state)) {}

    const std::string& get_name() const { return task().name(); }
    void set_name(std::string name) { task().set_name(std::move(name)); }
    // See TaskBase::start and start_eagerly.
    void start() { task().start(); }
    void start_eagerly() { task().start_eagerly(); }

private:
    detail::TaskBase& task() const { return static_cast<detail::TaskBase&>(*_state); }
};

template <class R>
class Task : public Future<R> {
public:
    Task() = default;
    explicit Task(detail::Ref<detail::FutureBase> state) : Future<R>(std::move(state)) {}

    const std::string& get_name() const { return task().name(); }
    void set_name(std::string name) { task().set_name(std::move(name)); }
    // The number of cancel() requests not yet withdrawn by uncancel().
    int cancelling() const { return task().cancelling(); }
    // Withdraws one cancel() request; returns the number left.
    int uncancel() { return task().uncancel(); }

    // A task's result comes from its function only (asyncio raises here too).
    template <class... A>
    void set_result(A&&...) = delete;
    template <class... A>
    void set_exception(A&&...) = delete;

private:
    detail::TaskBase& task() const { return static_cast<detail::TaskBase&>(*this->_state); }
};

// The task running on this thread, if any (asyncio.current_task()).
std::optional<AnyTask> current_task();

// Waits, inside a task, until `future` is done; returns its result or throws
// its exception (CancelledError when it, or this task, was cancelled).
// Throws RuntimeError when called outside a task: a plain callback must
// never block its loop.
template <class T>
T await(const Future<T>& future) {
    detail::TaskBase* task = detail::TaskBase::current();
    if (task == nullptr) {
        throw RuntimeError(
            "await() called outside a task: only code running in a task (create_task) "
            "may wait; a callback must schedule a task or add a done callback instead");
    }
    if (!future.done()) {
        task->await_future(*future.state());
    }
    return detail::take_result<T>(*future.state());
}

}  // namespace shardloop
