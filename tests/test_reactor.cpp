// The io_uring reactor backend (runtime/io_uring_reactor.cpp), driven
// through the Reactor interface the way the loop drives it: submit, wait,
// cancel, wake. Every test ends with no fd left open.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "runtime/io_uring_setup.hpp"
#include "runtime/reactor.hpp"
#include "support/leak_check.hpp"

namespace shardloop::detail {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using shardloop::testing::FdLeakCheck;

// An operation that records every completion it gets.
struct RecordingOp {
    IoCompletion completion{&RecordingOp::on_complete};
    int calls = 0;
    int result = INT_MIN;
    uint32_t flags = 0;

    static void on_complete(IoCompletion* self, int result, uint32_t flags) {
        auto* op = reinterpret_cast<RecordingOp*>(self);
        ++op->calls;
        op->result = result;
        op->flags = flags;
    }
};
static_assert(offsetof(RecordingOp, completion) == 0);

struct Pipe {
    int read_end = -1;
    int write_end = -1;

    Pipe() {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        read_end = fds[0];
        write_end = fds[1];
    }
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() {
        ::close(read_end);
        ::close(write_end);
    }
};

// Calls wait(-1) until `done` holds; fails (rather than hangs) after
// `max_waits` rounds. Returns the number of completions dispatched.
int wait_until(Reactor& reactor, const std::function<bool()>& done, int max_waits = 100'000) {
    int dispatched = 0;
    for (int i = 0; i < max_waits && !done(); ++i) {
        int result = reactor.wait(-1ns);
        EXPECT_GE(result, 0) << std::strerror(-result);
        if (result < 0) {
            break;
        }
        dispatched += result;
    }
    EXPECT_TRUE(done()) << "gave up after " << max_waits << " waits";
    return dispatched;
}

// Runs `body` in a forked child and returns its exit status (or -1 when it
// did not exit normally). The child reports only through _exit.
int run_in_child(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::_exit(body());
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

#if defined(__x86_64__)
constexpr uint32_t this_audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t this_audit_arch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t this_audit_arch = 0;
#endif

// Makes each of `syscalls` fail with `error` in this process from now on, the
// way a container's seccomp profile does. Returns false if it cannot.
bool refuse_syscalls(std::initializer_list<long> syscalls, int error) {
    if (this_audit_arch == 0) {
        return false;
    }
    std::vector<sock_filter> program = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, this_audit_arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
    };
    for (long nr : syscalls) {
        program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
        program.push_back(
            BPF_STMT(BPF_RET | BPF_K,
                     SECCOMP_RET_ERRNO | (static_cast<uint32_t>(error) & SECCOMP_RET_DATA)));
    }
    program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    sock_fprog filter{static_cast<unsigned short>(program.size()), program.data()};
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) == 0;
}

TEST(IoUringReactor, NopCompletesWithZero) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    RecordingOp nop;
    reactor->submit(IoRequest::nop(), &nop.completion);
    EXPECT_EQ(reactor->in_flight(), 1U);

    EXPECT_EQ(reactor->wait(-1ns), 1);
    EXPECT_EQ(nop.calls, 1);
    EXPECT_EQ(nop.result, 0);
    EXPECT_EQ(nop.flags, 0U);
    EXPECT_EQ(reactor->in_flight(), 0U);
}

TEST(IoUringReactor, WaitWithNothingInFlightReturnsAtOnce) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    auto start = Clock::now();
    EXPECT_EQ(reactor->wait(0ns), 0);
    EXPECT_LT(Clock::now() - start, 1s);
}

// The contract promises no system call at all, not just a quick return: in a
// child, io_uring_enter and io_uring_register are made to fail with an errno
// nothing else produces, and wait(0) must still return 0.
TEST(IoUringReactor, WaitWithNothingInFlightMakesNoSystemCall) {
    FdLeakCheck leak_check;
    int status = run_in_child([] {
        auto reactor = make_io_uring_reactor();
        if (!refuse_syscalls({__NR_io_uring_enter, __NR_io_uring_register}, ENOTRECOVERABLE)) {
            return 10;
        }
        if (reactor->wait(0ns) != 0) {
            return 11;
        }
        // The filter bites once there is something to submit.
        RecordingOp nop;
        reactor->submit(IoRequest::nop(), &nop.completion);
        return reactor->wait(0ns) == -ENOTRECOVERABLE ? 0 : 12;
    });
    if (status == 10) {
        GTEST_SKIP() << "cannot install a seccomp filter here";
    }
    EXPECT_EQ(status, 0) << "11: wait(0) did not return 0; 12: the filter did not apply";
}

