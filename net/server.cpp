#include "net/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

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
    // asyncio listens here, not when the socket is bound: a server created
    // with start_serving = false refuses connections until it starts.
    for (auto& listener : _listeners) {
        if (::listen(listener->fd(), _backlog) != 0) {
            throw std::system_error(errno, std::generic_category(), "listen");
        }
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
    for (const UnixPath& unix_path : _unix_paths) {
        struct stat info {};
        if (::stat(unix_path.path.c_str(), &info) == 0 && info.st_ino == unix_path.inode) {
            ::unlink(unix_path.path.c_str());
        }
    }
    _unix_paths.clear();
    if (_serving_forever.valid() && !_serving_forever.done()) {
        _serving_forever.cancel();
    }
    if (_connections.empty()) {
        wake_closed_waiters();
    }
}

void Server::remove_on_close(std::string path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0) {
        _unix_paths.push_back(UnixPath{std::move(path), info.st_ino});
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
