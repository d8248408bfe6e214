// EventLoop::sendfile (net/sendfile.cpp) over real loopback TCP and Unix
// socket transports, with temporary files, and /proc files for the
// fallback (the kernel will not splice from them, but pread works). Cases
// ported from CPython 3.13's Lib/test/test_asyncio/test_sendfile.py
// (SendfileMixin) name the original; the fixture checks that no fd, task or
// fiber stack leaked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <any>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"
#include "support/stream_helpers.hpp"

namespace shardloop {
namespace {

using testing::error_code_of;
using testing::Fd;
using testing::PeerReader;
using testing::RecordingProtocol;
using testing::same_bytes;
using testing::shrink_socket_buffers;
using testing::SocketPair;
using testing::StreamTest;
using testing::TcpPair;
using testing::TempFile;
using testing::what_of;

// test_sendfile.py's DATA is 160 KiB; this is a little more than four
// splice chunks and not a multiple of any buffer size.
constexpr std::size_t data_size = (1 << 20) + 4321;

class SendfileTest : public StreamTest {
protected:
    void TearDown() override {
        receiver.reset();
        sender.reset();
        sender_protocol.reset();
        StreamTest::TearDown();
    }

    // SendfileMixin.prepare_sendfile: a loopback TCP connection whose
    // client end is a transport (the sender) and whose server end the test
    // reads itself. Small buffers make a reader that does not keep up push
    // back soon (asyncio's reduce_send_buffer_size). Not smaller than one
    // loopback MSS (64 KiB): a receive window below it makes TCP wait for
    // its persist timer (silly window avoidance), 200 ms a step.
    void open_tcp(bool small_buffers = false) {
        TcpPair pair;
        if (small_buffers) {
            shrink_socket_buffers(pair.client.get(), 65536);
            shrink_socket_buffers(pair.server.get(), 65536);
        }
        receiver = std::move(pair.server);
        sender_protocol = std::make_shared<RecordingProtocol>();
        sender = connect(pair.client, sender_protocol);
    }
    void open_unix() {
        SocketPair pair;
        receiver = std::move(pair.b);
        sender_protocol = std::make_shared<RecordingProtocol>();
        sender = connect(pair.a, sender_protocol);
    }

    // Runs until `future` is done, the receiver reading at most
    // `per_iteration` bytes each iteration meanwhile.
    template <class T>
    void run_reading(const Future<T>& future, std::size_t per_iteration = SIZE_MAX) {
        run_until(
            [&] {
                peer.read_some(receiver.get(), per_iteration);
                return future.done();
            },
            20.0);
    }

    // Closes the sender and reads everything up to its EOF.
    void close_and_drain() {
        sender->close();
        run_until([&] {
            peer.read_some(receiver.get());
            return (peer.eof || peer.error != 0) && sender_protocol->lost == 1;
        });
    }

    Fd receiver;
    PeerReader peer;
    std::shared_ptr<Transport> sender;
    std::shared_ptr<RecordingProtocol> sender_protocol;
};

// The bytes of a file read with pread(2), for /proc files whose size
// fstat() does not tell.
std::string read_whole(int fd) {
    std::string out;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(out.size()));
        if (n <= 0) {
            break;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

// Expects `fn` to throw (at the call or through the future it returns)
// an E whose what() contains `text`.
template <class E, class F>
void expect_failure_containing(F&& fn, const std::string& text) {
    try {
        fn();
        ADD_FAILURE() << "nothing thrown; expected: " << text;
    } catch (const E& e) {
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
    }
}

// test_sendfile: the whole file; returns its size; the peer gets every
// byte; the file position is left after the last byte sent.
TEST_F(SendfileTest, SendsTheWholeFile) {
    std::string data = testing::pattern(data_size, 41);
    TempFile file(data);
    open_tcp();
    auto sent = loop->sendfile(sender, file.fd());
    run_reading(sent);
    EXPECT_EQ(sent.result(), data_size);
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, data));
    EXPECT_EQ(file.position(), static_cast<off_t>(data_size));
    EXPECT_EQ(sender_protocol->lost_error, nullptr);
}

// The same over a Unix socketpair transport.
TEST_F(SendfileTest, SendsTheWholeFileOverAUnixSocket) {
    std::string data = testing::pattern(data_size, 42);
    TempFile file(data);
    open_unix();
    auto sent = loop->sendfile(sender, file.fd());
    run_reading(sent);
    EXPECT_EQ(sent.result(), data_size);
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, data));
    EXPECT_EQ(file.position(), static_cast<off_t>(data_size));
}

