#pragma once

// The cross-shard message fabric: one SpscRing per ordered pair of shards,
// and each shard's end of it (ShardPort), installed in the shard's loop as
// its poller. A message is a callback that runs on the destination shard.
//
// Sending never blocks and never drops: a message goes into the ring, or,
// when the ring is full, into the sender's overflow list for that
// destination, which later iterations move into the ring in order. Once per
// iteration, at the start of the next one, the sender publishes the rings
// it wrote to and wakes the destinations that sleep: a busy destination
// costs no system call, a sleeping one costs one wake however many
// messages it was sent.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "policy/spsc_ring.hpp"
#include "runtime/callback.hpp"
#include "runtime/loop_poller.hpp"

namespace shardloop {
class EventLoop;
}

namespace shardloop::detail {

using ShardMessage = Callback<void()>;

class ShardMesh;

class ShardPort final : public LoopPoller {
public:
    ShardPort(ShardMesh& mesh, unsigned id);

    unsigned id() const noexcept { return _id; }

    // This shard's loop; set on the shard's thread before any message flows.
    void attach(EventLoop& loop) noexcept { _loop = &loop; }

    // Loop thread: queues `message` to run on shard `to` (another shard).
    // Once the mesh is closing (every loop has stopped), the message is
    // destroyed instead.
    void send(unsigned to, ShardMessage message);

    // LoopPoller.
    void flush() override;
    void poll() override;
    bool pending() override;

    // This shard's thread, after every loop has stopped: destroys what
    // others sent here and what this shard still held for others.
    void discard_all() noexcept;

    // Any thread.
    uint64_t messages_sent() const noexcept { return _sent.load(std::memory_order_relaxed); }
    uint64_t messages_received() const noexcept {
        return _received.load(std::memory_order_relaxed);
    }

private:
    void run(ShardMessage& message) noexcept;
    void move_overflow(unsigned to);
    // Notes that the ring to `to` has unpublished messages, for flush().
    void mark_written(unsigned to) {
        if (_is_written[to] == 0) {
            _is_written[to] = 1;
            _written.push_back(to);
        }
    }

    ShardMesh& _mesh;
    unsigned _id;
    EventLoop* _loop = nullptr;
    // Per destination: messages that found the ring full, oldest first.
    std::vector<std::deque<ShardMessage>> _overflow;
    std::size_t _overflowing = 0;  // destinations whose overflow list is not empty
    bool _stop_seen = false;
    // Destinations written to since the last flush(), and a flag per one.
    std::vector<unsigned> _written;
    std::vector<uint8_t> _is_written;
    // Single writer (this shard), readers anywhere.
    std::atomic<uint64_t> _sent{0};
    std::atomic<uint64_t> _received{0};
};

class ShardMesh {
public:
    // `ring_capacity` messages per ordered pair (rounded up to a power of two).
    ShardMesh(unsigned shards, std::size_t ring_capacity);
    ShardMesh(const ShardMesh&) = delete;
    ShardMesh& operator=(const ShardMesh&) = delete;

    unsigned size() const noexcept { return _size; }
    ShardPort& port(unsigned shard) noexcept { return *_ports[shard]; }
    SpscRing<ShardMessage>& ring(unsigned from, unsigned to) noexcept {
        return *_rings[from * _size + to];
    }

    // Set once every loop has stopped: sends are dropped from then on.
    std::atomic<bool> closing{false};
    // Set by a stop request (any thread, or a signal handler): every port
    // stops its loop at its next poll.
    std::atomic<bool> stop_requested{false};

private:
    unsigned _size;
    std::vector<std::unique_ptr<SpscRing<ShardMessage>>> _rings;  // null on the diagonal
    std::vector<std::unique_ptr<ShardPort>> _ports;
};

}  // namespace shardloop::detail
