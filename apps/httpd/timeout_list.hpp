#pragma once

// TimeoutList: the deadlines of one shard's connections, in one intrusive
// list, for the idle and stalled-request timeouts.
//
// Every deadline is "now + the idle timeout", and the clock only moves
// forward, so a node refreshed goes to the back and the list stays sorted
// by deadline without a heap: a refresh is an unlink and an append (a few
// pointer writes, no allocation), and the expired nodes are always at the
// front. One timer per shard, armed for the front's deadline, finds them
// (libev's documentation describes the same trick for equal timeouts).

#include <cstddef>

namespace shardloop::httpd {

class TimeoutList {
public:
    class Node {
    public:
        Node() = default;
        Node(const Node&) = delete;
        Node& operator=(const Node&) = delete;

        bool linked() const noexcept { return _linked; }
        double deadline() const noexcept { return _deadline; }

    private:
        friend class TimeoutList;
        Node* _prev = nullptr;
        Node* _next = nullptr;
        double _deadline = 0;
        bool _linked = false;
    };

    TimeoutList() = default;
    TimeoutList(const TimeoutList&) = delete;
    TimeoutList& operator=(const TimeoutList&) = delete;

    // (Re)inserts `node` at the back with `deadline`, which must not be
    // earlier than the back's (the list's order relies on it).
    void push_back(Node& node, double deadline) noexcept {
        remove(node);
        node._deadline = deadline;
        node._prev = _tail;
        node._next = nullptr;
        if (_tail != nullptr) {
            _tail->_next = &node;
        } else {
            _head = &node;
        }
        _tail = &node;
        node._linked = true;
        ++_size;
    }

    // Unlinks `node` if it is linked.
    void remove(Node& node) noexcept {
        if (!node._linked) {
            return;
        }
        (node._prev != nullptr ? node._prev->_next : _head) = node._next;
        (node._next != nullptr ? node._next->_prev : _tail) = node._prev;
        node._prev = node._next = nullptr;
        node._linked = false;
        --_size;
    }

    Node* front() const noexcept { return _head; }
    bool empty() const noexcept { return _head == nullptr; }
    std::size_t size() const noexcept { return _size; }

    // Calls fn(node) for each node, front to back; fn may remove the node
    // it is given (and no other).
    template <class F>
    void for_each(F fn) {
        for (Node* node = _head; node != nullptr;) {
            Node* next = node->_next;
            fn(*node);
            node = next;
        }
    }

private:
    Node* _head = nullptr;
    Node* _tail = nullptr;
    std::size_t _size = 0;
};

}  // namespace shardloop::httpd
