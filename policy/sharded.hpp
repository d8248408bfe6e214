#pragma once

// Sharded<T>: one instance of a service per shard, the way Seastar's
// sharded<T> builds per-core servers. Each instance is constructed, used
// and destroyed on its own shard, so T needs no locks; shards reach each
// other's instances only by messages (invoke_on, invoke_on_all,
// map_reduce).
//
//     Sharded<Counter> counters;            // outlives the shards' use of it
//     await(counters.start(100));           // Counter(100) on every shard
//     counters.local().add(1);              // this shard's instance
//     int total = await(counters.map_reduce(
//         [](Counter& c) { return c.value(); }, 0, std::plus<>()));
//     await(counters.stop());               // c.stop() where T has it, then ~Counter
//
// Every member must be called on a shard of a running ShardedPolicy, and
// start/stop/map_reduce from a task (they return tasks that await). A
// service still started when the shards stop is destroyed by each shard as
// it stops (without its stop()).

#include <algorithm>
#include <concepts>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "policy/sharded_policy.hpp"

namespace shardloop {

template <class T>
class Sharded {
public:
    Sharded() = default;
    Sharded(const Sharded&) = delete;
    Sharded& operator=(const Sharded&) = delete;
    // Stop it first, or let the shards stop: a shard that stops destroys
    // its instance itself, on its own thread. An instance still alive here
    // is reported and leaked rather than destroyed on the wrong thread.
    ~Sharded() {
        for (Slot& slot : _slots) {
            if (slot.instance) {
                detail::report_sharded_leak();
                (void)slot.instance.release();
            }
        }
    }

    // Constructs T(args...) on every shard (args are copied to each). The
    // task fails with the first constructor's exception, after destroying
    // the instances that were built. Throws RuntimeError at once when
    // already started.
    template <class... Args>
    Task<void> start(Args... args) {
        ShardedPolicy& policy = policy_here("Sharded::start");
        if (started()) {
            throw RuntimeError("Sharded::start: already started");
        }
        _slots = std::vector<Slot>(policy.shard_count());
        return get_running_loop().create_task([this, &policy, args...] {
            try {
                await(policy.invoke_on_all([this, args...] {
                    unsigned shard = this_shard_id();
                    _slots[shard].instance = std::make_unique<T>(args...);
                    detail::at_shard_exit(this, [this, shard] { _slots[shard].instance.reset(); });
                }));
            } catch (...) {
                await(destroy_all(policy));
                throw;
            }
        });
    }

    // Calls stop() on every instance whose type has one (awaiting the
    // future it returns, if any), then destroys every instance, each on
    // its shard. The task fails with the first stop() exception, after
    // the instances are destroyed all the same. Does nothing when not
    // started.
    Task<void> stop() {
        ShardedPolicy& policy = policy_here("Sharded::stop");
        return get_running_loop().create_task([this, &policy] {
            if (!started()) {
                return;
            }
            std::exception_ptr error;
            try {
                await(policy.invoke_on_all([this] { return stop_instance(local()); }));
            } catch (...) {
                error = std::current_exception();
            }
            await(destroy_all(policy));
            if (error) {
                std::rethrow_exception(error);
            }
        });
    }

    // Whether an instance lives on some shard. Not while start() or stop()
    // is under way.
    bool started() const noexcept {
        return std::any_of(_slots.begin(), _slots.end(),
                           [](const Slot& slot) { return slot.instance != nullptr; });
    }

    // This shard's instance. Throws RuntimeError when there is none.
    T& local() {
        unsigned shard = this_shard_id();
        if (shard >= _slots.size() || !_slots[shard].instance) {
            throw RuntimeError("Sharded::local: no instance on shard " + std::to_string(shard) +
                               " (not started)");
        }
        return *_slots[shard].instance;
    }

    // Runs fn(instance) on `shard`; the future has fn's result.
    template <class F>
    auto invoke_on(unsigned shard, F fn) {
        return policy_here("Sharded::invoke_on")
            .submit_to(shard, [this, fn = std::move(fn)]() mutable { return fn(local()); });
    }

    // Runs fn(instance) on every shard; done when all are.
    template <class F>
    Future<void> invoke_on_all(F fn) {
        return policy_here("Sharded::invoke_on_all").invoke_on_all([this, fn] {
            return fn(local());
        });
    }

    // reduce(...reduce(reduce(initial, mapper(instance 0)), mapper(instance 1))...),
    // the mappers running on their shards, the reductions on this one.
    template <class Mapper, class R, class Reducer>
    Task<R> map_reduce(Mapper mapper, R initial, Reducer reduce) {
        ShardedPolicy& policy = policy_here("Sharded::map_reduce");
        return get_running_loop().create_task([this, &policy, mapper, initial, reduce]() mutable {
            using M = typename detail::AwaitedType<std::invoke_result_t<Mapper&, T&>>::type;
            std::vector<Future<M>> parts;
            for (unsigned shard = 0; shard < policy.shard_count(); ++shard) {
                parts.push_back(
                    policy.submit_to(shard, [this, mapper]() mutable { return mapper(local()); }));
            }
            R result = std::move(initial);
            for (Future<M>& part : parts) {
                result = reduce(std::move(result), await(part));
            }
            return result;
        });
    }

private:
    // Apart, so that shards writing their own slots never share a cache line.
    struct alignas(64) Slot {
        std::unique_ptr<T> instance;
    };

    static ShardedPolicy& policy_here(const char* what) {
        return static_cast<ShardedPolicy&>(*detail::current_shard_or_throw(what).policy);
    }

    static auto stop_instance(T& instance) {
        if constexpr (requires { instance.stop(); }) {
            return instance.stop();
        }
    }

    Future<void> destroy_all(ShardedPolicy& policy) {
        return get_running_loop().create_task([this, &policy] {
            await(policy.invoke_on_all([this] {
                detail::cancel_at_shard_exit(this);
                _slots[this_shard_id()].instance.reset();
            }));
            _slots.clear();
        });
    }

    std::vector<Slot> _slots;  // sized once by start(); slot i touched only on shard i
};

}  // namespace shardloop
