#pragma once

// A source of work that a loop checks every iteration besides its own
// queues: the sharding layer's cross-shard queues (policy/shard_mesh.hpp).
// runtime/ only calls it; the layer that installs it implements it.

namespace shardloop::detail {

class LoopPoller {
public:
    virtual ~LoopPoller() = default;

    // Loop thread, at the start of every iteration: makes what this loop
    // sent during the last batch visible, and wakes the loops that sleep.
    virtual void flush() = 0;

    // Loop thread, once per iteration after I/O: runs what has arrived.
    virtual void poll() = 0;

    // Loop thread, after the loop has announced that it is going to sleep
    // (a sequentially consistent store): true when work has arrived that
    // poll() would run, in which case the loop does not block.
    virtual bool pending() = 0;
};

}  // namespace shardloop::detail
