// HttpSession: the parser's events turned into responses.

#include "http_session.hpp"

namespace shardloop::httpd {

namespace {

// Buffers that grew for a burst are given back afterwards, so that an idle
// connection costs little memory; below this they are kept for reuse.
constexpr std::size_t keep_capacity = 16 * 1024;

void trim(std::string& buffer) {
    if (buffer.capacity() > keep_capacity) {
        std::string().swap(buffer);
    } else {
        buffer.clear();
    }
}

}  // namespace

HttpSession::HttpSession(const RequestHandler& handler, const DateCache& date,
                         ServerCounters& counters, SessionLimits limits)
    : _handler(handler), _date(date), _counters(counters), _limits(limits), _parser(limits.parser) {
    _out.reserve(4096);
}

void HttpSession::output_sent() noexcept { trim(_out); }

bool HttpSession::idle() const noexcept {
    return _pending == Pending::none && !_parser.mid_message() && _kept_pos == _kept.size();
}

Step HttpSession::feed(std::string_view data) {
    if (_pending != Pending::none || _kept_pos < _kept.size()) {
        if (_pending == Pending::closed) {
            _dropped_input = _dropped_input || !data.empty();
            return Step::close;  // nothing more is read after the last response
        }
        _kept.append(data);
        return _pending == Pending::none ? resume() : Step::busy;
    }
    std::size_t used = 0;
    Step step = process(data, used);
    if (step == Step::close) {
        _dropped_input = _dropped_input || used < data.size();
    } else if (step != Step::need_more) {
        keep(data.substr(used));
    }
    return step;
}

Step HttpSession::resume() {
    switch (_pending) {
        case Pending::closed:
            // The last response was a file's or the metrics': what came
            // after it is dropped.
            _dropped_input = _dropped_input || _kept_pos < _kept.size();
            return Step::close;
        case Pending::file:
        case Pending::metrics:
            return Step::busy;
        case Pending::none:
            break;
    }
    if (_kept_pos == _kept.size()) {
        return Step::need_more;
    }
    std::size_t used = 0;
    Step step = process(std::string_view(_kept).substr(_kept_pos), used);
    _kept_pos += used;
    if (step == Step::close) {
        _dropped_input = _dropped_input || _kept_pos < _kept.size();
    }
    if (_kept_pos == _kept.size() || step == Step::close) {
        trim(_kept);
        _kept_pos = 0;
    }
    return step;
}

void HttpSession::keep(std::string_view data) {
    if (!data.empty()) {
        _kept.append(data);
    }
}

void HttpSession::file_done() noexcept {
    _file.reset();
    _file_size = 0;
    _pending = _pending_persistence == Persistence::close ? Pending::closed : Pending::none;
}

void HttpSession::metrics_done(std::string_view body) {
    ResponseHead head;
    head.content_type = metrics_content_type;
    head.persistence = _pending_persistence;
    append_response(_out, head, _date.value(), body, _metrics_head_only);
    _pending = _pending_persistence == Persistence::close ? Pending::closed : Pending::none;
}

Persistence HttpSession::persistence() const noexcept {
    const RequestHead& head = _parser.head();
    if (!head.keep_alive || _draining) {
        return Persistence::close;
    }
    return head.http_minor == 0 ? Persistence::keep_alive_1_0 : Persistence::keep_alive;
}

Step HttpSession::process(std::string_view data, std::size_t& used) {
    used = 0;
    for (;;) {
        std::size_t consumed = 0;
        ParseEvent event = _parser.parse(data.substr(used), consumed);
        used += consumed;
        switch (event) {
            case ParseEvent::need_more:
                return Step::need_more;
            case ParseEvent::headers_complete:
                break;  // the body, if any, is read and discarded on the way
            case ParseEvent::message_complete: {
                Step step = respond();
                if (step != Step::need_more) {
                    return step;
                }
                if (_out.size() >= _limits.flush_bytes) {
                    return used == data.size() ? Step::need_more : Step::flush;
                }
                break;
            }
            case ParseEvent::error:
                return respond_error();
        }
    }
}

Step HttpSession::respond() {
    ++_requests;
    ++_counters.requests;
    Persistence persistence = this->persistence();
    Handled handled = _handler.handle(_parser.head(), persistence, _date.value(), _out, _scratch);
    if (handled.kind != Handled::Kind::metrics) {
        _counters.count_response(handled.status);
    }
    switch (handled.kind) {
        case Handled::Kind::send_file:
            _file = std::move(handled.file);
            _file_size = handled.file_size;
            _pending = Pending::file;
            _pending_persistence = persistence;
            return Step::send_file;
        case Handled::Kind::metrics:
            _counters.count_response(200);
            _pending = Pending::metrics;
            _pending_persistence = persistence;
            _metrics_head_only = _parser.head().method == HTTP_HEAD;
            return Step::metrics;
        case Handled::Kind::done:
            break;
    }
    if (persistence == Persistence::close) {
        _pending = Pending::closed;
        return Step::close;
    }
    return Step::need_more;
}

Step HttpSession::respond_error() {
    int status = _parser.error_status();
    ++_counters.parse_errors;
    _counters.count_response(status);
    ResponseHead head;
    head.status = status;
    head.content_type = "text/plain; charset=utf-8";
    head.persistence = Persistence::close;
    append_response(_out, head, _date.value(), error_body(status), false);
    _pending = Pending::closed;
    _failed = true;
    return Step::close;
}

}  // namespace shardloop::httpd
