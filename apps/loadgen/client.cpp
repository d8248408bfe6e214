#include "apps/loadgen/client.hpp"

#include <algorithm>

namespace shardloop::loadgen {

Client::Client(Worker& worker, unsigned index)
    : _worker(&worker),
      _sent_at(std::make_unique<int64_t[]>(worker.pipeline())),
      _capacity(worker.pipeline()),
      _index(index),
      _echo(worker.config().mode == Mode::echo),
      _parser(&Client::on_http_response, this) {}

void Client::connection_made(std::shared_ptr<BaseTransport> transport) {
    _transport = transport_cast<Transport>(transport);
    _writer = _transport.get();
    _head = 0;
    _in_flight = 0;
    _partial = 0;
    _overrun = false;
    _closing = false;
    _parser.reset();
    if (_worker == nullptr) {
        _transport->abort();
        return;
    }
    _worker->client_opened();
    send(monotonic_ns());  // a reconnection picks up where the old one left off
}

void Client::data_received(std::string_view data) {
    Worker* worker = _worker;
    if (worker == nullptr || _closing) {
        return;
    }
    // One clock read per batch of bytes, shared by the responses it
    // completes and the requests sent in their place. Not one per loop
    // iteration: an iteration may dispatch completions for a long time (the
    // reactor keeps reaping while the kernel posts more, and a request sent
    // early in it can be answered before it ends), so a time cached across
    // completions would make some round trips look instantaneous.
    int64_t now = monotonic_ns();
    _now = now;
    worker->count_received(data.size(), now);
    if (_echo) {
        // An echo is only counted: every response_size bytes answer the
        // oldest request in flight, however the stream was cut.
        _partial += data.size();
        uint64_t size = worker->config().response_size;
        if (_partial < size) {
            return;
        }
        uint64_t done = _partial / size;
        _partial -= done * size;
        if (done > _in_flight) {
            fail(ErrorKind::protocol);
            return;
        }
        for (; done > 0; --done) {
            complete(0);
        }
        if (!worker->open_loop()) {
            echo_back(data, now);
            return;
        }
    } else {
        HttpResponseParser::Result result = _parser.feed(data);
        if (_overrun) {
            fail(ErrorKind::protocol);
            return;
        }
        if (result == HttpResponseParser::Result::closed) {
            // The server said it closes: take it at its word, now, and
            // open another connection (the requests still in flight on
            // this one are lost, not failed).
            _closing = true;
            _transport->abort();
            return;
        }
        if (result == HttpResponseParser::Result::error) {
            fail(ErrorKind::protocol);
            return;
        }
    }
    _worker->want_send(*this);
}

// Every message is the same bytes, so the bytes just echoed are the next
// requests: written from `data`, they go out with an io_uring send straight
// from the loop's receive buffer (the transport's echo path), queued with
// the rest of the iteration's submissions, instead of a send(2) each.
void Client::echo_back(std::string_view data, int64_t now) {
    unsigned room = _capacity - _in_flight;
    std::size_t size = _worker->config().response_size;
    auto fit = static_cast<unsigned>(std::min<std::size_t>(room, data.size() / size));
    unsigned n = _worker->take(fit, now);
    if (n != 0) {
        for (unsigned i = 0; i < n; ++i) {
            push(now);
        }
        std::string_view bytes = data.substr(data.size() - n * size);
        _writer->write(bytes);
        _worker->count_sent(bytes.size(), now);
    }
    if (n < room) {
        _worker->want_send(*this);  // the rest from the request buffer
    }
}

void Client::on_http_response(void* self, unsigned status) {
    auto* client = static_cast<Client*>(self);
    if (client->_in_flight == 0) {
        client->_overrun = true;
        return;
    }
    client->complete(status);
}

bool Client::eof_received() {
    if (_worker != nullptr && !_closing) {
        if (!_echo && _in_flight > 0) {
            // A response that runs to the end of the connection ends here.
            _now = monotonic_ns();
            _parser.finish();
        }
        // A server may close a connection that owes nothing; one that
        // still owes responses is counted as an error by the Worker.
        _closing = _in_flight == 0 && !_overrun;
    }
    return false;  // the transport closes; connection_lost follows
}

void Client::connection_lost(std::exception_ptr error) {
    _transport.reset();
    _writer = nullptr;
    Worker* worker = _worker;
    if (worker == nullptr) {
        return;
    }
    for (; _in_flight > 0; --_in_flight) {
        worker->count_lost(_sent_at[_head]);
        _head = _head + 1 == _capacity ? 0 : _head + 1;
    }
    worker->client_lost(*this, std::move(error), _closing);
}

void Client::send(int64_t now) {
    if (_writer == nullptr || _closing || !_worker->sending()) {
        return;
    }
    unsigned room = _capacity - _in_flight;
    if (room == 0) {
        return;
    }
    if (_worker->open_loop()) {
        // Each request keeps the time it was due: a request that waited
        // for room in the pipeline, or for a connection, waited on the
        // server's account (coordinated omission).
        unsigned n = static_cast<unsigned>(std::min<uint64_t>(room, _due - _next));
        for (unsigned i = 0; i < n; ++i) {
            push(_worker->due_ns(_next++, _index));
        }
        write(n, now);
        return;
    }
    unsigned n = _worker->take(room, now);
    for (unsigned i = 0; i < n; ++i) {
        push(now);
    }
    write(n, now);
}

void Client::write(unsigned count, int64_t now) {
    if (count == 0) {
        return;
    }
    std::string_view bytes = _worker->requests(count);
    _writer->write(bytes);
    _worker->count_sent(bytes.size(), now);
}

void Client::abort() {
    if (_transport != nullptr) {
        _closing = true;
        _transport->abort();
    }
}

void Client::fail(ErrorKind kind) {
    _worker->count_error(kind);
    _closing = true;
    _transport->abort();
}

}  // namespace shardloop::loadgen
