#include "runtime/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/errors.hpp"
#include "runtime/sanitizers.hpp"

#if defined(SHARDLOOP_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace shardloop::detail {

namespace {

std::size_t page_size() {
    static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return size;
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

}  // namespace

StackPool::StackPool(std::size_t stack_size, std::size_t max_cached)
    : _usable(round_up(stack_size, page_size())), _guard(page_size()), _max_cached(max_cached) {
    _cache.reserve(_max_cached);  // release() is noexcept: it must never allocate
}

StackPool::~StackPool() {
    for (FiberStack& stack : _cache) {
        munmap(stack.base, stack.size);
    }
}

FiberStack StackPool::acquire() {
    ++_in_use;
    if (!_cache.empty()) {
        FiberStack stack = _cache.back();
        _cache.pop_back();
        return stack;
    }
    std::size_t size = _usable + _guard;
    // MAP_NORESERVE: a stack costs memory only for the pages a task touches.
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        int error = errno;
        --_in_use;
        throw_errno(-error, "mmap (fiber stack)");
    }
    if (mprotect(base, _guard, PROT_NONE) != 0) {
        int error = errno;
        munmap(base, size);
        --_in_use;
        throw_errno(-error, "mprotect (fiber stack guard page)");
    }
    return FiberStack{base, size, _guard};
}

void StackPool::release(FiberStack stack) noexcept {
    --_in_use;
#if defined(SHARDLOOP_ASAN)
    // Frames of the fiber that used this stack may have left poisoned
    // redzones behind; the next fiber must start from clean memory.
    ASAN_UNPOISON_MEMORY_REGION(stack.bottom(), stack.usable());
#endif
    if (_cache.size() < _max_cached) {
        _cache.push_back(stack);
    } else {
        munmap(stack.base, stack.size);
    }
}

}  // namespace shardloop::detail
