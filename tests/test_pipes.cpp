// connect_read_pipe and connect_write_pipe (net/pipes.cpp, the pipe kinds
// of net/stream_transport.cpp) on real pipes, socketpairs and files. Cases
// ported from CPython 3.13's Lib/test/test_asyncio/test_unix_events.py
// (UnixReadPipeTransportTests, UnixWritePipeTransportTests) and
// test_events.py (test_read_pipe, test_write_pipe, test_write_pipe_disconnect_on_close)
// name the original; the fixture checks that no fd, task or stack leaked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
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
#include <thread>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"
#include "support/stream_helpers.hpp"

namespace shardloop {
namespace {

using testing::error_code_of;
using testing::Fd;
using testing::PeerReader;
using testing::Pipe;
using testing::RecordingProtocol;
using testing::same_bytes;
using testing::SocketPair;
using testing::StreamTest;
using testing::TempFile;
using testing::what_of;

class PipeTest : public StreamTest {
protected:
    // The transports, once connection_made() has run; `fd` is taken.
    std::shared_ptr<ReadTransport> read_pipe(Fd& fd, std::shared_ptr<BaseProtocol> protocol) {
        int raw = fd.release();
        auto connection =
            loop->run_until_complete(loop->connect_read_pipe([protocol] { return protocol; }, raw));
        EXPECT_EQ(connection.protocol, protocol);
        return connection.transport;
    }
    std::shared_ptr<WriteTransport> write_pipe(Fd& fd, std::shared_ptr<BaseProtocol> protocol) {
        int raw = fd.release();
        auto connection = loop->run_until_complete(
            loop->connect_write_pipe([protocol] { return protocol; }, raw));
        EXPECT_EQ(connection.protocol, protocol);
        return connection.transport;
    }
};

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        ASSERT_GT(n, 0) << std::strerror(errno);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// True when the reading end of the pipe whose write end is `fd` is gone.
bool reader_gone(int write_fd) {
    pollfd p{.fd = write_fd, .events = POLLOUT, .revents = 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
}

// A pipe whose kernel buffer holds one page, so that a writer fills it fast.
void shrink_pipe(int fd) { ASSERT_GT(::fcntl(fd, F_SETPIPE_SZ, 4096), 0); }

// ---- Read pipes ----

// test_events.py test_read_pipe, test_unix_events.py test__read_ready and
// test__read_ready_eof: data, then eof_received(), then
// connection_lost(null), in that order, each once.
TEST_F(PipeTest, ReadPipeGetsDataThenEofThenConnectionLost) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    int fd = pipe.read_end.get();
    auto transport = read_pipe(pipe.read_end, protocol);
    EXPECT_EQ(protocol->events, std::vector<std::string>{"made"});
    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("pipe")), fd);
    EXPECT_FALSE(transport->get_extra_info("socket").has_value());
    EXPECT_TRUE(transport->is_reading());
    EXPECT_NE(transport->repr().find("ReadPipeTransport"), std::string::npos) << transport->repr();

    write_all(pipe.write_end.get(), "1");
    run_until([&] { return protocol->data == "1"; });
    write_all(pipe.write_end.get(), "2345");
    run_until([&] { return protocol->data == "12345"; });
    pipe.write_end.reset();

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->events, (std::vector<std::string>{"made", "data", "eof", "lost"}));
    EXPECT_EQ(protocol->lost_error, nullptr);
    EXPECT_TRUE(transport->is_closing());
    EXPECT_FALSE(transport->is_reading());
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
    EXPECT_EQ(protocol->eofs, 1);
}

// test_pause_reading, test_resume_reading, test_pause_reading_on_paused_pipe,
// test_resume_reading_on_paused_pipe, test_*_reading_on_closed_pipe: both
// idempotent, nothing arrives while paused, nothing is lost by the pause.
TEST_F(PipeTest, ReadPipePauseAndResumeReading) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = read_pipe(pipe.read_end, protocol);

    transport->pause_reading();
    transport->pause_reading();
    EXPECT_FALSE(transport->is_reading());
    write_all(pipe.write_end.get(), "while paused");
    run_iterations(5);
    EXPECT_EQ(protocol->data_calls, 0) << "data_received while paused";

    transport->resume_reading();
    transport->resume_reading();
    EXPECT_TRUE(transport->is_reading());
    run_until([&] { return protocol->data == "while paused"; });

    transport->close();
    EXPECT_FALSE(transport->is_reading());
    transport->resume_reading();
    transport->pause_reading();
    EXPECT_FALSE(transport->is_reading());
    run_until([&] { return protocol->lost == 1; });
}