// test_sendfile_partial: offset 1000, count 100 sends exactly those bytes;
// the position is left at 1100. A count past the end stops at the end.
TEST_F(SendfileTest, OffsetAndCountSendThatRangeOnly) {
    std::string data = testing::pattern(data_size, 43);
    TempFile file(data);
    open_tcp();
    auto sent = loop->sendfile(sender, file.fd(), 1000, 100);
    run_reading(sent);
    EXPECT_EQ(sent.result(), 100U);
    EXPECT_EQ(file.position(), 1100);

    auto rest = loop->sendfile(sender, file.fd(), data_size - 10, 1000);
    run_reading(rest);
    EXPECT_EQ(rest.result(), 10U);
    EXPECT_EQ(file.position(), static_cast<off_t>(data_size));
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, data.substr(1000, 100) + data.substr(data_size - 10)));
}

// test_sock_sendfile_zero_size (for the transport): an empty file sends
// nothing and returns 0; the transport goes on as before. A count of 0 is
// refused (asyncio's _check_sendfile_params: "count must be a positive
// integer (got 0)").
TEST_F(SendfileTest, EmptyFileSendsNothingAndZeroCountIsRefused) {
    TempFile empty("");
    open_tcp();
    auto sent = loop->sendfile(sender, empty.fd());
    run_reading(sent);
    EXPECT_EQ(sent.result(), 0U);
    EXPECT_EQ(empty.position(), 0);

    TempFile file("some bytes");
    expect_failure_containing<std::invalid_argument>(
        [&] { loop->run_until_complete(loop->sendfile(sender, file.fd(), 0, 0)); },
        "count must be a positive integer (got 0)");
    EXPECT_EQ(file.position(), 0);

    EXPECT_TRUE(sender->is_reading());
    sender->write("after");
    close_and_drain();
    EXPECT_EQ(peer.data, "after");
}

// test_sendfile_pre_and_post_data: what was written before goes first,
// what is written after goes last.
TEST_F(SendfileTest, DataWrittenBeforeAndAfterKeepsItsPlace) {
    std::string data = testing::pattern(data_size, 44);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    std::string prefix = testing::pattern(1 << 20, 45);
    std::string suffix = testing::pattern(8192, 46);
    sender->write(prefix);
    ASSERT_GT(sender->get_write_buffer_size(), 0U);  // still buffered when sendfile starts
    auto sent = loop->sendfile(sender, file.fd());
    run_reading(sent);
    EXPECT_EQ(sent.result(), data_size);
    sender->write(suffix);
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, prefix + data + suffix));
}

// A file much bigger than the socket buffers, and a reader that takes
// 16 KiB per loop iteration: the loop keeps running (the reader runs on it)
// and every byte arrives in order.
TEST_F(SendfileTest, FileBiggerThanTheSocketBufferWithASlowReader) {
    std::string data = testing::pattern(8 << 20, 47);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, file.fd());
    run_reading(sent, 16 * 1024);
    EXPECT_EQ(sent.result(), data.size());
    EXPECT_EQ(file.position(), static_cast<off_t>(data.size()));
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, data));
}

// test_sendfile_prevents_bare_write: while sendfile runs, write() throws
// RuntimeError("unable to write; sendfile is in progress"); reading is
// paused meanwhile, and both come back afterwards.
TEST_F(SendfileTest, WriteDuringSendfileThrowsRuntimeError) {
    std::string data = testing::pattern(4 << 20, 48);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, file.fd());
    run_until([&] { return !sender->is_reading(); });  // sendfile has started
    testing::expect_throw_with_message<RuntimeError>([&] { sender->write("data"); },
                                                     "unable to write; sendfile is in progress");
    run_reading(sent);
    EXPECT_EQ(sent.result(), data.size());
    EXPECT_TRUE(sender->is_reading());
    EXPECT_NO_THROW(sender->write("tail"));
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, data + "tail"));
}

