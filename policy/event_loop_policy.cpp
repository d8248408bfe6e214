#include "policy/event_loop_policy.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>

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

std::shared_ptr<EventLoop> DefaultEventLoopPolicy::get_event_loop() {
    std::lock_guard lock(_mutex);
    ThreadSlot& slot = _slots[std::this_thread::get_id()];
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
    std::shared_ptr<EventLoop> previous;  // released outside the lock: closing it may take a while
    std::lock_guard lock(_mutex);
    ThreadSlot& slot = _slots[std::this_thread::get_id()];
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
        return running->shared_from_this();
    }
    return get_event_loop_policy()->get_event_loop();
}

void set_event_loop(std::shared_ptr<EventLoop> loop) {
    get_event_loop_policy()->set_event_loop(std::move(loop));
}

}  // namespace shardloop