// test_close, test_close_already_closing, test__call_connection_lost:
// close() gives connection_lost(null) once and closes the fd (the writer
// then sees that the reader is gone).
TEST_F(PipeTest, ReadPipeCloseCallsConnectionLostOnceAndClosesTheFd) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = read_pipe(pipe.read_end, protocol);
    transport->close();
    transport->close();
    EXPECT_TRUE(transport->is_closing());

    run_until([&] { return protocol->lost == 1 && reader_gone(pipe.write_end.get()); });
    EXPECT_EQ(protocol->lost_error, nullptr);
    EXPECT_EQ(protocol->eofs, 0);
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
    EXPECT_FALSE(transport->get_extra_info("pipe").has_value());
}

// 4 MiB through a read pipe from a writer thread: intact, then EOF.
TEST_F(PipeTest, ReadPipeDeliversABigStreamIntact) {
    Pipe pipe(0);  // the writer's end blocks
    std::string sent = testing::pattern(4 << 20, 31);
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = read_pipe(pipe.read_end, protocol);
    std::thread writer([&] {
        std::string_view rest = sent;
        while (!rest.empty()) {
            ssize_t n = ::write(pipe.write_end.get(), rest.data(), rest.size());
            if (n <= 0) {
                break;
            }
            rest.remove_prefix(static_cast<std::size_t>(n));
        }
        pipe.write_end.reset();
    });
    run_until([&] { return protocol->lost == 1; }, 20.0);
    writer.join();
    EXPECT_TRUE(same_bytes(protocol->data, sent));
    EXPECT_EQ(protocol->events.back(), "lost");
    EXPECT_EQ(protocol->eofs, 1);
}

// test__read_ready_error: a read error closes the transport and goes to
// connection_lost(); a peer reset is not worth the exception handler.
// (asyncio accepts a socket as a pipe; a reset makes the read fail.)
TEST_F(PipeTest, ReadPipeReadErrorGoesToConnectionLost) {
    testing::TcpPair pair;
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = read_pipe(pair.client, protocol);
    ::send(pair.server.get(), "x", 1, MSG_NOSIGNAL);
    run_until([&] { return protocol->data == "x"; });
    linger reset{.l_onoff = 1, .l_linger = 0};
    ASSERT_EQ(::setsockopt(pair.server.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
    pair.server.reset();

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(error_code_of(protocol->lost_error), ECONNRESET) << what_of(protocol->lost_error);
    EXPECT_TRUE(transport->is_closing());
    EXPECT_TRUE(transport_reports.empty());
}

// data_received() throwing is fatal: reported, the pipe closes, and
// connection_lost() gets the exception.
TEST_F(PipeTest, ReadPipeDataReceivedThrowingIsFatal) {
    Pipe pipe;
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    protocol->on_data = [](std::string_view) { throw std::logic_error("bad data"); };
    auto transport = read_pipe(pipe.read_end, protocol);
    write_all(pipe.write_end.get(), "x");

    run_until([&] { return protocol->lost == 1; });
    ASSERT_EQ(transport_reports.size(), 1U);
    EXPECT_EQ(transport_reports[0].message, "Fatal error: protocol.data_received() call failed.");
    EXPECT_EQ(what_of(protocol->lost_error), "bad data");
    run_until([&] { return reader_gone(pipe.write_end.get()); });
}

// _UnixReadPipeTransport / _UnixWritePipeTransport: "Pipe transport is for
// pipes/sockets only." — a regular file is refused with
// std::invalid_argument (asyncio's ValueError), and stays the caller's.
TEST_F(PipeTest, RegularFileIsRefusedWithInvalidArgument) {
    TempFile file("contents");
    for (bool read_side : {true, false}) {
        SCOPED_TRACE(read_side ? "connect_read_pipe" : "connect_write_pipe");
        auto factory = [] { return std::make_shared<RecordingProtocol>(); };
        try {
            if (read_side) {
                (void)loop->connect_read_pipe(factory, file.fd());
            } else {
                (void)loop->connect_write_pipe(factory, file.fd());
            }
            ADD_FAILURE() << "a regular file was accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("Pipe transport is for pipes/sockets only."),
                      std::string::npos)
                << e.what();
        }
        EXPECT_GE(::fcntl(file.fd(), F_GETFD), 0) << "the refused fd was closed";
    }
    EXPECT_EQ(loop->live_task_count(), 0U);
}

// ---- Write pipes ----

// test_events.py test_write_pipe, test_unix_events.py test_write,
// test_write_no_data, test_can_write_eof.
TEST_F(PipeTest, WritePipeWritesArrive) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    int fd = pipe.write_end.get();
    auto transport = write_pipe(pipe.write_end, protocol);
    EXPECT_TRUE(transport->can_write_eof());
    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("pipe")), fd);
    EXPECT_NE(transport->repr().find("WritePipeTransport"), std::string::npos) << transport->repr();

    transport->write("");
    transport->write("1");
    transport->write("2345");
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    PeerReader reader;
    run_until([&] {
        reader.read_some(pipe.read_end.get());
        return reader.data.size() >= 5;
    });
    EXPECT_EQ(reader.data, "12345");

    transport->close();
    run_until([&] {
        reader.read_some(pipe.read_end.get());
        return protocol->lost == 1 && reader.eof;
    });
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// test_write_eof: write_eof() on a pipe closes it: is_closing() at once,
// the reader sees EOF, connection_lost(null) follows.
TEST_F(PipeTest, WritePipeWriteEofClosesThePipe) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    transport->write("last");
    transport->write_eof();
    EXPECT_TRUE(transport->is_closing());

    PeerReader reader;
    run_until([&] {
        reader.read_some(pipe.read_end.get());
        return reader.eof && protocol->lost == 1;
    });
    EXPECT_EQ(reader.data, "last");
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// test_write_eof_pending: with data buffered, write_eof() makes the
// transport closing at once but waits for the data: the reader gets all of
// it, then EOF, then connection_lost(null) comes.
TEST_F(PipeTest, WritePipeWriteEofAfterBufferedDataDeliversAllThenEof) {
    Pipe pipe;
    shrink_pipe(pipe.write_end.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    std::string sent = testing::pattern(1 << 20, 32);
    transport->write(sent);
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    transport->write_eof();
    EXPECT_TRUE(transport->is_closing());
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 0);

    PeerReader reader;
    run_until([&] {
        reader.read_some(pipe.read_end.get());
        return reader.eof;
    });
    EXPECT_TRUE(same_bytes(reader.data, sent));
    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// test__read_ready ("pipe closed by peer"): the reader going away with
// nothing buffered gives connection_lost(null), unprompted by any write.
TEST_F(PipeTest, WritePipeNoticesTheReaderClosing) {
    Pipe pipe;
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    run_iterations(2);
    pipe.read_end.reset();

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->lost_error, nullptr);
    EXPECT_TRUE(transport->is_closing());
    EXPECT_TRUE(transport_reports.empty());
}

