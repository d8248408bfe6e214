#include "runtime/fiber.hpp"

#include <cxxabi.h>

#include <boost/context/detail/fcontext.hpp>

#include "runtime/sanitizers.hpp"

#if defined(SHARDLOOP_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(SHARDLOOP_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace shardloop::detail {

namespace fctx = boost::context::detail;

namespace {

constexpr std::size_t cache_line = 64;
constexpr std::size_t stack_colors = 64;  // 64 lines: one 4 KiB page

// The Itanium C++ ABI's per-thread exception globals, laid out as
// Fiber::ExceptionState.
Fiber::ExceptionState* eh_globals() noexcept {
    return reinterpret_cast<Fiber::ExceptionState*>(abi::__cxa_get_globals());
}

void fiber_main(fctx::transfer_t transfer) {
    // Never returns: trampoline_entry ends with a jump back to the scheduler.
    Fiber::trampoline_entry(transfer);
}

}  // namespace

Fiber::~Fiber() {
#if defined(SHARDLOOP_TSAN)
    if (_tsan_fiber != nullptr) {
        __tsan_destroy_fiber(_tsan_fiber);
    }
#endif
}

void Fiber::start(FiberStack stack, Entry entry, void* arg) {
    _stack = stack;
    _entry = entry;
    _arg = arg;
    _finished = false;
    _exceptions = {};
    _eh_globals = eh_globals();
    // Stack colouring: every mapping starts on a page boundary, so the tops
    // of all stacks would share the same few L1 cache sets, and a loop
    // switching between dozens of tasks would evict its own hot frames. Each
    // new fiber starts its frames one cache line lower than the last, round
    // a page.
    static thread_local unsigned t_color = 0;
    std::size_t offset = (t_color++ % stack_colors) * cache_line;
    _context = fctx::make_fcontext(static_cast<char*>(stack.top()) - offset,
                                   stack.usable() - offset, &fiber_main);
#if defined(SHARDLOOP_TSAN)
    _tsan_fiber = __tsan_create_fiber(0);
#endif
}

void Fiber::trampoline_entry(fctx::transfer_t from) {
    // A fiber is always entered first by resume() (switch_to only goes to
    // fibers that have run), which names it in the scheduler.
    Fiber* self = t_scheduler->resumed;
    self->landed(from);
    self->_entry(self->_arg);
    self->_finished = true;
    self->exit_to_scheduler();
}

void Fiber::exit_to_scheduler() {
    Scheduler* scheduler = t_scheduler;
    *_eh_globals = scheduler->exceptions;
#if defined(SHARDLOOP_ASAN)
    // A null fake-stack slot tells ASan this fiber is gone for good.
    __sanitizer_start_switch_fiber(nullptr, scheduler->stack_bottom, scheduler->stack_size);
#endif
#if defined(SHARDLOOP_TSAN)
    __tsan_switch_to_fiber(scheduler->tsan_fiber, 0);
#endif
    fctx::jump_fcontext(scheduler->context, this);
    __builtin_unreachable();
}

FiberStack Fiber::take_stack() noexcept {
    FiberStack stack = _stack;
    _stack = {};
    _context = nullptr;
    _finished = false;
    return stack;
}

}  // namespace shardloop::detail
