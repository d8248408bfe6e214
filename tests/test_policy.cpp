// Event loop policies (policy/event_loop_policy.cpp) and the module-level
// get_event_loop / set_event_loop / get_running_loop. Cases ported from
// CPython 3.13's Lib/test/test_asyncio/test_events.py (PolicyTests and
// GetEventLoopTestsMixin) name the original. Every test puts the default
// policy back and releases the loops a policy created, so the fixture's fd
// check also covers them.

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using shardloop::testing::LoopTest;

class TestError : public std::runtime_error {
public:
    TestError() : std::runtime_error("TestError") {}
};

// The Policy of test_get_event_loop_returns_running_loop: its
// get_event_loop always throws, so a loop that comes back can only be the
// running one.
class ThrowingPolicy : public DefaultEventLoopPolicy {
public:
    std::shared_ptr<EventLoop> get_event_loop() override { throw TestError(); }
};

// Runs `fn` on a new std::thread and returns the message of the
// RuntimeError it threw ("" when it threw nothing).
template <class F>
std::string runtime_error_on_thread(F fn) {
    std::string message;
    std::thread([&] {
        try {
            fn();
        } catch (const RuntimeError& e) {
            message = e.what();
        }
    }).join();
    return message;
}

class PolicyTest : public LoopTest {
protected:
    void SetUp() override {
        LoopTest::SetUp();
        set_event_loop_policy(nullptr);
    }
    void TearDown() override {
        // Drops the policy and, with it, any loop it still holds, before the
        // fixture counts the open descriptors.
        set_event_loop_policy(nullptr);
        LoopTest::TearDown();
    }
};

// Ports PolicyTests.test_get_event_loop_policy: the process's policy is a
// DefaultEventLoopPolicy, the same object every time.
TEST_F(PolicyTest, GetEventLoopPolicyReturnsSameDefaultPolicy) {
    std::shared_ptr<AbstractEventLoopPolicy> policy = get_event_loop_policy();

    ASSERT_NE(policy, nullptr);
    EXPECT_NE(dynamic_cast<DefaultEventLoopPolicy*>(policy.get()), nullptr);
    EXPECT_EQ(policy, get_event_loop_policy());
}

// Ports PolicyTests.test_set_event_loop_policy: the policy set is the one
// get_event_loop_policy returns.
TEST_F(PolicyTest, SetEventLoopPolicyInstallsThePolicy) {
    std::shared_ptr<AbstractEventLoopPolicy> old_policy = get_event_loop_policy();
    auto policy = std::make_shared<DefaultEventLoopPolicy>();

    set_event_loop_policy(policy);

    EXPECT_EQ(get_event_loop_policy(), policy);
    EXPECT_NE(get_event_loop_policy(), old_policy);
}

// asyncio.set_event_loop_policy(None) goes back to a (new) default policy.
TEST_F(PolicyTest, SetEventLoopPolicyNullRestoresADefaultPolicy) {
    auto custom = std::make_shared<ThrowingPolicy>();
    set_event_loop_policy(custom);

    set_event_loop_policy(nullptr);

    std::shared_ptr<AbstractEventLoopPolicy> policy = get_event_loop_policy();
    EXPECT_NE(policy, custom);
    EXPECT_NE(dynamic_cast<DefaultEventLoopPolicy*>(policy.get()), nullptr);
    EXPECT_EQ(dynamic_cast<ThrowingPolicy*>(policy.get()), nullptr);
}

// Ports PolicyTests.test_get_event_loop: on the main thread, with no loop
// ever set, the default policy creates a loop, sets it, and returns that
// same loop from then on.
TEST_F(PolicyTest, DefaultPolicyCreatesOneLoopOnMainThread) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();

    std::shared_ptr<EventLoop> created = policy->get_event_loop();

    ASSERT_NE(created, nullptr);
    EXPECT_FALSE(created->is_closed());
    EXPECT_EQ(policy->get_event_loop(), created);
    created->close();
    policy->set_event_loop(nullptr);
}