// The reader going away while data is buffered: connection_lost() gets
// BrokenPipeError (EPIPE), the process gets no SIGPIPE, and the buffer is
// dropped.
TEST_F(PipeTest, WritePipeReaderClosingWithBufferedDataGivesBrokenPipe) {
    Pipe pipe;
    shrink_pipe(pipe.write_end.get());
    record_transport_reports();
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    transport->write(testing::pattern(1 << 20, 33));
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    run_iterations(3);
    pipe.read_end.reset();

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(error_code_of(protocol->lost_error), EPIPE) << what_of(protocol->lost_error);
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    EXPECT_TRUE(transport_reports.empty());
}

// test_write_err / test_write_close: a write() after the reader went, but
// before the loop noticed, fails with EPIPE — not SIGPIPE — and goes to
// connection_lost(); later writes are dropped without an exception.
TEST_F(PipeTest, WritePipeWriteAfterTheReaderWentGivesEpipeNotSigpipe) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    pipe.read_end.reset();
    transport->write("nobody reads this");

    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(error_code_of(protocol->lost_error), EPIPE) << what_of(protocol->lost_error);
    EXPECT_NO_THROW(transport->write("dropped"));
    EXPECT_NO_THROW(transport->write("dropped"));
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
}

// test_abort: the buffer is dropped, connection_lost(null) once; the reader
// gets what was already in the pipe, then EOF.
TEST_F(PipeTest, WritePipeAbortDropsTheBuffer) {
    Pipe pipe;
    shrink_pipe(pipe.write_end.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    std::string sent = testing::pattern(1 << 20, 34);
    transport->write(sent);
    ASSERT_GT(transport->get_write_buffer_size(), 0U);
    transport->abort();
    EXPECT_EQ(transport->get_write_buffer_size(), 0U);
    EXPECT_TRUE(transport->is_closing());

    PeerReader reader;
    run_until([&] {
        reader.read_some(pipe.read_end.get());
        return reader.eof && protocol->lost == 1;
    });
    EXPECT_LT(reader.data.size(), sent.size());
    EXPECT_TRUE(same_bytes(reader.data, sent.substr(0, reader.data.size())));
    EXPECT_EQ(protocol->lost_error, nullptr);
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
}

// test_close, test_close_closing: close() twice, connection_lost(null) once.
TEST_F(PipeTest, WritePipeCloseTwiceCallsConnectionLostOnce) {
    Pipe pipe;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    transport->close();
    transport->close();
    EXPECT_TRUE(transport->is_closing());
    run_until([&] { return protocol->lost == 1; });
    run_iterations(3);
    EXPECT_EQ(protocol->lost, 1);
    EXPECT_EQ(protocol->lost_error, nullptr);
    PeerReader reader;
    reader.read_some(pipe.read_end.get());
    EXPECT_TRUE(reader.eof);
}

// _FlowControlMixin on a pipe: pause_writing() above the high mark while
// the reader reads nothing, resume_writing() once it has drained.
TEST_F(PipeTest, WritePipeFlowControlPausesAndResumesTheProtocol) {
    Pipe pipe;
    shrink_pipe(pipe.write_end.get());
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pipe.write_end, protocol);
    transport->set_write_buffer_limits(8192);
    std::string sent = testing::pattern(8192, 35);
    transport->write(sent);
    EXPECT_EQ(protocol->pauses, 0);
    std::string more = testing::pattern(8192, 36);
    transport->write(more);
    sent += more;
    EXPECT_EQ(protocol->pauses, 1);

    PeerReader reader;
    run_until([&] {
        reader.read_some(pipe.read_end.get());
        return reader.data.size() == sent.size() && protocol->resumes == 1;
    });
    EXPECT_TRUE(same_bytes(reader.data, sent));
    EXPECT_EQ(protocol->events, (std::vector<std::string>{"made", "pause", "resume"}));

    transport->close();
    run_until([&] { return protocol->lost == 1; });
}

