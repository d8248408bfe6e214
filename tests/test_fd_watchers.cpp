// add_reader / remove_reader / add_writer / remove_writer
// (runtime/fd_watcher.cpp) on real pipes and socketpairs. Cases ported from
// CPython 3.13's Lib/test/test_asyncio/test_selector_events.py,
// test_events.py and test_base_events.py name the original; the fixture
// checks that no fd leaked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using shardloop::testing::LoopTest;

// Closes `fd` if still open and marks it closed.
void close_fd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

struct Pipe {
    int read_end = -1;
    int write_end = -1;

    Pipe() {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        read_end = fds[0];
        write_end = fds[1];
    }
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() {
        close_fd(read_end);
        close_fd(write_end);
    }
};

// Python's socket.socketpair(), both ends non-blocking.
struct SocketPair {
    int a = -1;
    int b = -1;

    SocketPair() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
        a = fds[0];
        b = fds[1];
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;
    ~SocketPair() {
        close_fd(a);
        close_fd(b);
    }
};

void write_all(int fd, const std::string& data) {
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
}

class FdWatcherTest : public LoopTest {
protected:
    // Runs exactly one iteration of the loop.
    void run_once() {
        loop->stop();
        loop->run_forever();
    }
    void run_iterations(int count) {
        for (int i = 0; i < count; ++i) {
            run_once();
        }
    }
};

// Ports test_selector_events.test_add_reader (with a real pipe): the reader
// runs once the read end has data.
TEST_F(FdWatcherTest, ReaderRunsWhenDataIsWritten) {
    Pipe pipe;
    int calls = 0;
    loop->add_reader(pipe.read_end, [&calls] { ++calls; });
    run_iterations(3);
    EXPECT_EQ(calls, 0) << "the reader ran while the pipe was empty";

    write_all(pipe.write_end, "x");
    run_until([&] { return calls >= 1; });

    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
}

// Debug mode times every callback and names the slow ones: a watcher's
// callback is neither a handle nor a task, and is named by its handle.
TEST_F(FdWatcherTest, ReaderRunsAndIsTimedInDebugMode) {
    testing::LogCapture logs;
    loop->set_debug(true);
    loop->slow_callback_duration = 0;  // every callback counts as slow
    Pipe pipe;
    int calls = 0;
    loop->add_reader(pipe.read_end, [&calls] { ++calls; });
    write_all(pipe.write_end, "x");
    run_until([&] { return calls >= 1; });
    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
    EXPECT_TRUE(logs.contains(LogLevel::warning, "Executing <Handle")) << "no slow-callback log";
}

// asyncio's readers are level-triggered: while data stays unread the reader
// runs once per iteration, never twice in one; remove_reader stops it.
TEST_F(FdWatcherTest, ReaderRunsOncePerIterationWhileDataRemainsUntilRemoved) {
    Pipe pipe;
    int calls = 0;
    loop->add_reader(pipe.read_end, [&calls] { ++calls; });
    write_all(pipe.write_end, "abc");

    run_iterations(3);
    EXPECT_EQ(calls, 3);

    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
    run_iterations(3);
    EXPECT_EQ(calls, 3) << "the reader ran after remove_reader";
}

// Ports test_selector_events.test_remove_reader_unknown and the pair of
// assertions of test_events.test_writer_callback: remove_* returns true
// for a watched fd, then false.
TEST_F(FdWatcherTest, RemoveReturnsTrueOnceThenFalse) {
    Pipe pipe;
    EXPECT_FALSE(loop->remove_reader(pipe.read_end));
    EXPECT_FALSE(loop->remove_writer(pipe.write_end));

    loop->add_reader(pipe.read_end, [] {});
    loop->add_writer(pipe.write_end, [] {});

    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
    EXPECT_FALSE(loop->remove_reader(pipe.read_end));
    EXPECT_TRUE(loop->remove_writer(pipe.write_end));
    EXPECT_FALSE(loop->remove_writer(pipe.write_end));
    run_once();
}

// Ports test_selector_events.test_add_reader_existing: a second add_reader
// on the same fd replaces the first; the old callback never runs again.
TEST_F(FdWatcherTest, AddReaderReplacesExistingReader) {
    Pipe pipe;
    int first = 0;
    int second = 0;
    loop->add_reader(pipe.read_end, [&first] { ++first; });
    write_all(pipe.write_end, "x");
    run_until([&] { return first >= 1; });
    const int first_before = first;

    loop->add_reader(pipe.read_end, [&second] { ++second; });
    run_iterations(3);

    EXPECT_EQ(first, first_before) << "the replaced reader ran again";
    EXPECT_EQ(second, 3);
    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
    EXPECT_FALSE(loop->remove_reader(pipe.read_end)) << "replacing must not register twice";
}

