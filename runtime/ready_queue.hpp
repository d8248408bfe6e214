#pragma once

// The loop's ready queue: callbacks and task steps that run in the next
// batch, in FIFO order. A growable ring of pointers; no allocation once it
// has reached its working size.

#include <cstddef>
#include <memory>

#include "runtime/handle.hpp"

namespace shardloop::detail {

class ReadyQueue {
public:
    ReadyQueue()
        : _slots(std::make_unique<Runnable*[]>(initial_capacity)), _mask(initial_capacity - 1) {}

    bool empty() const noexcept { return _head == _tail; }
    std::size_t size() const noexcept { return _tail - _head; }

    void push(Runnable* item) {
        if (size() == _mask + 1) {
            grow();
        }
        _slots[_tail++ & _mask] = item;
    }

    Runnable* front() const noexcept { return _slots[_head & _mask]; }
    Runnable* pop() noexcept { return _slots[_head++ & _mask]; }

private:
    static constexpr std::size_t initial_capacity = 256;

    void grow() {
        std::size_t capacity = (_mask + 1) * 2;
        auto slots = std::make_unique<Runnable*[]>(capacity);
        std::size_t n = size();
        for (std::size_t i = 0; i < n; ++i) {
            slots[i] = _slots[(_head + i) & _mask];
        }
        _slots = std::move(slots);
        _mask = capacity - 1;
        _head = 0;
        _tail = n;
    }

    std::unique_ptr<Runnable*[]> _slots;
    std::size_t _mask;
    std::size_t _head = 0;  // both grow without wrapping; only their masked values index
    std::size_t _tail = 0;
};

}  // namespace shardloop::detail
