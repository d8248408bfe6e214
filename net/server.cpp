#include "net/server.hpp"

#include <unistd.h>

#include <algorithm>

#include "net/listener.hpp"
#include "net/stream_transport.hpp"
#include "runtime/errors.hpp"

namespace shardloop {

Server::Server(EventLoop& loop, ProtocolFactory factory, int backlog)
    : _loop(loop), _factory(std::move(factory)), _backlog(backlog) {}

Server::~Server() {
    close();
    for (detail::StreamTransport* connection : _connections) {
        connection->forget_server();
    }
}

void Server::add_listener(std::shared_ptr<detail::Listener> listener) {
    _listeners.push_back(std::move(listener));
}

void Server::start_listeners() {
    if (_serving || _closed) {
        return;
    }
    _serving = true;
    for (auto& listener : _listeners) {
        listener->start();
    }
}

void Server::close() {
    if (_closed) {
        return;
    }
    _closed = true;
    _serving = false;
    for (auto& listener : _listeners) {
        listener->close();
    }
    _listeners.clear();
    for (const std::string& path : _unix_paths) {
        ::unlink(path.c_str());
    }
    _unix_paths.clear();
    if (_serving_forever.valid() && !_serving_forever.done()) {
        _serving_forever.cancel();
    }
    if (_connections.empty()) {
        wake_closed_waiters();
    }
}

void Server::close_clients() {
    std::vector<detail::StreamTransport*> connections = _connections;
    for (detail::StreamTransport* connection : connections) {
        connection->close();
    }
}

void Server::abort_clients() {
    std::vector<detail::StreamTransport*> connections = _connections;
    for (detail::StreamTransport* connection : connections) {
        connection->abort();
    }
}

Future<void> Server::wait_closed() {
    Future<void> done = _loop.create_future<void>();
    if (_closed && _connections.empty()) {
        done.set_result();
    } else {
        _closed_waiters.push_back(done);
    }
    return done;
}

Future<void> Server::start_serving() {
    start_listeners();
    Future<void> done = _loop.create_future<void>();
    done.set_result();
    return done;
}

Future<void> Server::serve_forever() {
    if (_serving_forever.valid() && !_serving_forever.done()) {
        throw RuntimeError("server is already being awaited on serve_forever()");
    }
    if (_closed) {
        throw RuntimeError("server is closed");
    }
    start_listeners();
    _serving_forever = _loop.create_future<void>();
    // Cancelling serve_forever closes the server, as in asyncio.
    _serving_forever.add_done_callback([weak = weak_from_this()](Future<void> done) {
        if (std::shared_ptr<Server> self = weak.lock(); self && done.cancelled()) {
            self->close();
        }
    });
    return _serving_forever;
}

bool Server::is_serving() const noexcept { return _serving && !_closed; }

std::vector<int> Server::sockets() const {
    std::vector<int> fds;
    for (const auto& listener : _listeners) {
        fds.push_back(listener->fd());
    }
    return fds;
}

void Server::attach(detail::StreamTransport* connection) { _connections.push_back(connection); }

void Server::detach(detail::StreamTransport* connection) noexcept {
    auto it = std::find(_connections.begin(), _connections.end(), connection);
    if (it != _connections.end()) {
        *it = _connections.back();
        _connections.pop_back();
    }
    if (_closed && _connections.empty()) {
        wake_closed_waiters();
    }
}

void Server::wake_closed_waiters() {
    for (Future<void>& waiter : std::exchange(_closed_waiters, {})) {
        if (!waiter.done()) {
            waiter.set_result();
        }
    }
}

}  // namespace shardloop
