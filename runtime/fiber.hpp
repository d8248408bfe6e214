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
// A fiber is entered from a scheduler context (the loop, or a caller that
// starts a task eagerly) by resume(), and leaves either back to that context
// (suspend) or straight into another suspended fiber of the same scheduler
// (switch_to), which then returns to the scheduler in its place. Every jump
// carries the Fiber it leaves (null: the scheduler), so whoever lands knows
// where to save the context it came from.

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

    // From a scheduler context: runs the fiber until a fiber of this
    // scheduler suspends or returns. That is this fiber, or the last of the
    // fibers it switched to; it is returned.
    [[nodiscard]] Fiber* resume();

    // From inside the fiber: goes back to the scheduler context.
    void suspend();

    // From inside the fiber: goes straight to `next`, a started, unfinished
    // fiber suspended by suspend() or switch_to() under the same scheduler.
    // `next` returns to this fiber's scheduler when it suspends. One context
    // switch instead of two through the scheduler.
    void switch_to(Fiber& next);

    bool started() const noexcept { return static_cast<bool>(_stack); }
    bool finished() const noexcept { return _finished; }

    // Once finished: gives the stack back (for the pool) and resets the fiber.
    FiberStack take_stack() noexcept;

    // The layout of the Itanium C++ ABI's per-thread exception globals
    // (caughtExceptions, uncaughtExceptions), which libstdc++ and libc++abi share.
    struct ExceptionState {
        void* caught = nullptr;
        unsigned int uncaught = 0;
    };

    // What a fiber needs of the scheduler context below it. It lives in
    // resume()'s frame; the running fibers reach it through t_scheduler
    // (resume() nests when a task starts another eagerly).
    struct Scheduler {
        void* context = nullptr;  // its saved fcontext while a fiber runs
        ExceptionState exceptions;
        void* asan_fake_stack = nullptr;
        const void* stack_bottom = nullptr;
        std::size_t stack_size = 0;
        void* tsan_fiber = nullptr;
        Fiber* resumed = nullptr;  // the fiber resume() entered; a new one finds itself here
    };
    static inline thread_local Scheduler* t_scheduler = nullptr;

    // Internal: where a new fiber starts (called from the fcontext entry).
    static void trampoline_entry(boost::context::detail::transfer_t from);

private:
    // Saves the context a jump into this fiber came from: the scheduler's
    // when `from` is null, else the fiber that switched here.
    void landed(boost::context::detail::transfer_t from) noexcept;
    [[noreturn]] void exit_to_scheduler();

    // What every switch touches first, on as few cache lines as can be.
    void* _context = nullptr;  // the fiber's saved fcontext while it is not running
    FiberStack _stack;
    ExceptionState _exceptions;             // the fiber's, while it is switched out
    ExceptionState* _eh_globals = nullptr;  // this thread's __cxa_eh_globals
    bool _finished = false;
    Entry _entry = nullptr;
    void* _arg = nullptr;

    void* _asan_fake_stack = nullptr;  // AddressSanitizer: the fiber's, while switched out
    void* _tsan_fiber = nullptr;       // ThreadSanitizer: the fiber's identity
};

// jump_fcontext returns with an indirect jump, not a `ret`, so a `call` to
// it leaves an entry on the CPU's return-stack buffer that nothing pops: the
// first `ret` after every switch would then be mispredicted. On x86-64 the
// call is made as push + jmp instead, which keeps the buffer in step (the
// sanitizer builds keep the plain call). The red zone below the stack
// pointer is stepped over first: the compiler may keep data there.
inline boost::context::detail::transfer_t jump_to_context(void* to, void* data) noexcept {
#if defined(__x86_64__) && !defined(SHARDLOOP_ASAN) && !defined(SHARDLOOP_TSAN)
    register void* rdi asm("rdi") = to;
    register void* rsi asm("rsi") = data;
    register void* rax asm("rax");
    register void* rdx asm("rdx");
    asm volatile(
        "lea -128(%%rsp), %%rsp\n\t"
        "lea 1f(%%rip), %%rcx\n\t"
        "push %%rcx\n\t"
        "jmp jump_fcontext\n"
        "1:\n\t"
        "lea 128(%%rsp), %%rsp"
        : "+r"(rdi), "+r"(rsi), "=r"(rax), "=r"(rdx)
        :
        : "rcx", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
          "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
          "xmm15", "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
    return {rax, rdx};
#else
    return boost::context::detail::jump_fcontext(to, data);
#endif
}

// Every switch is inline: every call that spans a switch ends in a
// mispredicted return (the return-stack buffer holds the other context's
// calls), so the fewer calls around jump_fcontext, the cheaper a switch.
// Whoever jumps saves its own exception globals and installs the target's,
// and tells the sanitizers which stack it goes to.
inline Fiber* Fiber::resume() {
    Scheduler here;
    Scheduler* outer = t_scheduler;
    t_scheduler = &here;
    // A fiber never changes threads, so the thread's exception globals
    // found at start() stay valid (and the lookup stays off the hot path).
    here.resumed = this;
    here.exceptions = *_eh_globals;
    *_eh_globals = _exceptions;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&here.asan_fake_stack, _stack.bottom(), _stack.usable());
#endif
#if defined(SHARDLOOP_TSAN)
    here.tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(_tsan_fiber, 0);
#endif
    boost::context::detail::transfer_t back = jump_to_context(_context, nullptr);
    auto* returned = static_cast<Fiber*>(back.data);
    returned->_context = back.fctx;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_finish_switch_fiber(here.asan_fake_stack, nullptr, nullptr);
#endif
#if defined(SHARDLOOP_TSAN)
    if (returned->_finished) {
        __tsan_destroy_fiber(returned->_tsan_fiber);
        returned->_tsan_fiber = nullptr;
    }
#endif
    t_scheduler = outer;
    return returned;
}

inline void Fiber::landed(boost::context::detail::transfer_t from) noexcept {
    if (from.data == nullptr) {
        t_scheduler->context = from.fctx;
#if defined(SHARDLOOP_ASAN)
        __sanitizer_finish_switch_fiber(_asan_fake_stack, &t_scheduler->stack_bottom,
                                        &t_scheduler->stack_size);
#endif
    } else {
        static_cast<Fiber*>(from.data)->_context = from.fctx;
#if defined(SHARDLOOP_ASAN)
        __sanitizer_finish_switch_fiber(_asan_fake_stack, nullptr, nullptr);
#endif
    }
}

inline void Fiber::suspend() {
    Scheduler* scheduler = t_scheduler;
    _exceptions = *_eh_globals;
    *_eh_globals = scheduler->exceptions;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&_asan_fake_stack, scheduler->stack_bottom,
                                   scheduler->stack_size);
#endif
#if defined(SHARDLOOP_TSAN)
    __tsan_switch_to_fiber(scheduler->tsan_fiber, 0);
#endif
    landed(jump_to_context(scheduler->context, this));
}

inline void Fiber::switch_to(Fiber& next) {
    _exceptions = *_eh_globals;
    *_eh_globals = next._exceptions;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&_asan_fake_stack, next._stack.bottom(), next._stack.usable());
#endif
#if defined(SHARDLOOP_TSAN)
    __tsan_switch_to_fiber(next._tsan_fiber, 0);
#endif
    landed(jump_to_context(next._context, this));
}

}  // namespace shardloop::detail
