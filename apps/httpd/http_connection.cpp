// HttpConnection: the session on a transport.

#include "http_connection.hpp"

#include <algorithm>

namespace shardloop::httpd {

namespace {

// The body of a file goes out in sendfile calls of this size; each that
// completes counts as progress for the connection's deadline, so a client
// reading a large file slowly is not cut off, while one that stops
// reading altogether is.
constexpr uint64_t file_chunk = uint64_t{4} << 20;

}  // namespace

HttpConnection::HttpConnection(ShardState& shard)
    : _shard(shard),
      _counters(shard.counters()),
      _session(shard.handler(), shard.date(), shard.counters(), shard.config().limits) {}

void HttpConnection::connection_made(std::shared_ptr<BaseTransport> transport) {
    _transport = transport_cast<Transport>(transport);
    _shard.add(*this);
    if (_shard.draining()) {
        // Accepted just before the listener closed: one answer, then close.
        _draining = true;
        _session.set_draining();
    }
}

void HttpConnection::data_received(std::string_view data) {
    _counters.bytes_received += data.size();
    if (_lingering || _closed) {
        return;  // after the last response: dropped
    }
    Step step = _session.feed(data);
    // A complete request moves the deadline; bytes alone do not, so a
    // client that trickles a request in (slowloris) still times out.
    if (_session.requests() != _requests_seen) {
        _requests_seen = _session.requests();
        _shard.refresh(*this);
    }
    drive(step);
}

bool HttpConnection::eof_received() {
    _peer_eof = true;
    if (_lingering || _closed) {
        _closed = true;
        return false;
    }
    // Requests already received are still answered (a client may send its
    // requests and shut down its side before reading); with nothing left
    // to answer (at most part of a request, which can no longer complete),
    // the transport closes.
    bool keep_open = _waiting || (_writing_paused && !_session.idle());
    _closed = !keep_open;  // false: the transport closes itself
    return keep_open;
}

void HttpConnection::connection_lost(std::exception_ptr /*error*/) {
    _lost = true;
    _closed = true;
    if (!_shard_gone) {
        _shard.remove(*this);
    }
    // The file descriptor of a sendfile in flight stays open (the session
    // owns it) until that sendfile's callback, which holds this object,
    // has run.
    _transport.reset();
}

void HttpConnection::pause_writing() {
    _writing_paused = true;
    update_reading();
}

void HttpConnection::resume_writing() {
    _writing_paused = false;
    if (_closed || _lingering) {
        return;
    }
    _shard.refresh(*this);  // the peer is reading: progress
    if (_waiting) {
        update_reading();
    } else {
        drive(_session.resume());
    }
}

void HttpConnection::drive(Step step) {
    for (;;) {
        switch (step) {
            case Step::need_more:
                flush();
                // Everything the peer sent is answered: after its EOF, or
                // in a drain (once no request is part-way in), close.
                if (!_closed && (_peer_eof || (_draining && _session.idle()))) {
                    close_now();
                    return;
                }
                update_reading();
                return;
            case Step::flush:
                flush();
                if (_writing_paused || _closed) {
                    update_reading();  // resume_writing() goes on
                    return;
                }
                step = _session.resume();
                continue;
            case Step::send_file:
                flush();
                _waiting = true;
                _file_offset = 0;
                update_reading();
                send_file_chunk();
                return;
            case Step::metrics: {
                flush();
                _waiting = true;
                update_reading();
                Task<std::string> gathering = _shard.gather_metrics();
                gathering.add_done_callback([self = shared_from_this()](Future<std::string> done) {
                    self->metrics_ready(done);
                });
                return;
            }
            case Step::close:
                flush();
                if (_session.should_linger()) {
                    linger();
                } else {
                    close_now();
                }
                return;
            case Step::busy:
                return;
        }
    }
}

void HttpConnection::flush() {
    const std::string& out = _session.output();
    if (out.empty()) {
        return;
    }
    if (!_closed) {
        _counters.bytes_sent += out.size();
        _transport->write(out);
    }
    _session.output_sent();
}

void HttpConnection::linger() {
    if (_closed || _lingering) {
        return;
    }
    if (_peer_eof) {
        close_now();
        return;
    }
    _lingering = true;
    _transport->write_eof();
    // The linger is bounded by the same timeout as an idle connection.
    _shard.refresh(*this);
    update_reading();
}

void HttpConnection::close_now() {
    if (_closed) {
        return;
    }
    _closed = true;
    _transport->close();
}

void HttpConnection::abort_now() {
    if (_closed && _transport == nullptr) {
        return;
    }
    _closed = true;
    if (_transport) {
        _transport->abort();
    }
}

void HttpConnection::update_reading() {
    if (_closed || !_transport) {
        return;
    }
    bool want = _lingering || (!_waiting && !_writing_paused);
    if (want == _reading) {
        return;
    }
    _reading = want;
    if (want) {
        _transport->resume_reading();
    } else {
        _transport->pause_reading();
    }
}

void HttpConnection::timed_out() {
    if (_lost) {
        return;
    }
    if (!_lingering) {
        ++_counters.timeouts;
    }
    // A quiet connection gets a plain close. One with a response under way
    // (a file, bytes the peer does not read) would wait for ever on a
    // close(): it is aborted.
    if (!_lingering && !_waiting && _session.idle() && _transport->get_write_buffer_size() == 0) {
        close_now();
    } else {
        abort_now();
    }
}

void HttpConnection::drain() {
    _draining = true;
    _session.set_draining();
    if (_closed || _lingering || _waiting || !_session.idle()) {
        return;  // the response under way will be the last
    }
    close_now();
}

void HttpConnection::send_file_chunk() {
    uint64_t left = _session.file_size() - _file_offset;
    std::size_t count = static_cast<std::size_t>(std::min(left, file_chunk));
    Future<std::size_t> sent;
    try {
        sent = get_running_loop().sendfile(_transport, _session.file_fd(), _file_offset, count);
    } catch (const std::exception&) {
        abort_now();  // the transport is closing: the response cannot be finished
        return;
    }
    sent.add_done_callback(
        [self = shared_from_this()](Future<std::size_t> done) { self->file_chunk_sent(done); });
}

void HttpConnection::file_chunk_sent(const Future<std::size_t>& sent) {
    if (_lost) {
        return;
    }
    if (sent.cancelled() || sent.exception() != nullptr) {
        // The peer went away (reset) or the file could not be read: the
        // head promised a length the body can no longer meet.
        abort_now();
        return;
    }
    std::size_t n = sent.result();
    _counters.bytes_sent += n;
    _file_offset += n;
    if (n == 0) {
        abort_now();  // the file shrank under us
        return;
    }
    _shard.refresh(*this);
    if (_file_offset < _session.file_size()) {
        send_file_chunk();
        return;
    }
    _session.file_done();
    _waiting = false;
    drive(_session.resume());
}

void HttpConnection::metrics_ready(const Future<std::string>& body) {
    if (_lost) {
        return;
    }
    if (body.cancelled() || body.exception() != nullptr) {
        abort_now();  // the shards are stopping
        return;
    }
    _session.metrics_done(body.result());
    _waiting = false;
    drive(_session.resume());
}

}  // namespace shardloop::httpd
