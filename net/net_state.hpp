#pragma once

// The I/O layer's per-loop state: the receive buffer ring shared by the
// loop's stream transports, and the registry of fds owned by transports
// (asyncio's loop._transports), which sock_* and add_reader consult.

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "runtime/event_loop.hpp"
#include "runtime/reactor.hpp"

namespace shardloop {
class BaseTransport;
}

namespace shardloop::detail {

// A transport the loop may have to stop at close().
class ClosableAtLoopClose {
public:
    virtual ~ClosableAtLoopClose() = default;
    // The loop is closing: cancel the kernel operations, drop the protocol.
    virtual void abort_at_loop_close() noexcept = 0;
};

class NetState final : public LoopExtension {
public:
    // The buffer group of the receive ring.
    static constexpr uint16_t receive_group = 1;

    explicit NetState(EventLoop& loop) : _loop(loop) {}

    // The loop's state, created on first use.
    static NetState& of(EventLoop& loop);
    // The loop's state if it has been created, else null.
    static NetState* find(EventLoop& loop) noexcept {
        return static_cast<NetState*>(loop.net_extension().get());
    }

    // The provided buffers stream transports receive into, registered on
    // first use (1024 buffers of 64 KiB; a multishot recv takes one per
    // completion and the transport recycles it after data_received).
    BufferRing& receive_buffers();

    // Transport registry, keyed by fd.
    void register_transport(int fd, BaseTransport* transport, ClosableAtLoopClose* closable);
    void unregister_transport(int fd) noexcept;
    BaseTransport* transport_for(int fd) const noexcept;
    // Throws RuntimeError("File descriptor N is used by transport <...>").
    void ensure_fd_no_transport(int fd) const override;

    void close() noexcept override;

private:
    struct Entry {
        BaseTransport* transport;
        ClosableAtLoopClose* closable;
    };

    EventLoop& _loop;
    std::unique_ptr<BufferRing> _receive_buffers;
    std::unordered_map<int, Entry> _transports;
};

}  // namespace shardloop::detail