// asyncio accepts a socket as a pipe: connect_write_pipe on one end of a
// socketpair; its close is the EOF the other end sees.
TEST_F(PipeTest, SocketWorksAsAWritePipe) {
    SocketPair pair;
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(pair.a, protocol);
    transport->write("through a socket");
    transport->write_eof();
    PeerReader reader;
    run_until([&] {
        reader.read_some(pair.b.get());
        return reader.eof && protocol->lost == 1;
    });
    EXPECT_EQ(reader.data, "through a socket");
}

// A character device is accepted too (asyncio allows S_ISCHR): /dev/null.
TEST_F(PipeTest, CharacterDeviceWorksAsAWritePipe) {
    Fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    ASSERT_GE(null.get(), 0);
    auto protocol = std::make_shared<RecordingProtocol>();
    auto transport = write_pipe(null, protocol);
    transport->write(testing::pattern(100000, 37));
    transport->close();
    run_until([&] { return protocol->lost == 1; });
    EXPECT_EQ(protocol->lost_error, nullptr);
}

// The fds of pipe transports are refused by add_reader / add_writer too.
TEST_F(PipeTest, PipeTransportFdsAreRefusedByAddReader) {
    Pipe pipe;
    auto reader_protocol = std::make_shared<RecordingProtocol>();
    auto writer_protocol = std::make_shared<RecordingProtocol>();
    auto reader = read_pipe(pipe.read_end, reader_protocol);
    auto writer = write_pipe(pipe.write_end, writer_protocol);
    int read_fd = std::any_cast<int>(reader->get_extra_info("pipe"));
    int write_fd = std::any_cast<int>(writer->get_extra_info("pipe"));
    testing::expect_throw_with_message<RuntimeError>(
        [&] { loop->add_reader(read_fd, [] {}); },
        "File descriptor " + std::to_string(read_fd) + " is used by transport " + reader->repr());
    testing::expect_throw_with_message<RuntimeError>(
        [&] { loop->add_writer(write_fd, [] {}); },
        "File descriptor " + std::to_string(write_fd) + " is used by transport " + writer->repr());

    writer->write("through both transports");
    writer->close();
    run_until([&] { return reader_protocol->lost == 1 && writer_protocol->lost == 1; });
    EXPECT_EQ(reader_protocol->data, "through both transports");
    EXPECT_EQ(reader_protocol->eofs, 1);
}

}  // namespace
}  // namespace shardloop
