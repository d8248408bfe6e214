#pragma once

// A bounded lock-free single-producer, single-consumer ring: the queue one
// shard uses to send to one other shard. The producer fills slots privately
// and publishes them in batches (once per loop iteration), so the consumer
// finds many at once and streams through them, and the shared tail index
// crosses between the cores once per batch, not once per message. Each side
// keeps a private copy of the other side's index and rereads the shared one
// only when its copy says the ring is full (or empty).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

#include "runtime/sanitizers.hpp"

namespace shardloop::detail {

template <class T>
class SpscRing {
public:
    // `capacity` is rounded up to a power of two (at least 2).
    explicit SpscRing(std::size_t capacity) {
        if (capacity == 0 || capacity > (std::size_t{1} << 30)) {
            throw std::invalid_argument("SpscRing: capacity must be between 1 and 2^30");
        }
        std::size_t rounded = 2;
        while (rounded < capacity) {
            rounded *= 2;
        }
        _mask = rounded - 1;
        _slots = std::allocator<Slot>().allocate(rounded);
    }
    SpscRing(const SpscRing&) = delete;
    SpscRing& operator=(const SpscRing&) = delete;

    // Destroys what was never consumed; both sides must be done with the ring.
    ~SpscRing() {
        consume([](T&&) {}, SIZE_MAX);
        std::allocator<Slot>().deallocate(_slots, _mask + 1);
    }

    std::size_t capacity() const noexcept { return _mask + 1; }

    // Producer: queues `value`; the consumer sees it after the next
    // publish(). Returns false (and leaves `value` alone) when the ring is
    // full.
    bool try_push(T& value) noexcept(std::is_nothrow_move_constructible_v<T>) {
        uint64_t tail = _producer.tail;
        if (tail - _producer.cached_head > _mask) {
            _producer.cached_head = _head.load(std::memory_order_acquire);
            if (tail - _producer.cached_head > _mask) {
                return false;
            }
        }
        ::new (static_cast<void*>(&_slots[tail & _mask].value)) T(std::move(value));
        _producer.tail = tail + 1;
        return true;
    }

    // Producer: makes every value pushed so far visible to the consumer,
    // then a sequentially consistent fence: a producer that afterwards reads
    // whether the consumer sleeps (seq_cst) and a consumer that announces
    // its sleep (seq_cst) and then calls empty_seq_cst() cannot both miss
    // each other (Dekker's handshake). The fence touches no shared line,
    // where a seq_cst store of the tail would pull the tail's line back
    // from the consumer every time.
    void publish() noexcept {
#if SHARDLOOP_TSAN
        // ThreadSanitizer does not model fences; the seq_cst store is the
        // same handshake in a form it understands.
        _tail.store(_producer.tail, std::memory_order_seq_cst);
#else
        _tail.store(_producer.tail, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    }

    // Consumer: hands up to `max` values to fn(T&&), oldest first, and
    // frees their slots in one store. Returns how many it handed over. fn
    // must not throw.
    template <class F>
    std::size_t consume(F&& fn, std::size_t max) noexcept {
        uint64_t head = _consumer.head;
        if (head == _consumer.cached_tail) {
            _consumer.cached_tail = _tail.load(std::memory_order_acquire);
            if (head == _consumer.cached_tail) {
                return 0;
            }
        }
        uint64_t available = _consumer.cached_tail - head;
        std::size_t count = available < max ? static_cast<std::size_t>(available) : max;
        for (std::size_t i = 0; i < count; ++i) {
            T& value = *std::launder(reinterpret_cast<T*>(&_slots[(head + i) & _mask].value));
            fn(std::move(value));
            value.~T();
        }
        _consumer.head = head + count;
        _head.store(head + count, std::memory_order_release);
        return count;
    }

    // Consumer: whether nothing is queued, read sequentially consistent
    // (see publish).
    bool empty_seq_cst() const noexcept {
        return _tail.load(std::memory_order_seq_cst) == _consumer.head;
    }

private:
    static constexpr std::size_t line = 64;
    // A slot per cache line (at least): the consumer reading one slot never
    // shares a line with the producer filling the next.
    struct alignas(alignof(T) > line ? alignof(T) : line) Slot {
        unsigned char value[sizeof(T)];
    };

    // Shared indices, each on its own line; the private copies sit with the
    // side that uses them.
    alignas(line) std::atomic<uint64_t> _tail{0};
    alignas(line) std::atomic<uint64_t> _head{0};
    alignas(line) struct {
        uint64_t tail = 0;
        uint64_t cached_head = 0;
    } _producer;
    alignas(line) struct {
        uint64_t head = 0;
        uint64_t cached_tail = 0;
    } _consumer;
    alignas(line) Slot* _slots = nullptr;
    std::size_t _mask = 0;
};

}  // namespace shardloop::detail