TEST(IoUringReactor, FullSubmissionQueueIsFlushedAndNothingIsDropped) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor({.sq_entries = 8});
    std::vector<RecordingOp> nops(10'000);
    for (RecordingOp& nop : nops) {
        reactor->submit(IoRequest::nop(), &nop.completion);
    }
    EXPECT_EQ(reactor->in_flight(), nops.size());

    int dispatched = wait_until(*reactor, [&] { return reactor->in_flight() == 0; });
    EXPECT_EQ(dispatched, 10'000);
    for (const RecordingOp& nop : nops) {
        ASSERT_EQ(nop.calls, 1);
        ASSERT_EQ(nop.result, 0);
    }
}

// 1,000 nops through an 8-entry SQ complete while nobody reaps a 16-entry
// CQ: most of them wait in the kernel's overflow list, and must all arrive.
TEST(IoUringReactor, CompletionQueueOverflowLosesNothing) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor({.sq_entries = 8, .cq_entries = 16});
    std::vector<RecordingOp> nops(1'000);
    for (RecordingOp& nop : nops) {
        reactor->submit(IoRequest::nop(), &nop.completion);
    }

    int dispatched = 0;
    for (int i = 0; i < 10'000 && reactor->in_flight() != 0; ++i) {
        int result = reactor->wait(i % 2 == 0 ? 0ns : -1ns);
        ASSERT_GE(result, 0) << std::strerror(-result);
        dispatched += result;
    }
    EXPECT_EQ(reactor->in_flight(), 0U);
    EXPECT_EQ(dispatched, 1'000);
    for (const RecordingOp& nop : nops) {
        ASSERT_EQ(nop.calls, 1);
        ASSERT_EQ(nop.result, 0);
    }
}

TEST(IoUringReactor, TimeoutFiresNoSoonerThanAsked) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    RecordingOp timer;
    auto start = Clock::now();
    reactor->submit(IoRequest::timeout(50ms), &timer.completion);
    wait_until(*reactor, [&] { return timer.calls == 1; });
    auto elapsed = Clock::now() - start;

    EXPECT_EQ(timer.result, -ETIME);  // a pure timeout reports expiry as -ETIME
    EXPECT_GE(elapsed, 50ms);
    EXPECT_LT(elapsed, 5s);
    EXPECT_EQ(reactor->in_flight(), 0U);
}

TEST(IoUringReactor, WaitReturnsAfterItsTimeoutWithNoCompletions) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    RecordingOp far_timer;  // something in flight that will not finish
    reactor->submit(IoRequest::timeout(1h), &far_timer.completion);

    auto start = Clock::now();
    EXPECT_EQ(reactor->wait(50ms), 0);
    auto elapsed = Clock::now() - start;
    EXPECT_GE(elapsed, 50ms);
    EXPECT_LT(elapsed, 5s);

    start = Clock::now();
    EXPECT_EQ(reactor->wait(30ms), 0);  // with nothing of ours in flight either
    EXPECT_GE(Clock::now() - start, 30ms);

    reactor->cancel(&far_timer.completion);
    wait_until(*reactor, [&] { return far_timer.calls == 1; });
    EXPECT_EQ(far_timer.result, -ECANCELED);
}

// A 5 s timer stands guard: if wake() did not work, wait(-1) would return
// when the guard fires instead of hanging the test.
TEST(IoUringReactor, WakeFromAnotherThreadEndsWaitWithoutLimit) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    RecordingOp guard;
    reactor->submit(IoRequest::timeout(5s), &guard.completion);

    auto start = Clock::now();
    std::thread waker([&] {
        std::this_thread::sleep_for(50ms);
        reactor->wake();
    });
    EXPECT_EQ(reactor->wait(-1ns), 0);
    auto elapsed = Clock::now() - start;
    waker.join();
    EXPECT_EQ(guard.calls, 0) << "wait(-1) ended by the 5 s guard, not by wake()";
    EXPECT_LT(elapsed, 4s);

    // A wake() that comes before the wait makes that wait return too.
    reactor->wake();
    EXPECT_EQ(reactor->wait(-1ns), 0);
    EXPECT_EQ(guard.calls, 0);

    reactor->cancel(&guard.completion);
    wait_until(*reactor, [&] { return guard.calls == 1; });
    EXPECT_EQ(guard.result, -ECANCELED);
}

// A read whose buffer lives in a heap object that only its final completion
// may free, as the header asks of every owner.
struct PendingRead {
    IoCompletion completion{&PendingRead::on_complete};
    char buffer[64] = {};
    int* result = nullptr;
    bool* freed = nullptr;

    static void on_complete(IoCompletion* self, int result, uint32_t flags) {
        auto* read = reinterpret_cast<PendingRead*>(self);
        EXPECT_EQ(flags & io_flags::more, 0U);
        *read->result = result;
        *read->freed = true;
        delete read;
    }
};

