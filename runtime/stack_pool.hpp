#pragma once

// Fiber stacks: mmap'd, with a PROT_NONE guard page below each so that an
// overflow faults at once instead of corrupting a neighbour, and pooled per
// loop so that creating a task does not cost an mmap.

#include <cstddef>
#include <vector>

namespace shardloop::detail {

struct FiberStack {
    void* base = nullptr;   // lowest address of the mapping (the guard page)
    std::size_t size = 0;   // the whole mapping, guard page included
    std::size_t guard = 0;  // bytes of guard at `base`

    void* top() const noexcept { return static_cast<char*>(base) + size; }
    void* bottom() const noexcept { return static_cast<char*>(base) + guard; }
    std::size_t usable() const noexcept { return size - guard; }
    explicit operator bool() const noexcept { return base != nullptr; }
};

class StackPool {
public:
    // `stack_size` is the usable size, rounded up to whole pages. At most
    // `max_cached` released stacks are kept for reuse.
    explicit StackPool(std::size_t stack_size, std::size_t max_cached = 256);
    ~StackPool();
    StackPool(const StackPool&) = delete;
    StackPool& operator=(const StackPool&) = delete;

    // A stack from the cache, or a new mapping. Throws std::system_error
    // (ENOMEM) when the mapping fails.
    FiberStack acquire();
    // Returns a stack for reuse (or unmaps it when the cache is full).
    void release(FiberStack stack) noexcept;

    std::size_t stack_size() const noexcept { return _usable; }
    std::size_t cached() const noexcept { return _cache.size(); }
    // Stacks handed out and not yet released.
    std::size_t in_use() const noexcept { return _in_use; }

private:
    std::size_t _usable;
    std::size_t _guard;
    std::size_t _max_cached;
    std::size_t _in_use = 0;
    std::vector<FiberStack> _cache;
};

}  // namespace shardloop::detail
