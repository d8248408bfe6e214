#pragma once

// A one-shot gate that jobs on other threads block on, for the executor
// tests. The wait gives up after ten seconds so that a failing test ends
// instead of hanging in a join.

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace shardloop::testing {

class Gate {
public:
    void open() {
        std::lock_guard lock(_mutex);
        _open = true;
        _opened.notify_all();
    }
    // True once open; false when ten seconds passed first.
    bool wait() {
        std::unique_lock lock(_mutex);
        return _opened.wait_for(lock, std::chrono::seconds(10), [this] { return _open; });
    }

private:
    std::mutex _mutex;
    std::condition_variable _opened;
    bool _open = false;
};

}  // namespace shardloop::testing