TEST(IoUringReactor, CancelledReadEndsWithEcanceledBeforeItsBufferIsFreed) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    Pipe pipe;
    int result = INT_MIN;
    bool freed = false;
    auto* read = new PendingRead{.result = &result, .freed = &freed};
    reactor->submit(IoRequest::read(pipe.read_end, read->buffer, sizeof(read->buffer)),
                    &read->completion);

    EXPECT_EQ(reactor->wait(0ns), 0);  // the read is now parked in the kernel
    EXPECT_FALSE(freed);
    EXPECT_EQ(reactor->in_flight(), 1U);

    reactor->cancel(&read->completion);
    EXPECT_FALSE(freed);
    // Only the read's completion is dispatched: the cancel's own is swallowed.
    EXPECT_EQ(wait_until(*reactor, [&] { return freed; }), 1);
    EXPECT_EQ(result, -ECANCELED);
    EXPECT_EQ(reactor->in_flight(), 0U);
}

TEST(IoUringReactor, CancelQueuedWithItsTargetStillCancelsIt) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    Pipe pipe;
    char buffer[8];
    RecordingOp read;
    reactor->submit(IoRequest::read(pipe.read_end, buffer, sizeof(buffer)), &read.completion);
    reactor->cancel(&read.completion);  // both reach the kernel in one enter

    wait_until(*reactor, [&] { return read.calls == 1; });
    EXPECT_EQ(read.result, -ECANCELED);
    EXPECT_EQ(reactor->in_flight(), 0U);
}

TEST(IoUringReactor, PollReportsPollinOnceThePipeIsWritten) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    Pipe pipe;
    RecordingOp poll;
    reactor->submit(IoRequest::poll(pipe.read_end, POLLIN), &poll.completion);
    EXPECT_EQ(reactor->wait(0ns), 0);
    EXPECT_EQ(poll.calls, 0);

    ASSERT_EQ(::write(pipe.write_end, "x", 1), 1);
    wait_until(*reactor, [&] { return poll.calls == 1; });
    EXPECT_TRUE((poll.result & POLLIN) != 0) << poll.result;
    EXPECT_EQ(poll.flags & io_flags::more, 0U);
    EXPECT_EQ(reactor->in_flight(), 0U);
}

TEST(IoUringReactor, MultishotPollStaysArmedUntilCancelled) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    Pipe pipe;
    RecordingOp poll;
    reactor->submit(IoRequest::poll(pipe.read_end, POLLIN, /*multishot=*/true), &poll.completion);
    EXPECT_EQ(reactor->wait(0ns), 0);

    char byte;
    for (int round = 1; round <= 3; ++round) {
        ASSERT_EQ(::write(pipe.write_end, "x", 1), 1);
        wait_until(*reactor, [&] { return poll.calls == round; });
        EXPECT_TRUE((poll.result & POLLIN) != 0) << poll.result;
        EXPECT_NE(poll.flags & io_flags::more, 0U) << "round " << round;
        EXPECT_EQ(reactor->in_flight(), 1U);
        ASSERT_EQ(::read(pipe.read_end, &byte, 1), 1);  // empty again: next write wakes
    }

    reactor->cancel(&poll.completion);
    wait_until(*reactor, [&] { return poll.calls == 4; });
    EXPECT_EQ(poll.result, -ECANCELED);
    EXPECT_EQ(poll.flags & io_flags::more, 0U);
    EXPECT_EQ(reactor->in_flight(), 0U);
}

TEST(IoUringReactor, PipeWriteThenReadRoundTrips) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    Pipe pipe;
    const std::string message = "shardloop over io_uring";
    char buffer[64] = {};
    RecordingOp read;
    RecordingOp write;
    reactor->submit(IoRequest::read(pipe.read_end, buffer, sizeof(buffer)), &read.completion);
    reactor->submit(IoRequest::write(pipe.write_end, message.data(), message.size()),
                    &write.completion);

    EXPECT_EQ(wait_until(*reactor, [&] { return read.calls == 1 && write.calls == 1; }), 2);
    EXPECT_EQ(write.result, static_cast<int>(message.size()));
    ASSERT_EQ(read.result, static_cast<int>(message.size()));
    EXPECT_EQ(std::string(buffer, read.result), message);
}

