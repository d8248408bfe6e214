#pragma once

// Event loop policies (asyncio's AbstractEventLoopPolicy): which loop
// get_event_loop() returns on a thread. The default policy keeps one loop
// per thread, and creates it on first use on the main thread only, as
// asyncio does. policy/sharded_policy.hpp (the sharding layer) installs a
// policy whose loops are the shards'.

#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "runtime/event_loop.hpp"

namespace shardloop {

class AbstractEventLoopPolicy {
public:
    virtual ~AbstractEventLoopPolicy() = default;
    // The loop of the calling thread. Throws RuntimeError when there is none
    // and the policy will not create one.
    virtual std::shared_ptr<EventLoop> get_event_loop() = 0;
    // Sets (or, with nullptr, clears) the loop of the calling thread.
    virtual void set_event_loop(std::shared_ptr<EventLoop> loop) = 0;
    // A new loop, not yet set for any thread.
    virtual std::shared_ptr<EventLoop> new_event_loop() = 0;
};

// One loop per thread. Any thread.
class DefaultEventLoopPolicy : public AbstractEventLoopPolicy {
public:
    // On the main thread, when no loop was ever set, creates and sets one;
    // elsewhere throws RuntimeError("There is no current event loop in
    // thread ...").
    std::shared_ptr<EventLoop> get_event_loop() override;
    void set_event_loop(std::shared_ptr<EventLoop> loop) override;
    std::shared_ptr<EventLoop> new_event_loop() override;

    DefaultEventLoopPolicy();

    // The per-thread loops; a thread's entry goes when the thread exits, as
    // asyncio's threading.local does (thread ids are reused).
    struct Slots;

private:
    std::shared_ptr<Slots> _slots;
};

// The process's policy; a DefaultEventLoopPolicy until another is set. Any thread.
std::shared_ptr<AbstractEventLoopPolicy> get_event_loop_policy();
// Installs `policy` (nullptr: back to a new default policy). Any thread.
void set_event_loop_policy(std::shared_ptr<AbstractEventLoopPolicy> policy);

// The running loop of this thread if there is one, else the policy's loop
// for this thread (asyncio.get_event_loop()).
std::shared_ptr<EventLoop> get_event_loop();
// The policy's set_event_loop for this thread.
void set_event_loop(std::shared_ptr<EventLoop> loop);

}  // namespace shardloop