// test_sendfile_for_closing_transp: a closing transport is refused with
// RuntimeError ("... is closing"); nothing is sent, the position stays.
TEST_F(SendfileTest, ClosingTransportIsRefused) {
    TempFile file(testing::pattern(data_size, 49));
    open_tcp();
    sender->close();
    expect_failure_containing<RuntimeError>(
        [&] { loop->run_until_complete(loop->sendfile(sender, file.fd())); }, "is closing");
    EXPECT_EQ(file.position(), 0);
    run_until([&] {
        peer.read_some(receiver.get());
        return peer.eof && sender_protocol->lost == 1;
    });
    EXPECT_EQ(peer.data, "");
}

// test_sendfile_close_peer_in_the_middle_of_receiving: the peer goes away
// after about 1 KiB. sendfile fails with the connection error (no hang, no
// SIGPIPE); the position tells how far it got; the transport then closes.
TEST_F(SendfileTest, PeerClosingMidSendfileFailsWithTheError) {
    std::string data = testing::pattern(8 << 20, 50);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, file.fd());
    run_until([&] {
        peer.read_some(receiver.get(), 1024 - peer.data.size());
        return peer.data.size() >= 1024;
    });
    receiver.reset();  // with unread bytes queued: a reset

    run_until([&] { return sent.done(); });
    try {
        (void)sent.result();
        ADD_FAILURE() << "sendfile succeeded although the peer went away";
    } catch (const std::system_error& e) {
        int code = e.code().value();
        EXPECT_TRUE(code == ECONNRESET || code == EPIPE) << e.what();
    }
    off_t position = file.position();
    EXPECT_GE(position, 1024);
    EXPECT_LT(position, static_cast<off_t>(data.size()));
    run_until([&] { return sender_protocol->lost == 1; });
    EXPECT_TRUE(sender->is_closing());
}

// The fallback (test_sendfile_force_fallback) on a file the kernel will not
// splice: /proc files have no splice_read, but pread works. The bytes go
// through the transport's write buffer; the result and the position are as
// for the native path.
TEST_F(SendfileTest, FallbackSendsAFileThatCannotBeSpliced) {
    Fd environ_file(::open("/proc/self/environ", O_RDONLY | O_CLOEXEC));
    ASSERT_GE(environ_file.get(), 0);
    std::string expected = read_whole(environ_file.get());
    ASSERT_FALSE(expected.empty());
    open_tcp();
    auto sent = loop->sendfile(sender, environ_file.get());
    run_reading(sent);
    EXPECT_EQ(sent.result(), expected.size());
    EXPECT_EQ(::lseek(environ_file.get(), 0, SEEK_CUR), static_cast<off_t>(expected.size()));

    auto part = loop->sendfile(sender, environ_file.get(), 3, 10);
    run_reading(part);
    EXPECT_EQ(part.result(), std::min<std::size_t>(10, expected.size() - 3));
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, expected + expected.substr(3, 10)));
}

// The fallback over several of its chunks: 600 KiB of /proc/self/pagemap
// from offset 0 (the entries of the unmapped first 300 MiB of the address
// space: zeros), through a slow reader.
TEST_F(SendfileTest, FallbackSendsSeveralChunksThroughASlowReader) {
    Fd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    ASSERT_GE(pagemap.get(), 0);
    constexpr std::size_t count = 600 * 1024;
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, pagemap.get(), 0, count);
    run_reading(sent, 16 * 1024);
    EXPECT_EQ(sent.result(), count);
    EXPECT_EQ(::lseek(pagemap.get(), 0, SEEK_CUR), static_cast<off_t>(count));
    close_and_drain();
    EXPECT_TRUE(same_bytes(peer.data, std::string(count, '\0')));
}

