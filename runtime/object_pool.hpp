#pragma once

// A per-thread cache of freed blocks of one size, for the objects the loop
// allocates on every call (handles, timer handles). Each block is an
// ordinary heap allocation, so a block freed on another thread, or after the
// thread's cache is gone, is simply returned to the heap.

#include <cstddef>
#include <new>

#include "runtime/sanitizers.hpp"

namespace shardloop::detail {

#if defined(SHARDLOOP_ASAN) || defined(SHARDLOOP_TSAN)
inline constexpr bool pool_enabled = false;  // let the sanitizers see every free
#else
inline constexpr bool pool_enabled = true;
#endif

template <std::size_t Size>
class BlockCache {
public:
    static void* allocate() {
        if constexpr (pool_enabled) {
            BlockCache& cache = instance();
            if (cache._head != nullptr) {
                Node* node = cache._head;
                cache._head = node->next;
                --cache._count;
                return node;
            }
        }
        return ::operator new(Size);
    }

    static void deallocate(void* block) noexcept {
        if constexpr (pool_enabled) {
            if (!t_dead) {
                BlockCache& cache = instance();
                if (cache._count < max_cached) {
                    auto* node = static_cast<Node*>(block);
                    node->next = cache._head;
                    cache._head = node;
                    ++cache._count;
                    return;
                }
            }
        }
        ::operator delete(block);
    }

private:
    struct Node {
        Node* next;
    };
    static constexpr std::size_t max_cached = 4096;

    static BlockCache& instance() {
        thread_local BlockCache cache;
        return cache;
    }

    ~BlockCache() {
        t_dead = true;
        while (_head != nullptr) {
            Node* next = _head->next;
            ::operator delete(_head);
            _head = next;
        }
    }

    // Set once this thread's cache is destroyed: later frees (from other
    // thread_local destructors) go straight to the heap.
    static inline thread_local bool t_dead = false;

    Node* _head = nullptr;
    std::size_t _count = 0;
};

// Blocks of any size, cached in a few size classes (for futures and tasks,
// whose size depends on the result and function types); larger ones go to
// the heap directly.
struct SizeClassPool {
    static void* allocate(std::size_t size) {
        if (size <= 128) {
            return BlockCache<128>::allocate();
        }
        if (size <= 256) {
            return BlockCache<256>::allocate();
        }
        if (size <= 512) {
            return BlockCache<512>::allocate();
        }
        return ::operator new(size);
    }
    static void deallocate(void* block, std::size_t size) noexcept {
        if (size <= 128) {
            BlockCache<128>::deallocate(block);
        } else if (size <= 256) {
            BlockCache<256>::deallocate(block);
        } else if (size <= 512) {
            BlockCache<512>::deallocate(block);
        } else {
            ::operator delete(block);
        }
    }
};

// Gives a class pooled operator new/delete.
template <class T>
struct Pooled {
    static void* operator new(std::size_t size) {
        return size == sizeof(T) ? BlockCache<sizeof(T)>::allocate() : ::operator new(size);
    }
    static void operator delete(void* p, std::size_t size) noexcept {
        if (size == sizeof(T)) {
            BlockCache<sizeof(T)>::deallocate(p);
        } else {
            ::operator delete(p);
        }
    }
};

}  // namespace shardloop::detail
