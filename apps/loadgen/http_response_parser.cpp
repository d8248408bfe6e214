#include "apps/loadgen/http_response_parser.hpp"

namespace shardloop::loadgen {

HttpResponseParser::HttpResponseParser(OnResponse on_response, void* context) noexcept
    : _on_response(on_response), _context(context) {
    // Shared by every parser (llhttp keeps a pointer to it).
    static const llhttp_settings_t callbacks = [] {
        llhttp_settings_t s;
        llhttp_settings_init(&s);
        s.on_message_begin = &HttpResponseParser::on_message_begin;
        s.on_headers_complete = &HttpResponseParser::on_headers_complete;
        s.on_message_complete = &HttpResponseParser::on_message_complete;
        return s;
    }();
    llhttp_init(&_parser, HTTP_RESPONSE, &callbacks);
    _parser.data = this;
}

HttpResponseParser::Result HttpResponseParser::feed(std::string_view data) noexcept {
    if (_state != Result::ok || data.empty()) {
        return _state;
    }
    llhttp_errno_t error = llhttp_execute(&_parser, data.data(), data.size());
    if (error == HPE_OK) {
        return Result::ok;
    }
    // on_message_complete pauses the parser after a response that closes
    // the connection: what follows it is not ours to read.
    _state = error == HPE_PAUSED && !_keep_alive ? Result::closed : Result::error;
    return _state;
}

HttpResponseParser::Result HttpResponseParser::finish() noexcept {
    if (_state != Result::ok) {
        return _state;
    }
    llhttp_errno_t error = llhttp_finish(&_parser);
    if (error == HPE_OK || (error == HPE_PAUSED && !_keep_alive)) {
        // A response delimited by the end of the connection is complete
        // now; a connection that ends between responses is fine too.
        _state = Result::closed;
    } else {
        _state = Result::error;
    }
    return _state;
}

void HttpResponseParser::reset() noexcept {
    llhttp_init(&_parser, HTTP_RESPONSE, static_cast<const llhttp_settings_t*>(_parser.settings));
    _parser.data = this;
    _state = Result::ok;
    _in_response = false;
    _keep_alive = true;
}

std::string HttpResponseParser::error() const {
    if (_state != Result::error) {
        return {};
    }
    if (_parser.error == HPE_OK) {
        return "connection closed in the middle of a response";
    }
    std::string text = llhttp_errno_name(static_cast<llhttp_errno_t>(_parser.error));
    if (_parser.reason != nullptr) {
        text += std::string(": ") + _parser.reason;
    }
    return text;
}

int HttpResponseParser::on_message_begin(llhttp_t* parser) noexcept {
    static_cast<HttpResponseParser*>(parser->data)->_in_response = true;
    return HPE_OK;
}

int HttpResponseParser::on_headers_complete(llhttp_t* parser) noexcept {
    // Read here, where llhttp's own documentation reads them: the flags
    // they come from are reset for the next message.
    static_cast<HttpResponseParser*>(parser->data)->_keep_alive =
        llhttp_should_keep_alive(parser) != 0;
    return HPE_OK;
}

int HttpResponseParser::on_message_complete(llhttp_t* parser) noexcept {
    auto* self = static_cast<HttpResponseParser*>(parser->data);
    self->_in_response = false;
    unsigned status = parser->status_code;
    // An interim response (100 Continue, 103 Early Hints) precedes the real one.
    if (status >= 200 || status < 100) {
        self->_on_response(self->_context, status);
    }
    return self->_keep_alive ? HPE_OK : HPE_PAUSED;
}

}  // namespace shardloop::loadgen
