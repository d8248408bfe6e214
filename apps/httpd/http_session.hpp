#pragma once

// HttpSession: one HTTP/1.1 connection without the connection. Bytes go
// in (feed), response bytes come out (output), and each call says what the
// caller must do next (a Step): wait for more bytes, write the output and
// call resume(), send a file, gather the metrics, or write and close. It
// knows nothing of sockets or loops, so unit tests and the fuzzer drive it
// directly, and the shardloop Protocol (HttpConnection) only glues it to a
// transport.
//
// Pipelining. Every complete request in the input is answered, in order,
// into one output buffer, so that a batch of pipelined requests costs one
// write. Processing stops early only when the output has grown past
// flush_bytes (the caller writes it, and resumes unless the transport
// pushes back), or at a request whose response needs the caller (a file
// body, the metrics): the bytes after it are kept, copied, until resume().
//
// Closing. A request that does not allow keep-alive (Connection: close,
// HTTP/1.0 without keep-alive), an error, or draining makes its response
// the last: the step is then `close`, and everything after it is dropped.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http_date.hpp"
#include "http_parser.hpp"
#include "request_handler.hpp"
#include "server_counters.hpp"

namespace shardloop::httpd {

struct SessionLimits {
    ParserLimits parser{};
    // Output past which processing stops so the caller can write it (and
    // stop, when the peer is not reading): what bounds memory per connection.
    std::size_t flush_bytes = 64 * 1024;
};

enum class Step : uint8_t {
    need_more,  // all input used: write the output, read on
    flush,      // output is full: write it, then resume() (unless writing is paused)
    send_file,  // write the output (the head), send file_fd()'s body, then file_done()
    metrics,    // write the output, gather the metrics, then metrics_done(body)
    close,      // write the output (the last response), then close the connection
    busy,       // waiting for the caller's file_done() or metrics_done(): input was kept
};

class HttpSession {
public:
    // The handler, date and counters must outlive the session.
    HttpSession(const RequestHandler& handler, const DateCache& date, ServerCounters& counters,
                SessionLimits limits = {});
    HttpSession(const HttpSession&) = delete;
    HttpSession& operator=(const HttpSession&) = delete;

    // Bytes from the peer. They are processed at once when nothing is
    // pending, else kept (copied) for resume().
    Step feed(std::string_view data);
    // Goes on with the kept input (after flush, file_done, metrics_done).
    Step resume();

    // The responses produced so far. The caller writes them, then calls
    // output_sent().
    const std::string& output() const noexcept { return _out; }
    void output_sent() noexcept;

    // After send_file: the file and how many bytes of it make the body.
    // The session owns the descriptor until file_done().
    int file_fd() const noexcept { return _file.get(); }
    uint64_t file_size() const noexcept { return _file_size; }
    void file_done() noexcept;

    // After metrics: the body, for the response to append (headers only
    // for a HEAD request). Then resume().
    void metrics_done(std::string_view body);

    // From now on every response is the last (Connection: close).
    void set_draining() noexcept { _draining = true; }
    // Nothing under way: no part of a request read, no input kept, no
    // file or metrics pending, not closed.
    bool idle() const noexcept;
    // The last response was an error.
    bool failed() const noexcept { return _failed; }
    // After the last response: the peer may still be sending (the request
    // failed, or bytes came after the last request), so the caller should
    // shut down writing and drain the input for a while before closing. A
    // close with unread input makes the kernel reset the connection, and
    // the peer could lose the response (nginx's lingering close).
    bool should_linger() const noexcept { return _failed || _dropped_input; }
    // Requests answered so far.
    uint64_t requests() const noexcept { return _requests; }

private:
    enum class Pending : uint8_t { none, file, metrics, closed };

    Step process(std::string_view data, std::size_t& used);
    // Answers the request the parser just completed; need_more to go on.
    Step respond();
    Step respond_error();
    Persistence persistence() const noexcept;
    void keep(std::string_view data);

    const RequestHandler& _handler;
    const DateCache& _date;
    ServerCounters& _counters;
    SessionLimits _limits;
    RequestParser _parser;
    std::string _out;
    std::string _kept;  // input not processed yet, from _kept_pos on
    std::size_t _kept_pos = 0;
    std::string _scratch;  // the static file path
    UniqueFd _file;
    uint64_t _file_size = 0;
    uint64_t _requests = 0;
    Pending _pending = Pending::none;
    Persistence _pending_persistence = Persistence::keep_alive;  // of the file or metrics response
    bool _metrics_head_only = false;
    bool _draining = false;
    bool _failed = false;
    bool _dropped_input = false;  // bytes came after the last response
};

}  // namespace shardloop::httpd
