#pragma once

// Listener: one listening socket of a Server, accepting with a multishot
// io_uring accept. Each accepted socket becomes a StreamTransport with a new
// protocol from the server's factory.
//
// Running out of fds (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM) pauses
// accepting for a second and logs once per episode, as asyncio does: the
// pending connections wait in the backlog; the loop neither spins nor dies.

#include <memory>

#include "runtime/event_loop.hpp"
#include "runtime/reactor.hpp"

namespace shardloop {
class Server;
}

namespace shardloop::detail {

class Listener : public std::enable_shared_from_this<Listener> {
public:
    static constexpr double retry_delay = 1.0;  // seconds, asyncio's ACCEPT_RETRY_DELAY

    // Takes ownership of `fd`, a listening, non-blocking socket.
    Listener(EventLoop& loop, Server& server, int fd);
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    void start();
    // Stops accepting and closes the socket (through the ring, behind any
    // accept still queued). The listener lives on until its last
    // completion has arrived.
    void close() noexcept;
    int fd() const noexcept { return _fd; }

private:
    struct Operation {
        IoCompletion completion;
        Listener* owner;
    };

    static void on_accept(IoCompletion* self, int result, uint32_t flags);
    static void on_closed(IoCompletion* self, int result, uint32_t flags);
    void arm();
    void accepted(int fd);
    void pause_after(int error);
    void retire() noexcept;

    EventLoop& _loop;
    Server* _server;
    int _fd;
    Operation _accept{{&Listener::on_accept}, this};
    Operation _close{{&Listener::on_closed}, this};
    bool _armed = false;
    bool _closed = false;
    bool _paused = false;
    int _operations = 0;
    std::shared_ptr<Listener> _self;  // held while an operation is in the kernel
    TimerHandle _retry;
};

}  // namespace shardloop::detail
