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

// The Itanium C++ ABI's per-thread exception globals (caughtExceptions,
// uncaughtExceptions), which both libstdc++ and libc++abi lay out this way.
struct EhGlobals {
    void* caught;
    unsigned int uncaught;
};

EhGlobals* eh_globals() noexcept { return reinterpret_cast<EhGlobals*>(abi::__cxa_get_globals()); }

void fiber_main(fctx::transfer_t transfer) {
    // Never returns: Fiber::trampoline ends with a jump back to the loop.
    Fiber::trampoline_entry(transfer.fctx, transfer.data);
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
    _context = fctx::make_fcontext(stack.top(), stack.usable(), &fiber_main);
#if defined(SHARDLOOP_TSAN)
    _tsan_fiber = __tsan_create_fiber(0);
#endif
}

void Fiber::trampoline_entry(void* caller_context, void* data) {
    auto* self = static_cast<Fiber*>(data);
    self->_caller = caller_context;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &self->_caller_stack_bottom,
                                    &self->_caller_stack_size);
#endif
    self->_entry(self->_arg);
    self->_finished = true;
    self->exit_to_caller();
}

void Fiber::resume() {
    // A fiber never changes threads, so the thread's exception globals
    // found at start() stay valid (and the lookup stays off the hot path).
    auto* globals = static_cast<EhGlobals*>(_eh_globals);
    EhGlobals loop_exceptions = *globals;
    *globals = EhGlobals{_exceptions.caught, _exceptions.uncaught};
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&_asan_caller_fake_stack, _stack.bottom(), _stack.usable());
#endif
#if defined(SHARDLOOP_TSAN)
    _tsan_caller = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(_tsan_fiber, 0);
#endif
    fctx::transfer_t back = fctx::jump_fcontext(_context, this);
#if defined(SHARDLOOP_ASAN)
    __sanitizer_finish_switch_fiber(_asan_caller_fake_stack, nullptr, nullptr);
#endif
    _context = back.fctx;
    _exceptions = ExceptionState{globals->caught, globals->uncaught};
    *globals = loop_exceptions;
#if defined(SHARDLOOP_TSAN)
    if (_finished) {
        __tsan_destroy_fiber(_tsan_fiber);
        _tsan_fiber = nullptr;
    }
#endif
}

void Fiber::suspend() {
#if defined(SHARDLOOP_ASAN)
    __sanitizer_start_switch_fiber(&_asan_fake_stack, _caller_stack_bottom, _caller_stack_size);
#endif
#if defined(SHARDLOOP_TSAN)
    __tsan_switch_to_fiber(_tsan_caller, 0);
#endif
    fctx::transfer_t back = fctx::jump_fcontext(_caller, nullptr);
    _caller = back.fctx;
#if defined(SHARDLOOP_ASAN)
    __sanitizer_finish_switch_fiber(_asan_fake_stack, &_caller_stack_bottom, &_caller_stack_size);
#endif
}

void Fiber::exit_to_caller() {
#if defined(SHARDLOOP_ASAN)
    // A null fake-stack slot tells ASan this fiber is gone for good.
    __sanitizer_start_switch_fiber(nullptr, _caller_stack_bottom, _caller_stack_size);
#endif
#if defined(SHARDLOOP_TSAN)
    __tsan_switch_to_fiber(_tsan_caller, 0);
#endif
    fctx::jump_fcontext(_caller, nullptr);
    __builtin_unreachable();
}

FiberStack Fiber::take_stack() noexcept {
    FiberStack stack = _stack;
    _stack = {};
    _context = nullptr;
    _caller = nullptr;
    _finished = false;
    return stack;
}

}  // namespace shardloop::detail