// A replacement made before the fd was ever ready: only the new one runs.
TEST_F(FdWatcherTest, AddReaderReplacesReaderThatNeverRan) {
    Pipe pipe;
    int first = 0;
    int second = 0;
    loop->add_reader(pipe.read_end, [&first] { ++first; });
    loop->add_reader(pipe.read_end, [&second] { ++second; });
    write_all(pipe.write_end, "x");

    run_until([&] { return second >= 1; });

    EXPECT_EQ(first, 0);
    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
}

// Ports test_events.test_writer_callback: a writer on a socketpair end runs
// (the socket is writable), sends, and stops the loop; remove_writer is then
// true once and false after; the other end receives the data.
TEST_F(FdWatcherTest, WriterRunsWhenSocketIsWritable) {
    SocketPair pair;
    const std::string data(1024, 'x');
    loop->add_writer(pair.b, [&] {
        ASSERT_EQ(::send(pair.b, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
        loop->stop();
    });
    loop->run_forever();

    EXPECT_TRUE(loop->remove_writer(pair.b));
    EXPECT_FALSE(loop->remove_writer(pair.b));

    close_fd(pair.b);
    std::string read(data.size() * 2, '\0');
    ssize_t n = ::recv(pair.a, read.data(), read.size(), 0);
    ASSERT_GE(n, 0) << std::strerror(errno);
    read.resize(static_cast<std::size_t>(n));
    EXPECT_EQ(read, data);
}

// remove_writer stops a writer that would otherwise run every iteration
// (a socket with room in its buffer stays writable).
TEST_F(FdWatcherTest, RemoveWriterStopsWriter) {
    SocketPair pair;
    int calls = 0;
    loop->add_writer(pair.a, [&calls] { ++calls; });
    run_until([&] { return calls >= 2; });

    EXPECT_TRUE(loop->remove_writer(pair.a));
    const int before = calls;
    run_iterations(3);
    EXPECT_EQ(calls, before);
}

// Ports test_selector_events.test_add_reader_existing_writer and
// test_remove_reader_read_write / test_remove_writer_read_write: a reader
// and a writer on the same fd are independent; removing one leaves the other.
TEST_F(FdWatcherTest, ReaderAndWriterOnSameFdAreIndependent) {
    SocketPair pair;
    int reads = 0;
    int writes = 0;
    loop->add_writer(pair.a, [&writes] { ++writes; });
    loop->add_reader(pair.a, [&reads] { ++reads; });
    run_until([&] { return writes >= 1; });
    EXPECT_EQ(reads, 0) << "nothing was sent to this end yet";

    write_all(pair.b, "ping");
    run_until([&] { return reads >= 1; });

    EXPECT_TRUE(loop->remove_reader(pair.a));
    const int reads_after_remove = reads;
    const int writes_before = writes;
    run_until([&] { return writes >= writes_before + 2; });
    EXPECT_EQ(reads, reads_after_remove) << "the removed reader ran";

    EXPECT_TRUE(loop->remove_writer(pair.a));
    EXPECT_FALSE(loop->remove_reader(pair.a));
}

// Ports test_selector_events.BaseSelectorEventLoopTests.test_close (its
// last assertions) and test_events.test_close: add_reader / add_writer on a
// closed loop throw RuntimeError("Event loop is closed").
TEST_F(FdWatcherTest, AddReaderOrWriterAfterCloseThrows) {
    Pipe pipe;
    loop->close();

    try {
        loop->add_reader(pipe.read_end, [] {});
        ADD_FAILURE() << "add_reader on a closed loop did not throw";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop is closed");
    }
    EXPECT_THROW(loop->add_writer(pipe.write_end, [] {}), RuntimeError);
}

// remove_reader / remove_writer after close() return false, also for an fd
// that was watched when the loop closed (close removes every watcher).
TEST_F(FdWatcherTest, RemoveAfterCloseReturnsFalse) {
    Pipe pipe;
    loop->add_reader(pipe.read_end, [] {});
    loop->add_writer(pipe.write_end, [] {});
    loop->close();

    EXPECT_FALSE(loop->remove_reader(pipe.read_end));
    EXPECT_FALSE(loop->remove_writer(pipe.write_end));
    EXPECT_FALSE(loop->remove_reader(12345));
}

// A negative fd is an invalid argument (asyncio: ValueError("Invalid file
// descriptor: -1")).
TEST_F(FdWatcherTest, NegativeFdThrowsInvalidArgument) {
    EXPECT_THROW(loop->add_reader(-1, [] {}), std::invalid_argument);
    EXPECT_THROW(loop->add_writer(-1, [] {}), std::invalid_argument);
    EXPECT_FALSE(loop->remove_reader(-1));
    EXPECT_FALSE(loop->remove_writer(-1));
}

// A reader whose callback throws: the exception goes to the exception
// handler (with the handle and "Exception in callback ..."), the reader
// stays registered and the loop goes on.
TEST_F(FdWatcherTest, ReaderExceptionGoesToHandlerAndLoopContinues) {
    Pipe pipe;
    std::vector<ExceptionContext> contexts;
    loop->set_exception_handler(
        [&contexts](EventLoop&, const ExceptionContext& context) { contexts.push_back(context); });
    int calls = 0;
    loop->add_reader(pipe.read_end, [&calls] {
        ++calls;
        throw std::runtime_error("reader failed");
    });
    bool later_callback_ran = false;
    write_all(pipe.write_end, "x");

    run_until([&] { return contexts.size() >= 2; });
    loop->call_soon([&later_callback_ran] { later_callback_ran = true; });
    run_once();

    EXPECT_TRUE(later_callback_ran);
    EXPECT_GE(calls, 2);
    EXPECT_EQ(contexts.front().message.rfind("Exception in callback", 0), 0U)
        << contexts.front().message;
    EXPECT_TRUE(contexts.front().handle);
    ASSERT_TRUE(contexts.front().exception);
    try {
        std::rethrow_exception(contexts.front().exception);
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "reader failed");
    }
    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
}

// Without a custom handler, a failing reader is logged as an ERROR.
TEST_F(FdWatcherTest, ReaderExceptionIsLoggedByDefaultHandler) {
    Pipe pipe;
    int calls = 0;
    loop->add_reader(pipe.read_end, [&calls] {
        ++calls;
        throw std::runtime_error("reader failed");
    });
    write_all(pipe.write_end, "x");

    run_until([&] { return calls >= 1; });

    EXPECT_TRUE(log_capture.contains(LogLevel::error, "Exception in callback"));
    EXPECT_TRUE(log_capture.contains(LogLevel::error, "reader failed"));
    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
}

// Replacing the reader from within its own callback: the new one runs from
// the next iteration on, the old one never again.
TEST_F(FdWatcherTest, ReaderReplacedFromItsOwnCallback) {
    Pipe pipe;
    int first = 0;
    int second = 0;
    loop->add_reader(pipe.read_end, [&] {
        ++first;
        loop->add_reader(pipe.read_end, [&second] { ++second; });
    });
    write_all(pipe.write_end, "x");

    run_until([&] { return second >= 2; });

    EXPECT_EQ(first, 1);
    EXPECT_TRUE(loop->remove_reader(pipe.read_end));
}

// Removing the reader from within its own callback: it runs once, no more,
// and remove_reader returned true there.
TEST_F(FdWatcherTest, ReaderRemovedFromItsOwnCallback) {
    Pipe pipe;
    int calls = 0;
    bool removed = false;
    loop->add_reader(pipe.read_end, [&] {
        ++calls;
        removed = loop->remove_reader(pipe.read_end);
    });
    write_all(pipe.write_end, "x");

    run_until([&] { return calls >= 1; });
    run_iterations(3);

    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(removed);
    EXPECT_FALSE(loop->remove_reader(pipe.read_end));
}

// Ports the asyncio documentation example "Watch a file descriptor for read
// events" (library/asyncio-eventloop.rst): a reader on one end of a
// socketpair, data written from the other, read inside the callback, which
// then removes the reader and stops the loop.
TEST_F(FdWatcherTest, SocketPairWatchForReadEventsExample) {
    SocketPair pair;
    std::string received;
    loop->add_reader(pair.a, [&] {
        char buffer[100];
        ssize_t n = ::recv(pair.a, buffer, sizeof buffer, 0);
        ASSERT_GT(n, 0);
        received.assign(buffer, static_cast<std::size_t>(n));
        // We are done: unregister the file descriptor.
        loop->remove_reader(pair.a);
        loop->stop();
    });
    // Simulate the reception of data from the network.
    loop->call_soon([&] { write_all(pair.b, "abc"); });

    loop->run_forever();

    EXPECT_EQ(received, "abc");
    EXPECT_FALSE(loop->remove_reader(pair.a));
}

// Ports test_events.EventLoopTestsMixin.test_reader_callback: a reader on a
// socketpair collects two sends; at EOF it removes itself (remove_reader is
// true) and closes its socket.
TEST_F(FdWatcherTest, ReaderCollectsDataAndRemovesItselfAtEof) {
    SocketPair pair;
    std::string bytes_read;
    bool removed_at_eof = false;
    loop->add_reader(pair.a, [&] {
        char buffer[1024];
        ssize_t n = ::recv(pair.a, buffer, sizeof buffer, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;  // spurious readiness notifications are possible on Linux
        }
        ASSERT_GE(n, 0) << std::strerror(errno);
        if (n > 0) {
            bytes_read.append(buffer, static_cast<std::size_t>(n));
        } else {
            removed_at_eof = loop->remove_reader(pair.a);
            close_fd(pair.a);
        }
    });
    loop->call_soon([&] { write_all(pair.b, "abc"); });
    run_until([&] { return bytes_read.size() >= 3; });
    loop->call_soon([&] { write_all(pair.b, "def"); });
    run_until([&] { return bytes_read.size() >= 6; });
    loop->call_soon([&] { close_fd(pair.b); });

    run_until([&] { return pair.a < 0; });

    EXPECT_EQ(bytes_read, "abcdef");
    EXPECT_TRUE(removed_at_eof);
}

}  // namespace
}  // namespace shardloop