// Ports PolicyTests.test_get_event_loop_after_set_none: once
// set_event_loop(None) was called, get_event_loop does not create a loop.
TEST_F(PolicyTest, GetEventLoopAfterSetNoneThrows) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();
    policy->set_event_loop(nullptr);

    try {
        policy->get_event_loop();
        ADD_FAILURE() << "get_event_loop after set_event_loop(nullptr) did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("There is no current event loop"), std::string::npos)
            << e.what();
    }
}

// Ports PolicyTests.test_get_event_loop_thread: on a thread that is not the
// main thread, get_event_loop without a loop set throws.
TEST_F(PolicyTest, GetEventLoopOnOtherThreadWithoutLoopThrows) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();

    std::string message = runtime_error_on_thread([&] { policy->get_event_loop(); });

    EXPECT_NE(message.find("There is no current event loop"), std::string::npos) << message;
}

// The module-level get_event_loop on another thread goes through the
// installed policy and throws the same way.
TEST_F(PolicyTest, ModuleGetEventLoopOnOtherThreadWithoutLoopThrows) {
    std::string message = runtime_error_on_thread([] { get_event_loop(); });

    EXPECT_NE(message.find("There is no current event loop"), std::string::npos) << message;
}

// Ports PolicyTests.test_new_event_loop: new_event_loop returns a new loop
// each time, set for no thread.
TEST_F(PolicyTest, NewEventLoopReturnsDistinctUnsetLoops) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();

    std::shared_ptr<EventLoop> first = policy->new_event_loop();
    std::shared_ptr<EventLoop> second = policy->new_event_loop();

    ASSERT_NE(first, nullptr);
    ASSERT_NE(second, nullptr);
    EXPECT_NE(first, second);
    EXPECT_FALSE(first->is_closed());
    std::string message = runtime_error_on_thread([&] { policy->get_event_loop(); });
    EXPECT_NE(message.find("There is no current event loop"), std::string::npos) << message;
    first->close();
    second->close();
}

// Ports PolicyTests.test_set_event_loop: the loop set last is the one
// get_event_loop returns on this thread.
TEST_F(PolicyTest, SetEventLoopThenGetEventLoopReturnsIt) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();
    std::shared_ptr<EventLoop> old_loop = policy->new_event_loop();
    policy->set_event_loop(old_loop);

    std::shared_ptr<EventLoop> new_loop = policy->new_event_loop();
    policy->set_event_loop(new_loop);

    EXPECT_EQ(policy->get_event_loop(), new_loop);
    EXPECT_NE(policy->get_event_loop(), old_loop);
    new_loop->close();
    old_loop->close();
    policy->set_event_loop(nullptr);
}

// The module-level set_event_loop / get_event_loop use the installed
// policy: what this thread set is what it gets.
TEST_F(PolicyTest, ModuleSetEventLoopThenGetEventLoopReturnsIt) {
    set_event_loop(loop);

    EXPECT_EQ(get_event_loop(), loop);
    EXPECT_EQ(get_event_loop_policy()->get_event_loop(), loop);
    set_event_loop(nullptr);
}

// Loops are per thread: a loop set on another thread is that thread's, and
// neither sees the other's.
TEST_F(PolicyTest, EachThreadHasItsOwnLoop) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();
    std::shared_ptr<EventLoop> main_loop = policy->new_event_loop();
    policy->set_event_loop(main_loop);
    std::shared_ptr<EventLoop> thread_loop = policy->new_event_loop();
    std::shared_ptr<EventLoop> seen_on_thread;

    std::thread([&] {
        policy->set_event_loop(thread_loop);
        seen_on_thread = policy->get_event_loop();
        policy->set_event_loop(nullptr);
    }).join();

    EXPECT_EQ(seen_on_thread, thread_loop);
    EXPECT_EQ(policy->get_event_loop(), main_loop);
    main_loop->close();
    thread_loop->close();
    policy->set_event_loop(nullptr);
}