// A handler that throws takes wait() with it, but the completions queued
// behind it are not lost: the next wait() delivers them.
TEST(IoUringReactor, ThrowingHandlerLeavesLaterCompletionsForTheNextWait) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    IoCompletion thrower{[](IoCompletion*, int, uint32_t) { throw std::runtime_error("boom"); }};
    RecordingOp first;
    RecordingOp second;
    reactor->submit(IoRequest::nop(), &thrower);
    reactor->submit(IoRequest::nop(), &first.completion);
    reactor->submit(IoRequest::nop(), &second.completion);

    EXPECT_THROW(reactor->wait(-1ns), std::runtime_error);
    EXPECT_EQ(first.calls, 0);
    EXPECT_EQ(reactor->in_flight(), 2U);
    EXPECT_EQ(wait_until(*reactor, [&] { return reactor->in_flight() == 0; }), 2);
    EXPECT_EQ(first.calls, 1);
    EXPECT_EQ(second.calls, 1);
}

TEST(IoUringReactor, NameListsTheSetupFlagsInUse) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    std::string name = reactor->name();
    EXPECT_EQ(name.rfind("io_uring (", 0), 0U) << name;
    ::testing::Test::RecordProperty("reactor_name", name);
    std::printf("reactor: %s\n", name.c_str());
}

TEST(IoUringReactor, WithoutSingleIssuerFallsBackAndWorks) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor({.single_issuer = false});
    std::string name = reactor->name();
    EXPECT_EQ(name.find("SINGLE_ISSUER"), std::string::npos) << name;
    EXPECT_EQ(name.find("DEFER_TASKRUN"), std::string::npos) << name;
    std::printf("reactor: %s\n", name.c_str());

    RecordingOp nop;
    reactor->submit(IoRequest::nop(), &nop.completion);
    EXPECT_EQ(reactor->wait(-1ns), 1);
    EXPECT_EQ(nop.result, 0);
}

// The ring is created disabled and bound to the thread that first flushes it,
// so a loop can be built on one thread and run on another.
TEST(IoUringReactor, RingBindsToTheThreadThatFirstUsesIt) {
    FdLeakCheck leak_check;
    auto reactor = make_io_uring_reactor();
    RecordingOp nop;
    int dispatched = -1;
    std::thread loop_thread([&] {
        reactor->submit(IoRequest::nop(), &nop.completion);
        dispatched = reactor->wait(-1ns);
    });
    loop_thread.join();
    EXPECT_EQ(dispatched, 1);
    EXPECT_EQ(nop.result, 0);
}

int read_io_uring_disabled_sysctl() {
    int fd = ::open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
    char value = '0';
    if (fd >= 0) {
        if (::read(fd, &value, 1) != 1) {
            value = '0';
        }
        ::close(fd);
    }
    return value - '0';
}

TEST(IoUringReactor, SetupRefusedBySeccompThrowsOneErrorNamingTheCause) {
    FdLeakCheck leak_check;
    if (read_io_uring_disabled_sysctl() != 0) {
        GTEST_SKIP() << "kernel.io_uring_disabled is set: the error would name the sysctl";
    }
    int status = run_in_child([] {
        if (!refuse_syscalls({__NR_io_uring_setup}, EPERM)) {
            return 10;
        }
        try {
            make_io_uring_reactor();
        } catch (const std::system_error& error) {
            std::string what = error.what();
            if (error.code() != std::errc::operation_not_permitted) {
                return 12;
            }
            const std::string prefix =
                "shardloop: cannot create an event loop: io_uring_setup failed (";
            if (what.rfind(prefix, 0) != 0 || what.find("seccomp") == std::string::npos ||
                what.find("io_uring_enter") == std::string::npos) {
                return 13;
            }
            return 0;
        }
        return 11;
    });
    if (status == 10) {
        GTEST_SKIP() << "cannot install a seccomp filter here";
    }
    EXPECT_EQ(status, 0) << "11: no exception; 12: wrong errno; 13: message lacks the cause";
}

TEST(IoUringReactor, SetupFailureMessagesSayWhatToDo) {
    std::string enosys = describe_io_uring_setup_failure(-ENOSYS);
    EXPECT_NE(enosys.find("kernel"), std::string::npos) << enosys;
    EXPECT_NE(enosys.find("CONFIG_IO_URING"), std::string::npos) << enosys;
    std::string enomem = describe_io_uring_setup_failure(-ENOMEM);
    EXPECT_NE(enomem.find("RLIMIT_MEMLOCK"), std::string::npos) << enomem;
    std::string eacces = describe_io_uring_setup_failure(-EACCES);
    EXPECT_EQ(eacces.rfind("shardloop: cannot create an event loop: io_uring_setup failed (", 0),
              0U)
        << eacces;
}

TEST(IoUringReactor, ZeroSubmissionEntriesIsRejected) {
    FdLeakCheck leak_check;
    try {
        make_io_uring_reactor({.sq_entries = 0});
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& error) {
        EXPECT_EQ(error.code(), std::errc::invalid_argument);
    }
}

}  // namespace
}  // namespace shardloop::detail