// test_sendfile_force_unsupported_native: with fallback=false, a file the
// kernel will not splice gives SendfileNotAvailableError; nothing was sent
// and the transport is as before (reading, writable).
TEST_F(SendfileTest, NoFallbackRaisesSendfileNotAvailableError) {
    Fd status(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    ASSERT_GE(status.get(), 0);
    open_tcp();
    auto sent = loop->sendfile(sender, status.get(), 0, std::nullopt, /*fallback=*/false);
    run_reading(sent);
    EXPECT_THROW((void)sent.result(), SendfileNotAvailableError);
    EXPECT_EQ(::lseek(status.get(), 0, SEEK_CUR), 0);
    EXPECT_TRUE(sender->is_reading());
    EXPECT_NO_THROW(sender->write("still usable"));
    close_and_drain();
    EXPECT_EQ(peer.data, "still usable");
}

// An fd that neither splices nor preads (an eventfd): the fallback's read
// error comes out as the std::system_error of pread (ESPIPE), read on the
// thread that made the call.
TEST_F(SendfileTest, FallbackReadErrorCarriesTheErrno) {
    Fd counter(::eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK));
    ASSERT_GE(counter.get(), 0);
    open_tcp();
    auto sent = loop->sendfile(sender, counter.get());
    run_reading(sent);
    EXPECT_EQ(error_code_of(sent.exception()), ESPIPE) << what_of(sent.exception());
    EXPECT_NO_THROW(sender->write("after"));
    close_and_drain();
    EXPECT_EQ(peer.data, "after");
}

// Cancelling sendfile part way: the future is cancelled, the transport
// takes writes again, and nothing is left in flight (no hang at close).
TEST_F(SendfileTest, CancellingSendfileLeavesAUsableTransport) {
    std::string data = testing::pattern(8 << 20, 51);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, file.fd());
    run_until([&] {
        peer.read_some(receiver.get(), 4096);
        return peer.data.size() >= 8192;
    });
    sent.cancel();
    run_reading(sent);
    EXPECT_TRUE(sent.cancelled());
    EXPECT_NO_THROW(sender->write("x"));
    EXPECT_TRUE(sender->is_reading());
    sender->abort();
    run_until([&] { return sender_protocol->lost == 1; });
}

// The transport aborted while sendfile waits for the slow peer: sendfile
// fails instead of waiting for ever, and never writes into the socket that
// reuses the transport's fd number.
TEST_F(SendfileTest, AbortingTheTransportMidSendfileEndsIt) {
    std::string data = testing::pattern(8 << 20, 52);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, file.fd());
    run_until([&] {
        peer.read_some(receiver.get(), 4096);
        return peer.data.size() >= 8192;
    });
    int old_fd = std::any_cast<int>(sender->get_extra_info("socket"));
    sender->abort();
    run_until([&] { return sender_protocol->lost == 1 && ::fcntl(old_fd, F_GETFD) < 0; });
    SocketPair bystander;  // the lowest free numbers: the transport's old one among them
    EXPECT_TRUE(bystander.a.get() == old_fd || bystander.b.get() == old_fd);
    run_until([&] {
        peer.read_some(receiver.get());
        return sent.done();
    });
    EXPECT_NE(sent.exception(), nullptr);
    EXPECT_FALSE(sent.cancelled());
    PeerReader stray;
    stray.read_some(bystander.a.get());
    stray.read_some(bystander.b.get());
    EXPECT_EQ(stray.data.size(), 0U)
        << "sendfile wrote into fd " << old_fd << " after the transport had closed it";
}

// The loop closed while sendfile still has splices in the kernel: close()
// unwinds the task and drains the operations without throwing, and nothing
// leaks (the fixture checks fds and fiber stacks).
TEST_F(SendfileTest, LoopCloseWithSendfileInFlightLeaksNothing) {
    std::string data = testing::pattern(8 << 20, 53);
    TempFile file(data);
    open_tcp(/*small_buffers=*/true);
    auto sent = loop->sendfile(sender, file.fd());
    run_until([&] { return !sender->is_reading(); });
    run_iterations(3);
    ASSERT_FALSE(sent.done());
    EXPECT_NO_THROW(loop->close());
    EXPECT_EQ(loop->live_task_count(), 0U);
}

}  // namespace
}  // namespace shardloop
