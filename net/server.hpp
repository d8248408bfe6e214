#pragma once

// Server (asyncio.Server): the listening sockets of create_server and
// create_unix_server, accepting connections into transports.

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "runtime/event_loop.hpp"
#include "runtime/future.hpp"

namespace shardloop {

namespace detail {
class Listener;
class StreamTransport;
}  // namespace detail

class Server : public std::enable_shared_from_this<Server> {
public:
    Server(EventLoop& loop, ProtocolFactory factory, int backlog);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    EventLoop& get_loop() const noexcept { return _loop; }

    // Stops listening and closes the listening sockets; the connections
    // already accepted stay open. Idempotent.
    void close();
    // close() each connection (after its buffered data) / abort() each.
    void close_clients();
    void abort_clients();
    // Done once the server is closed and its last connection is gone.
    Future<void> wait_closed();
    // Starts listening and accepting (when created with start_serving =
    // false); done at once. Throws std::system_error when listen(2) fails.
    Future<void> start_serving();
    // Accepts until cancelled; cancelling it closes the server (asyncio).
    // RuntimeError when the server is closed or already serving forever.
    Future<void> serve_forever();
    bool is_serving() const noexcept;
    // The listening sockets' fds (empty once closed).
    std::vector<int> sockets() const;
    // Connections currently open.
    std::size_t active_count() const noexcept { return _connections.size(); }

    // ---- Internals (net/) ----
    void add_listener(std::shared_ptr<detail::Listener> listener);
    void start_listeners();
    void attach(detail::StreamTransport* connection);
    void detach(detail::StreamTransport* connection) noexcept;
    const ProtocolFactory& protocol_factory() const noexcept { return _factory; }
    int backlog() const noexcept { return _backlog; }
    // Unix servers remove their socket files at close, unless the file at
    // the path is no longer the one bound now (asyncio compares the inode).
    void remove_on_close(std::string path);

private:
    void wake_closed_waiters();

    EventLoop& _loop;
    ProtocolFactory _factory;
    int _backlog;
    bool _serving = false;
    bool _closed = false;
    std::vector<std::shared_ptr<detail::Listener>> _listeners;
    std::vector<detail::StreamTransport*> _connections;
    std::vector<Future<void>> _closed_waiters;
    struct UnixPath {
        std::string path;
        ino_t inode;
    };
    std::vector<UnixPath> _unix_paths;
    Future<void> _serving_forever;
};

}  // namespace shardloop
