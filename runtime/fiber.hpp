#pragma once

// A fiber: a function running on its own stack that the loop switches into
// and that switches back to the loop when it waits. Built on Boost.Context's
// fcontext (the two-instruction-sequence switch under boost::context), with
// the bookkeeping the sanitizers and the C++ runtime need at every switch:
//  - AddressSanitizer is told about each stack change
//    (__sanitizer_start/finish_switch_fiber), or it reports false stack
//    overflows and misses real use-after-return bugs;
//  - ThreadSanitizer gets one fiber object per fiber (__tsan_switch_to_fiber),
//    or it mixes up the happens-before histories of different fibers;
//  - the per-thread C++ exception state (the chain of caught exceptions and
//    the uncaught count) is saved and restored, so that a fiber that waits
//    inside a catch block does not corrupt `throw;` in another.
// Switches only go loop -> fiber (resume) and fiber -> loop (suspend).

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>

#include "runtime/sanitizers.hpp"
#include "runtime/stack_pool.hpp"

#if defined(SHARDLOOP_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(SHARDLOOP_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace shardloop::detail {

class Fiber {
public:
    using Entry = void (*)(void* arg);

    Fiber() = default;
    ~Fiber();
    Fiber(const Fiber&) = delete;
    Fiber& operator=(const Fiber&) = delete;

    // Prepares the fiber to run entry(arg) on `stack` at the first resume().
    void start(FiberStack stack, Entry entry, void* arg);

    // From the loop: runs the fiber until it suspends or its entry returns.
    void resume();

    // From inside the fiber: goes back to the context that resumed it.
    void suspend();

    bool started() const noexcept { return static_cast<bool>(_stack); }
    bool finished() const noexcept { return _finished; }

    // Once finished: gives the stack back (for the pool) and resets the fiber.
    FiberStack take_stack() noexcept;

private:
    // The layout of the Itanium C++ ABI's per-thread exception globals
    // (caughtExceptions, uncaughtExceptions), which libstdc++ and libc++abi share.
    struct ExceptionState {
        void* caught = nullptr;
        unsigned int uncaught = 0;
    };

public:
    // Internal: where a new fiber starts (called from the fcontext entry).
    static void trampoline_entry(void* caller_context, void* data);

private:
    [[noreturn]] void exit_to_caller();

    void* _context = nullptr;  // the fiber's saved fcontext while it is not running
    void* _caller = nullptr;   // the loop's saved fcontext while the fiber runs
    FiberStack _stack;
    Entry _entry = nullptr;
    void* _arg = nullptr;
    bool _finished = false;
    ExceptionState _exceptions;
    void* _eh_globals = nullptr;  // this thread's __cxa_eh_globals

    // AddressSanitizer bookkeeping.
    void* _asan_fake_stack = nullptr;         // the fiber's, while it is switched out
    void* _asan_caller_fake_stack = nullptr;  // the loop's, while the fiber runs
    const void* _caller_stack_bottom = nullptr;
    std::size_t _caller_stack_size = 0;

    // ThreadSanitizer bookkeeping.
    void* _tsan_fiber = nullptr;
    void* _tsan_caller = nullptr;
};

// Both switches are inline: every call that spans a switch ends in a
// mispredicted return (the return-stack buffer holds the other context's
// calls), so the fewer calls around jump_fcontext, the cheaper a switch.
inline void Fiber::resume() {
    // A fiber never changes threads, so the thread's exception globals
    // found at start() stay valid (and the lookup stays off the hot path).
    auto* globals = static_cast<ExceptionState*>(_eh_globals);
    ExceptionState loop_exceptions = *globals;
    *globals = _exceptions;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&_asan_caller_fake_stack, _stack.bottom(), _stack.usable());
#endif
#if defined(SHARDLOOP_TSAN)
    _tsan_caller = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(_tsan_fiber, 0);
#endif
    boost::context::detail::transfer_t back = boost::context::detail::jump_fcontext(_context, this);
#if defined(SHARDLOOP_ASAN)
    __sanitizer_finish_switch_fiber(_asan_caller_fake_stack, nullptr, nullptr);
#endif
    _context = back.fctx;
    _exceptions = *globals;
    *globals = loop_exceptions;
#if defined(SHARDLOOP_TSAN)
    if (_finished) {
        __tsan_destroy_fiber(_tsan_fiber);
        _tsan_fiber = nullptr;
    }
#endif
}

inline void Fiber::suspend() {
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&_asan_fake_stack, _caller_stack_bottom, _caller_stack_size);
#endif
#if defined(SHARDLOOP_TSAN)
    __tsan_switch_to_fiber(_tsan_caller, 0);
#endif
    boost::context::detail::transfer_t back =
        boost::context::detail::jump_fcontext(_caller, nullptr);
    _caller = back.fctx;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_finish_switch_fiber(_asan_fake_stack, &_caller_stack_bottom, &_caller_stack_size);
#endif
}

}  // namespace shardloop::detail
