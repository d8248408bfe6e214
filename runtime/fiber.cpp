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