// Ports GetEventLoopTestsMixin.test_get_event_loop_returns_running_loop:
// inside a running loop, get_event_loop returns it without asking the
// policy (whose get_event_loop here throws); get_running_loop returns it
// too; outside, get_running_loop throws "no running event loop".
TEST_F(PolicyTest, GetEventLoopInsideRunningLoopReturnsRunningLoop) {
    set_event_loop_policy(std::make_shared<ThrowingPolicy>());
    EXPECT_THROW(get_event_loop(), TestError);
    try {
        get_running_loop();
        ADD_FAILURE() << "get_running_loop outside a running loop did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("no running"), std::string::npos) << e.what();
    }
    EXPECT_EQ(get_running_loop_or_null(), nullptr);

    std::shared_ptr<EventLoop> in_callback;
    EventLoop* running_in_callback = nullptr;
    loop->call_soon([&] {
        in_callback = get_event_loop();
        running_in_callback = &get_running_loop();
        loop->stop();
    });
    loop->run_forever();
    std::shared_ptr<EventLoop> in_task = loop->run_until_complete([] { return get_event_loop(); });

    EXPECT_EQ(in_callback, loop);
    EXPECT_EQ(running_in_callback, loop.get());
    EXPECT_EQ(in_task, loop);
    EXPECT_THROW(get_event_loop(), TestError);
    EXPECT_THROW(get_running_loop(), RuntimeError);
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
}

// Ports test_get_event_loop_returns_running_loop2: with the default policy
// and another loop set for the thread, the running loop still wins; once
// set_event_loop(None) was called, get_event_loop outside throws "no
// current event loop".
TEST_F(PolicyTest, RunningLoopWinsOverLoopSetForThread) {
    std::shared_ptr<EventLoop> other = get_event_loop_policy()->new_event_loop();
    set_event_loop(other);

    std::shared_ptr<EventLoop> in_callback;
    loop->call_soon([&] {
        in_callback = get_event_loop();
        loop->stop();
    });
    loop->run_forever();

    EXPECT_EQ(in_callback, loop);
    EXPECT_EQ(get_event_loop(), other);
    set_event_loop(nullptr);
    try {
        get_event_loop();
        ADD_FAILURE() << "get_event_loop after set_event_loop(nullptr) did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("no current"), std::string::npos) << e.what();
    }
    other->close();
}

// get_running_loop outside any running loop throws RuntimeError("no running
// event loop"), also on a thread that never ran one.
TEST_F(PolicyTest, GetRunningLoopOutsideRunningLoopThrows) {
    try {
        get_running_loop();
        ADD_FAILURE() << "get_running_loop did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "no running event loop");
    }
    std::string message = runtime_error_on_thread([] { get_running_loop(); });
    EXPECT_EQ(message, "no running event loop");
}

// A loop set on a thread that has ended must not become the loop of a later
// thread: asyncio keeps it in a threading.local, which dies with its thread.
// glibc reuses a joined thread's descriptor, so a later std::thread usually
// gets the same std::thread::id; the test needs one that does.
TEST_F(PolicyTest, LoopSetOnEndedThreadIsNotSeenByLaterThread) {
    auto policy = std::make_shared<DefaultEventLoopPolicy>();
    std::shared_ptr<EventLoop> thread_loop = policy->new_event_loop();
    std::thread::id ended_id;
    std::thread([&] {
        policy->set_event_loop(thread_loop);
        ended_id = std::this_thread::get_id();
    }).join();

    bool reused = false;
    std::shared_ptr<EventLoop> seen;
    std::string message;
    for (int attempt = 0; attempt < 50 && !reused; ++attempt) {
        std::thread([&] {
            if (std::this_thread::get_id() != ended_id) {
                return;
            }
            reused = true;
            try {
                seen = policy->get_event_loop();
            } catch (const RuntimeError& e) {
                message = e.what();
            }
        }).join();
    }
    thread_loop->close();
    if (!reused) {
        GTEST_SKIP() << "no later thread got the ended thread's id";
    }

    EXPECT_EQ(seen, nullptr) << "a new thread got the loop set by an ended thread";
    EXPECT_NE(message.find("There is no current event loop"), std::string::npos) << message;
}

}  // namespace
}  // namespace shardloop
