#pragma once

// SignalWatcher: signals as futures on a loop, through a signalfd watched
// with add_reader (the loop has no add_signal_handler yet). The signals
// must be blocked in every thread, which block_signals() does when called
// on the main thread before any other thread starts (threads inherit the
// mask): then none is delivered to a handler, and the signalfd receives
// them all.

#include <signal.h>

#include <deque>
#include <initializer_list>

#include "shardloop.hpp"

namespace shardloop::httpd {

// Blocks `signals` in the calling thread. Throws std::system_error.
void block_signals(std::initializer_list<int> signals);

class SignalWatcher {
public:
    // Watches `signals` (already blocked) on `loop`. Loop thread. Throws
    // std::system_error when the signalfd cannot be made.
    SignalWatcher(EventLoop& loop, std::initializer_list<int> signals);
    ~SignalWatcher();
    SignalWatcher(const SignalWatcher&) = delete;
    SignalWatcher& operator=(const SignalWatcher&) = delete;

    // The next signal received (at once if one is waiting). One waiter at a
    // time: a second call before the first is done replaces it.
    Future<int> next();

private:
    void on_readable();

    EventLoop& _loop;
    int _fd = -1;
    std::deque<int> _received;
    Future<int> _waiter;
};

}  // namespace shardloop::httpd
