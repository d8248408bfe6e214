#pragma once

// An intrusive multi-producer, single-consumer queue (Dmitry Vyukov's
// design): producers on any thread push with one atomic exchange; only the
// loop thread pops. It never allocates and never blocks.

#include <atomic>

#include "runtime/handle.hpp"

namespace shardloop::detail {

class MpscQueue {
public:
    MpscQueue() = default;
    MpscQueue(const MpscQueue&) = delete;
    MpscQueue& operator=(const MpscQueue&) = delete;

    // Any thread. The exchange is sequentially consistent: the loop's
    // "going to sleep" handshake (see EventLoop::run_once) relies on it.
    void push(MpscNode* node) noexcept {
        node->mpsc_next.store(nullptr, std::memory_order_relaxed);
        MpscNode* prev = _tail.exchange(node, std::memory_order_seq_cst);
        prev->mpsc_next.store(node, std::memory_order_release);
    }

    // Loop thread. Returns nullptr when empty, or when a producer is between
    // its exchange and its link: that node is returned by a later pop.
    MpscNode* pop() noexcept {
        MpscNode* head = _head;
        MpscNode* next = head->mpsc_next.load(std::memory_order_acquire);
        if (head == &_stub) {
            if (next == nullptr) {
                return nullptr;
            }
            _head = next;
            head = next;
            next = next->mpsc_next.load(std::memory_order_acquire);
        }
        if (next != nullptr) {
            _head = next;
            return head;
        }
        if (head != _tail.load(std::memory_order_acquire)) {
            return nullptr;
        }
        push(&_stub);
        next = head->mpsc_next.load(std::memory_order_acquire);
        if (next != nullptr) {
            _head = next;
            return head;
        }
        return nullptr;
    }

    // Loop thread. False when some producer has pushed (or is pushing) a
    // node that pop() has not returned yet.
    bool empty() const noexcept {
        return _head == &_stub && _tail.load(std::memory_order_seq_cst) == &_stub;
    }

private:
    MpscNode _stub;
    MpscNode* _head = &_stub;
    std::atomic<MpscNode*> _tail{&_stub};
};

}  // namespace shardloop::detail
