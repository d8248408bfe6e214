// RequestParser: llhttp's callbacks fill in the head; parse() counts the
// header bytes and turns llhttp's results into events.
//
// Counting the header section exactly needs to know where it starts and
// ends in the input, which llhttp's callbacks do not say. So both ends are
// pause points: on_headers_complete and on_message_complete return
// HPE_PAUSED, llhttp_execute then stops right after the last byte of the
// head (or of the request) and llhttp_get_error_pos() says where. Each
// llhttp_execute call thus covers either part of one head or part of one
// body, never both: the bytes it consumes while a head is incomplete are
// the head's.

#include "http_parser.hpp"

#include <cstring>

namespace shardloop::httpd {

const llhttp_settings_t RequestParser::settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &RequestParser::on_message_begin;
    s.on_url = &RequestParser::on_url;
    s.on_header_field = &RequestParser::on_header_field;
    s.on_header_field_complete = &RequestParser::on_header_field_complete;
    s.on_headers_complete = &RequestParser::on_headers_complete;
    s.on_body = &RequestParser::on_body;
    s.on_message_complete = &RequestParser::on_message_complete;
    return s;
}();

RequestParser::RequestParser(ParserLimits limits) : _limits(limits) {
    llhttp_init(&_parser, HTTP_REQUEST, &settings);
    _parser.data = this;
    _target.reserve(128);
}

int RequestParser::on_message_begin(llhttp_t* parser) {
    RequestParser& p = self(parser);
    p._target.clear();
    p._field_length = 0;
    p._host_headers = 0;
    p._body_bytes = 0;
    return HPE_OK;
}

int RequestParser::on_url(llhttp_t* parser, const char* at, std::size_t length) {
    RequestParser& p = self(parser);
    // A target longer than the whole header section may be fails now,
    // before it is copied: the copy never grows past the limit.
    if (p._target.size() + length > p._limits.max_header_bytes) {
        p._error_status = 431;
        p._error_reason = "request header fields too large";
        return HPE_USER;
    }
    p._target.append(at, length);
    return HPE_OK;
}

int RequestParser::on_header_field(llhttp_t* parser, const char* at, std::size_t length) {
    RequestParser& p = self(parser);
    for (std::size_t i = 0; i < length; ++i) {
        if (p._field_length < sizeof p._field) {
            char c = at[i];
            p._field[p._field_length] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        }
        ++p._field_length;
    }
    return HPE_OK;
}

int RequestParser::on_header_field_complete(llhttp_t* parser) {
    RequestParser& p = self(parser);
    if (p._field_length == 4 && std::memcmp(p._field, "host", 4) == 0) {
        ++p._host_headers;
    }
    p._field_length = 0;
    return HPE_OK;
}

int RequestParser::on_headers_complete(llhttp_t* parser) {
    RequestParser& p = self(parser);
    p._in_headers = false;
    p._head.method = static_cast<llhttp_method_t>(parser->method);
    p._head.http_major = parser->http_major;
    p._head.http_minor = parser->http_minor;
    p._head.keep_alive = llhttp_should_keep_alive(parser) != 0;
    p._head.target = p._target;
    if (parser->method == HTTP_CONNECT) {
        // What follows a CONNECT is a tunnel, which this server does not
        // open: it answers and closes.
        p._head.keep_alive = false;
    } else {
        // RFC 7230 section 6.7: a server may ignore Upgrade. Without this,
        // llhttp would hand everything after the request to a protocol
        // this server does not speak.
        parser->upgrade = 0;
    }
    p._event = ParseEvent::headers_complete;
    return HPE_PAUSED;
}

int RequestParser::on_body(llhttp_t* parser, const char* /*at*/, std::size_t length) {
    RequestParser& p = self(parser);
    p._body_bytes += length;
    if (p._body_bytes > p._limits.max_body_bytes) {
        p._error_status = 413;
        p._error_reason = "request body too large";
        return HPE_USER;
    }
    return HPE_OK;
}

int RequestParser::on_message_complete(llhttp_t* parser) {
    RequestParser& p = self(parser);
    p._event = ParseEvent::message_complete;
    p._in_headers = true;
    p._header_bytes = 0;
    return HPE_PAUSED;
}

ParseEvent RequestParser::fail(int status, std::string_view reason) noexcept {
    _error_status = status;
    _error_reason = reason;
    return ParseEvent::error;
}

int RequestParser::check_head() noexcept {
    if (_head.http_major != 1) {
        _error_reason = "HTTP version not supported";
        return 505;
    }
    // RFC 7230 section 5.4: exactly one Host in HTTP/1.1, at most one in 1.0.
    if (_host_headers > 1 || (_head.http_minor >= 1 && _host_headers == 0)) {
        _error_reason = _host_headers == 0 ? "missing Host header" : "more than one Host header";
        return 400;
    }
    if ((_parser.flags & F_CONTENT_LENGTH) != 0 &&
        _parser.content_length > _limits.max_body_bytes) {
        _error_reason = "request body too large";
        return 413;
    }
    return 0;
}

ParseEvent RequestParser::parse(std::string_view data, std::size_t& consumed) {
    consumed = 0;
    if (_error_status != 0) {
        return ParseEvent::error;
    }
    // With the head complete, llhttp may have an event to give without any
    // more input (the end of a request without a body): it is run then,
    // with no bytes, and only a head still being read needs some.
    if (data.empty() && _in_headers) {
        return ParseEvent::need_more;
    }
    static constexpr char nothing = '\0';
    const char* begin = data.empty() ? &nothing : data.data();
    const bool was_in_headers = _in_headers;
    _event = ParseEvent::need_more;
    llhttp_errno_t status = llhttp_execute(&_parser, begin, data.size());
    consumed = data.size();
    if (status != HPE_OK) {
        const char* stop = llhttp_get_error_pos(&_parser);
        if (stop != nullptr && stop >= begin && stop <= begin + data.size()) {
            consumed = static_cast<std::size_t>(stop - begin);
        }
    }
    if (was_in_headers) {
        _header_bytes += consumed;
        if (_header_bytes > _limits.max_header_bytes) {
            return fail(431, "request header fields too large");
        }
    }
    switch (status) {
        case HPE_OK:
            return ParseEvent::need_more;
        case HPE_PAUSED:
            llhttp_resume(&_parser);
            if (_event == ParseEvent::headers_complete) {
                if (int rejected = check_head(); rejected != 0) {
                    return fail(rejected, _error_reason);
                }
            }
            return _event;
        case HPE_USER:
            return ParseEvent::error;  // a callback set the status
        default: {
            const char* reason = llhttp_get_error_reason(&_parser);
            return fail(400, reason != nullptr ? reason : llhttp_errno_name(status));
        }
    }
}

}  // namespace shardloop::httpd
