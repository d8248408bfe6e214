#pragma once

// The loop's scheduled callbacks: a binary min-heap of timer handles ordered
// by deadline (ties in scheduling order). Cancelled timers stay in the heap
// until they reach its top or until they are too many, as in asyncio's
// BaseEventLoop, so that cancel() is O(1).

#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/handle.hpp"

namespace shardloop::detail {

class TimerQueue {
public:
    // asyncio's _MIN_SCHEDULED_TIMER_HANDLES and
    // _MIN_CANCELLED_TIMER_HANDLES_FRACTION: when more than this many timers
    // are scheduled and more than this fraction of them are cancelled, the
    // heap is rebuilt without them.
    static constexpr std::size_t min_scheduled_for_cleanup = 100;
    static constexpr double min_cancelled_fraction = 0.5;

    TimerQueue() = default;
    TimerQueue(const TimerQueue&) = delete;
    TimerQueue& operator=(const TimerQueue&) = delete;
    ~TimerQueue() { clear(); }

    // Takes a reference to `timer` and schedules it.
    void push(TimerState* timer);

    // A scheduled timer was cancelled.
    void note_cancelled() noexcept { ++_cancelled; }

    // Drops cancelled timers: all of them when they are too many, otherwise
    // those at the top. Then returns the earliest deadline, if any.
    std::optional<int64_t> next_deadline();

    // Pops the earliest timer if its deadline is before `end_ns`; the
    // caller receives the heap's reference.
    TimerState* pop_due(int64_t end_ns);

    // Releases every timer.
    void clear() noexcept;

    std::size_t size() const noexcept { return _heap.size(); }
    std::size_t cancelled_count() const noexcept { return _cancelled; }

private:
    static bool earlier(const TimerState* a, const TimerState* b) noexcept {
        return a->when_ns != b->when_ns ? a->when_ns < b->when_ns : a->sequence < b->sequence;
    }
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    TimerState* pop_top() noexcept;
    void remove_all_cancelled();

    std::vector<TimerState*> _heap;
    std::size_t _cancelled = 0;
    uint64_t _next_sequence = 0;
};

}  // namespace shardloop::detail
