// SignalWatcher: a signalfd on the loop.

#include "signal_watcher.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace shardloop::httpd {

namespace {

sigset_t make_set(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int signal : signals) {
        sigaddset(&set, signal);
    }
    return set;
}

}  // namespace

void block_signals(std::initializer_list<int> signals) {
    sigset_t set = make_set(signals);
    if (int error = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0) {
        throw std::system_error(error, std::generic_category(), "pthread_sigmask");
    }
}

SignalWatcher::SignalWatcher(EventLoop& loop, std::initializer_list<int> signals) : _loop(loop) {
    sigset_t set = make_set(signals);
    _fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (_fd < 0) {
        throw std::system_error(errno, std::generic_category(), "signalfd");
    }
    _loop.add_reader(_fd, [this] { on_readable(); });
}

SignalWatcher::~SignalWatcher() {
    if (!_loop.is_closed()) {
        _loop.remove_reader(_fd);
    }
    ::close(_fd);
    if (_waiter.valid() && !_waiter.done()) {
        _waiter.cancel();
    }
}

Future<int> SignalWatcher::next() {
    _waiter = _loop.create_future<int>();
    if (!_received.empty()) {
        _waiter.set_result(_received.front());
        _received.pop_front();
    }
    return _waiter;
}

void SignalWatcher::on_readable() {
    signalfd_siginfo info{};
    while (::read(_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        int signal = static_cast<int>(info.ssi_signo);
        if (_waiter.valid() && !_waiter.done()) {
            _waiter.set_result(signal);
        } else {
            _received.push_back(signal);
        }
    }
}

}  // namespace shardloop::httpd
