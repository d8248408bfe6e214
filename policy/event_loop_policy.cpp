#include "policy/event_loop_policy.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>
#include <vector>

namespace shardloop {

namespace {

bool on_main_thread() { return syscall(SYS_gettid) == getpid(); }

std::mutex& policy_mutex() {
    static std::mutex mutex;
    return mutex;
}

std::shared_ptr<AbstractEventLoopPolicy>& policy_slot() {
    static std::shared_ptr<AbstractEventLoopPolicy> policy;
    return policy;
}

}  // namespace

struct DefaultEventLoopPolicy::Slots {
    struct ThreadSlot {
        std::shared_ptr<EventLoop> loop;
        bool set_called = false;
    };
    std::mutex mutex;
    std::unordered_map<std::thread::id, ThreadSlot> by_thread;

    // The calling thread's slot (mutex held). The first time a thread gets
    // one, it arranges for the slot to go when the thread exits.
    ThreadSlot& mine(const std::shared_ptr<Slots>& self);
};

namespace {

// Erases this thread's slot from every policy it used, at thread exit.
struct ThreadExitGuard {
    std::vector<std::weak_ptr<DefaultEventLoopPolicy::Slots>> policies;
    ~ThreadExitGuard() {
        for (auto& weak : policies) {
            if (auto slots = weak.lock()) {
                std::shared_ptr<EventLoop> loop;  // released outside the lock
                std::lock_guard lock(slots->mutex);
                auto it = slots->by_thread.find(std::this_thread::get_id());
                if (it != slots->by_thread.end()) {
                    loop = std::move(it->second.loop);
                    slots->by_thread.erase(it);
                }
            }
        }
    }
};

thread_local ThreadExitGuard t_exit_guard;

}  // namespace

DefaultEventLoopPolicy::Slots::ThreadSlot& DefaultEventLoopPolicy::Slots::mine(
    const std::shared_ptr<Slots>& self) {
    auto [it, inserted] = by_thread.try_emplace(std::this_thread::get_id());
    if (inserted) {
        t_exit_guard.policies.push_back(self);
    }
    return it->second;
}

DefaultEventLoopPolicy::DefaultEventLoopPolicy() : _slots(std::make_shared<Slots>()) {}

std::shared_ptr<EventLoop> DefaultEventLoopPolicy::get_event_loop() {
    std::lock_guard lock(_slots->mutex);
    Slots::ThreadSlot& slot = _slots->mine(_slots);
    if (!slot.loop && !slot.set_called && on_main_thread()) {
        slot.loop = shardloop::new_event_loop();
        slot.set_called = true;
    }
    if (!slot.loop) {
        std::ostringstream text;
        text << "There is no current event loop in thread " << std::this_thread::get_id() << ".";
        throw RuntimeError(text.str());
    }
    return slot.loop;
}

void DefaultEventLoopPolicy::set_event_loop(std::shared_ptr<EventLoop> loop) {
    std::shared_ptr<EventLoop> previous;  // released after the lock: closing it may take a while
    std::lock_guard lock(_slots->mutex);
    Slots::ThreadSlot& slot = _slots->mine(_slots);
    slot.set_called = true;
    previous = std::exchange(slot.loop, std::move(loop));
}

std::shared_ptr<EventLoop> DefaultEventLoopPolicy::new_event_loop() {
    return shardloop::new_event_loop();
}

std::shared_ptr<AbstractEventLoopPolicy> get_event_loop_policy() {
    std::lock_guard lock(policy_mutex());
    if (!policy_slot()) {
        policy_slot() = std::make_shared<DefaultEventLoopPolicy>();
    }
    return policy_slot();
}

void set_event_loop_policy(std::shared_ptr<AbstractEventLoopPolicy> policy) {
    std::lock_guard lock(policy_mutex());
    policy_slot() = std::move(policy);
}

std::shared_ptr<EventLoop> get_event_loop() {
    if (EventLoop* running = get_running_loop_or_null()) {
        if (std::shared_ptr<EventLoop> owned = running->weak_from_this().lock()) {
            return owned;
        }
        // A loop not owned by a shared_ptr: hand out a non-owning pointer.
        return std::shared_ptr<EventLoop>(std::shared_ptr<EventLoop>(), running);
    }
    return get_event_loop_policy()->get_event_loop();
}

void set_event_loop(std::shared_ptr<EventLoop> loop) {
    get_event_loop_policy()->set_event_loop(std::move(loop));
}

}  // namespace shardloop
