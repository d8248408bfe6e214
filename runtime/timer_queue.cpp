#include "runtime/timer_queue.hpp"

#include <algorithm>

namespace shardloop::detail {

void TimerQueue::push(TimerState* timer) {
    timer->add_ref();
    timer->scheduled = true;
    timer->sequence = _next_sequence++;
    _heap.push_back(timer);
    sift_up(_heap.size() - 1);
}

std::optional<int64_t> TimerQueue::next_deadline() {
    if (_heap.size() > min_scheduled_for_cleanup &&
        static_cast<double>(_cancelled) / static_cast<double>(_heap.size()) >
            min_cancelled_fraction) {
        remove_all_cancelled();
    } else {
        while (!_heap.empty() && _heap.front()->cancelled()) {
            --_cancelled;
            TimerState* timer = pop_top();
            timer->scheduled = false;
            timer->release();
        }
    }
    if (_heap.empty()) {
        return std::nullopt;
    }
    return _heap.front()->when_ns;
}

TimerState* TimerQueue::pop_due(int64_t end_ns) {
    if (_heap.empty() || _heap.front()->when_ns >= end_ns) {
        return nullptr;
    }
    TimerState* timer = pop_top();
    timer->scheduled = false;
    if (timer->cancelled()) {
        --_cancelled;
    }
    return timer;
}

void TimerQueue::clear() noexcept {
    for (TimerState* timer : _heap) {
        timer->scheduled = false;
        timer->release();
    }
    _heap.clear();
    _cancelled = 0;
}

void TimerQueue::remove_all_cancelled() {
    auto live_end = std::partition(_heap.begin(), _heap.end(),
                                   [](const TimerState* t) { return !t->cancelled(); });
    for (auto it = live_end; it != _heap.end(); ++it) {
        (*it)->scheduled = false;
        (*it)->release();
    }
    _heap.erase(live_end, _heap.end());
    _cancelled = 0;
    std::make_heap(_heap.begin(), _heap.end(),
                   [](const TimerState* a, const TimerState* b) { return earlier(b, a); });
}

TimerState* TimerQueue::pop_top() noexcept {
    TimerState* top = _heap.front();
    _heap.front() = _heap.back();
    _heap.pop_back();
    if (!_heap.empty()) {
        sift_down(0);
    }
    return top;
}

void TimerQueue::sift_up(std::size_t i) noexcept {
    TimerState* item = _heap[i];
    while (i > 0) {
        std::size_t parent = (i - 1) / 2;
        if (!earlier(item, _heap[parent])) {
            break;
        }
        _heap[i] = _heap[parent];
        i = parent;
    }
    _heap[i] = item;
}

void TimerQueue::sift_down(std::size_t i) noexcept {
    TimerState* item = _heap[i];
    std::size_t n = _heap.size();
    while (true) {
        std::size_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && earlier(_heap[child + 1], _heap[child])) {
            ++child;
        }
        if (!earlier(_heap[child], item)) {
            break;
        }
        _heap[i] = _heap[child];
        i = child;
    }
    _heap[i] = item;
}

}  // namespace shardloop::detail
