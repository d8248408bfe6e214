#pragma once

// RequestParser: HTTP/1.1 request framing over llhttp, with the limits a
// server needs. It takes bytes as they arrive, in pieces of any size, and
// stops at each event the caller must act on: the end of a request's head
// and the end of a whole request (body included, which it reads and
// discards). It owns no I/O and no buffer of the input: every byte it is
// given is either consumed or left to the caller, who passes it again.
//
// Limits. The header section (request line, header lines and the empty
// line that ends them, every byte counted) may be at most max_header_bytes
// long, else the request fails with 431; a body (Content-Length or chunked)
// longer than max_body_bytes fails with 413. A request that llhttp rejects
// fails with 400, a version other than HTTP/1.x with 505, an HTTP/1.1
// request without exactly one Host header (RFC 7230 section 5.4) with 400.
// After an error the parser stays failed: the connection must close.

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace shardloop::httpd {

struct ParserLimits {
    std::size_t max_header_bytes = 8192;
    std::size_t max_body_bytes = std::size_t{1} << 20;
};

enum class ParseEvent : uint8_t {
    need_more,         // every byte given was consumed; no event yet
    headers_complete,  // head() is valid; a body may follow
    message_complete,  // the request is complete (body read and discarded)
    error,             // error_status() and error_reason() say why
};

// What the server needs of a request; valid from headers_complete until
// the next parse() after message_complete.
struct RequestHead {
    llhttp_method_t method = HTTP_GET;
    uint8_t http_major = 1;
    uint8_t http_minor = 1;
    // Whether the client allows another request on this connection:
    // HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
    // "Connection: keep-alive".
    bool keep_alive = true;
    // The request target as sent (origin-form "/path?query", or absolute-form).
    std::string_view target;
};

class RequestParser {
public:
    explicit RequestParser(ParserLimits limits = {});
    // llhttp keeps a pointer back to its owner: neither copied nor moved.
    RequestParser(const RequestParser&) = delete;
    RequestParser& operator=(const RequestParser&) = delete;

    // Parses from the start of `data` up to the next event. `consumed` is
    // set to the bytes used: all of them for need_more, those up to the
    // event otherwise (pass the rest again). After an error it returns
    // error again, consuming nothing.
    ParseEvent parse(std::string_view data, std::size_t& consumed);

    const RequestHead& head() const noexcept { return _head; }
    // 400, 413, 431 or 505 after an error; 0 before.
    int error_status() const noexcept { return _error_status; }
    std::string_view error_reason() const noexcept { return _error_reason; }
    // Whether part of a request has been consumed but not the whole of it.
    bool mid_message() const noexcept { return _header_bytes > 0 || !_in_headers; }

private:
    static int on_message_begin(llhttp_t* parser);
    static int on_url(llhttp_t* parser, const char* at, std::size_t length);
    static int on_header_field(llhttp_t* parser, const char* at, std::size_t length);
    static int on_header_field_complete(llhttp_t* parser);
    static int on_headers_complete(llhttp_t* parser);
    static int on_body(llhttp_t* parser, const char* at, std::size_t length);
    static int on_message_complete(llhttp_t* parser);
    static RequestParser& self(llhttp_t* parser) noexcept {
        return *static_cast<RequestParser*>(parser->data);
    }

    ParseEvent fail(int status, std::string_view reason) noexcept;
    // The checks made once the whole head is known; 0 when it is acceptable.
    int check_head() noexcept;

    static const llhttp_settings_t settings;

    llhttp_t _parser;
    ParserLimits _limits;
    RequestHead _head;
    // The target, copied: it may arrive in several pieces, and the head
    // must stay valid while the body is read from later input. Its
    // capacity is kept from one request to the next (no allocation per
    // request once it has grown to the usual size).
    std::string _target;
    // The header name being read, lower-cased, only as long as the names
    // that matter ("host"); longer names are just marked as long.
    char _field[8] = {};
    std::size_t _field_length = 0;
    unsigned _host_headers = 0;
    std::size_t _header_bytes = 0;
    uint64_t _body_bytes = 0;
    bool _in_headers = true;  // the head of the current request is not complete yet
    ParseEvent _event = ParseEvent::need_more;
    int _error_status = 0;
    std::string_view _error_reason;
};

}  // namespace shardloop::httpd
