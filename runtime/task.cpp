#include "runtime/task.hpp"

#include "runtime/event_loop.hpp"

namespace shardloop {

namespace detail {

namespace {

// Makes `task` the current task for the duration of a step, restoring the
// previous one after (an eager start runs a step inside another task).
class CurrentTaskScope {
public:
    explicit CurrentTaskScope(TaskBase* task) noexcept : _previous(TaskBase::t_current) {
        TaskBase::t_current = task;
    }
    ~CurrentTaskScope() { TaskBase::t_current = _previous; }
    CurrentTaskScope(const CurrentTaskScope&) = delete;
    CurrentTaskScope& operator=(const CurrentTaskScope&) = delete;

private:
    TaskBase* _previous;
};

}  // namespace

inline TaskBase* TaskBase::step() {
    if (done() || _outcome != Outcome::running) {
        return this;  // finished, or unwound at loop close: a late wake-up finds nothing to run
    }
    if (!_fiber.started()) {
        if (_must_cancel) {
            // Cancelled before its first step: the function never runs.
            _must_cancel = false;
            drop_body();
            _outcome = Outcome::cancelled;
            finish_step();
            return this;
        }
        try {
            _fiber.start(_loop->stack_pool().acquire(), &TaskBase::fiber_entry, this);
        } catch (...) {
            drop_body();  // no stack for it (ENOMEM): the task fails with that error
            _outcome = Outcome::threw;
            _body_exception = std::current_exception();
            finish_step();
            return this;
        }
    }
    TaskBase* returned;
    {
        CurrentTaskScope scope(this);
        (void)_fiber.resume();
        returned = t_current;  // a handoff made the next task current
    }
    if (returned->_fiber.finished()) {
        _loop->stack_pool().release(returned->_fiber.take_stack());
        returned->finish_step();
    }
    return returned;
}

inline void TaskBase::suspend() {
    Runnable* next = _loop->next_in_batch();
    if (next != nullptr && next->ops == &runnable_ops) {
        auto* task = static_cast<TaskBase*>(next);
        // Only a task whose step would just resume its fiber; the loop
        // starts, finishes and skips tasks itself.
        if (task->_fiber.started() && task->_outcome == Outcome::running && !task->done()) {
            _loop->take_next_in_batch();
            // This task's step reference goes (it stays alive: whatever
            // wakes it holds another); the next task's comes with the CPU.
            FutureBase::release();
            t_current = task;
            _fiber.switch_to(task->_fiber);
            return;
        }
    }
    _fiber.suspend();
}

const Runnable::Ops TaskBase::runnable_ops{
    [](Runnable* self) { static_cast<TaskBase*>(self)->step()->FutureBase::release(); },
    [](Runnable* self) { static_cast<TaskBase*>(self)->FutureBase::release(); },
};

TaskBase::TaskBase(EventLoop& loop, void* value_slot, std::string name)
    : FutureBase(loop, value_slot, true), Runnable{&runnable_ops}, _name(std::move(name)) {}

TaskBase::~TaskBase() = default;

const std::string& TaskBase::name() const {
    if (_name.empty() && _number != 0) {
        _name = "Task-" + std::to_string(_number);
    }
    return _name;
}

const char* TaskBase::unretrieved_message() const noexcept {
    return "Task exception was never retrieved";
}

bool TaskBase::cancel(std::string message) {
    _log_exception = false;
    if (done()) {
        return false;
    }
    ++_num_cancels_requested;
    if (_fut_waiter && _fut_waiter->cancel(message)) {
        // The waiter's callbacks wake this task, whose await then throws.
        return true;
    }
    _must_cancel = true;
    _must_cancel_message = std::move(message);
    return true;
}

int TaskBase::uncancel() noexcept {
    if (_num_cancels_requested > 0) {
        --_num_cancels_requested;
        if (_num_cancels_requested == 0) {
            _must_cancel = false;
        }
    }
    return _num_cancels_requested;
}

std::string TaskBase::repr() const {
    std::string text = "<Task ";
    switch (_state) {
        case State::pending:
            text += _num_cancels_requested > 0 ? "cancelling" : "pending";
            break;
        case State::cancelled:
            text += "cancelled";
            break;
        case State::finished:
            text += "finished";
            break;
    }
    text += " name='" + name() + "'";
    if (_state == State::finished && _exception) {
        text += " exception=" + describe_exception(_exception);
    }
    return text + ">";
}

void TaskBase::start() {
    if (_start_requested) {
        return;
    }
    _start_requested = true;
    schedule_step();
}

void TaskBase::start_eagerly() {
    if (_start_requested) {
        return;
    }
    if (!_loop->is_running()) {
        start();  // asyncio starts eagerly only on a running loop
        return;
    }
    _start_requested = true;
    // The step comes back here, not into a task the caller never scheduled.
    EventLoop::NoHandoffScope no_handoff(*_loop);
    FutureBase::add_ref();  // step() may finish the task and drop the loop's reference
    step()->FutureBase::release();
}

inline void TaskBase::schedule_step() {
    FutureBase::add_ref();
    _loop->schedule(this);
}

void TaskBase::fiber_entry(void* arg) {
    auto* self = static_cast<TaskBase*>(arg);
    try {
        self->check_interrupts();
        self->run_body();
        self->_outcome = Outcome::returned;
    } catch (const FiberUnwind&) {
        self->_outcome = Outcome::unwound;
    } catch (const CancelledError& e) {
        self->_outcome = Outcome::cancelled;
        self->_must_cancel_message = e.message();
    } catch (...) {
        self->_outcome = Outcome::threw;
        self->_body_exception = std::current_exception();
    }
}

// Applies the body's outcome to the task's future, in the loop's context.
void TaskBase::finish_step() {
    Outcome outcome = _outcome;
    if (outcome == Outcome::returned && _must_cancel) {
        // cancel() arrived after the last await: asyncio still cancels.
        outcome = Outcome::cancelled;
    }
    _must_cancel = false;
    _loop->unregister_task(this);
    switch (outcome) {
        case Outcome::returned:
            finish();
            break;
        case Outcome::threw:
            set_exception(std::move(_body_exception));
            break;
        case Outcome::cancelled:
            cancel_future(std::move(_must_cancel_message));
            break;
        case Outcome::unwound:
        case Outcome::running:
            // Destroyed while pending (loop close): it was reported already
            // and stays pending, as asyncio leaves a collected task.
            break;
    }
}

void TaskBase::raise_interrupt() {
    if (_unwinding) {
        throw FiberUnwind{};
    }
    _must_cancel = false;
    throw CancelledError(std::move(_must_cancel_message));
}

void TaskBase::await_future(FutureBase& future) {
    if (&future.loop() != _loop) {
        throw RuntimeError("Task " + repr() + " got Future " + future.repr() +
                           " attached to a different loop");
    }
    if (&future == static_cast<FutureBase*>(this)) {
        throw RuntimeError("Task cannot await on itself: " + repr());
    }
    if (_unwinding) {
        throw FiberUnwind{};
    }
    _fut_waiter = Ref<FutureBase>(&future);
    future.add_waiter(this);
    // A cancel() that arrived while the task ran goes to what it awaits
    // now, as in asyncio's Task.__step: the await then throws through it.
    if (_must_cancel && future.cancel(_must_cancel_message)) {
        _must_cancel = false;
    }
    suspend();
    _fut_waiter.reset();
    check_interrupts();
}

void TaskBase::yield_now() {
    check_interrupts();
    schedule_step();
    suspend();
    check_interrupts();
}

void TaskBase::destroy_pending() {
    ExceptionContext context;
    context.message = "Task was destroyed but it is pending!";
    context.task = AnyFuture(Ref<FutureBase>(this));
    _loop->call_exception_handler(context);
    if (_fiber.started() && !_fiber.finished()) {
        _unwinding = true;
        EventLoop::NoHandoffScope no_handoff(*_loop);
        CurrentTaskScope scope(this);
        (void)_fiber.resume();
        if (_fiber.finished()) {
            _loop->stack_pool().release(_fiber.take_stack());
        }
    } else {
        drop_body();
    }
    _outcome = Outcome::unwound;
    _loop->unregister_task(this);
}

}  // namespace detail

std::optional<AnyTask> current_task() {
    detail::TaskBase* task = detail::TaskBase::current();
    if (task == nullptr) {
        return std::nullopt;
    }
    return AnyTask(detail::Ref<detail::FutureBase>(task));
}

}  // namespace shardloop
