// The cross-shard message fabric: sending, flushing, polling.

#include "policy/shard_mesh.hpp"

#include "runtime/event_loop.hpp"

namespace shardloop::detail {

ShardMesh::ShardMesh(unsigned shards, std::size_t ring_capacity) : _size(shards) {
    _rings.resize(static_cast<std::size_t>(shards) * shards);
    for (unsigned from = 0; from < shards; ++from) {
        for (unsigned to = 0; to < shards; ++to) {
            if (from != to) {
                _rings[from * shards + to] =
                    std::make_unique<SpscRing<ShardMessage>>(ring_capacity);
            }
        }
    }
    for (unsigned shard = 0; shard < shards; ++shard) {
        _ports.push_back(std::make_unique<ShardPort>(*this, shard));
    }
}

ShardPort::ShardPort(ShardMesh& mesh, unsigned id)
    : _mesh(mesh), _id(id), _overflow(mesh.size()), _is_written(mesh.size(), 0) {
    _written.reserve(mesh.size());
}

void ShardPort::send(unsigned to, ShardMessage message) {
    if (_mesh.closing.load(std::memory_order_relaxed)) {
        return;  // every loop has stopped: nothing would ever run it
    }
    std::deque<ShardMessage>& overflow = _overflow[to];
    // Behind a non-empty overflow list even when the ring has room again:
    // messages from one shard to another run in the order they were sent.
    if (!overflow.empty() || !_mesh.ring(_id, to).try_push(message)) {
        if (overflow.empty()) {
            ++_overflowing;
        }
        overflow.push_back(std::move(message));
    } else {
        mark_written(to);
    }
    _sent.store(_sent.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void ShardPort::move_overflow(unsigned to) {
    std::deque<ShardMessage>& overflow = _overflow[to];
    SpscRing<ShardMessage>& ring = _mesh.ring(_id, to);
    bool moved = false;
    while (!overflow.empty() && ring.try_push(overflow.front())) {
        overflow.pop_front();
        moved = true;
    }
    if (overflow.empty()) {
        --_overflowing;
    }
    if (moved) {
        mark_written(to);
    }
}

void ShardPort::flush() {
    if (_overflowing != 0) {
        for (unsigned to = 0; to < _overflow.size(); ++to) {
            if (!_overflow[to].empty()) {
                move_overflow(to);
            }
        }
    }
    for (unsigned to : _written) {
        _is_written[to] = 0;
        _mesh.ring(_id, to).publish();
        _mesh.port(to)._loop->inbox()->wake_if_sleeping();
    }
    _written.clear();
}

void ShardPort::run(ShardMessage& message) noexcept {
    try {
        message();
    } catch (...) {
        ExceptionContext context;
        context.message = "Exception in a cross-shard message";
        context.exception = std::current_exception();
        _loop->call_exception_handler(context);
    }
}

void ShardPort::poll() {
    if (!_stop_seen && _mesh.stop_requested.load(std::memory_order_relaxed)) [[unlikely]] {
        _stop_seen = true;  // once: the loop may run again to wind its tasks down
        _loop->stop();
    }
    std::size_t received = 0;
    for (unsigned from = 0; from < _mesh.size(); ++from) {
        if (from != _id) {
            received += _mesh.ring(from, _id).consume(
                [this](ShardMessage&& message) { run(message); }, SIZE_MAX);
        }
    }
    if (received != 0) {
        _received.store(_received.load(std::memory_order_relaxed) + received,
                        std::memory_order_relaxed);
    }
}

bool ShardPort::pending() {
    // With messages of ours still waiting for room, keep iterating: the
    // destination drains its ring without waking us.
    if (_overflowing != 0 ||
        (!_stop_seen && _mesh.stop_requested.load(std::memory_order_seq_cst))) {
        return true;
    }
    for (unsigned from = 0; from < _mesh.size(); ++from) {
        if (from != _id && !_mesh.ring(from, _id).empty_seq_cst()) {
            return true;
        }
    }
    return false;
}

void ShardPort::discard_all() noexcept {
    for (unsigned from = 0; from < _mesh.size(); ++from) {
        if (from != _id) {
            _mesh.ring(from, _id).consume([](ShardMessage&&) {}, SIZE_MAX);
        }
    }
    for (std::deque<ShardMessage>& overflow : _overflow) {
        overflow.clear();
    }
    _overflowing = 0;
    _written.clear();
    std::fill(_is_written.begin(), _is_written.end(), 0);
}

}  // namespace shardloop::detail
