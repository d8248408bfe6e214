#include "net/net_state.hpp"

#include <string>
#include <vector>

#include "net/transports.hpp"
#include "runtime/errors.hpp"

namespace shardloop::detail {

namespace {
constexpr uint16_t receive_buffer_count = 1024;
constexpr uint32_t receive_buffer_size = 64 * 1024;
}  // namespace

NetState& NetState::of(EventLoop& loop) {
    std::unique_ptr<LoopExtension>& slot = loop.net_extension();
    if (!slot) {
        slot = std::make_unique<NetState>(loop);
    }
    return static_cast<NetState&>(*slot);
}

BufferRing& NetState::receive_buffers() {
    if (!_receive_buffers) {
        _receive_buffers = _loop.reactor().make_buffer_ring(receive_group, receive_buffer_count,
                                                            receive_buffer_size);
    }
    return *_receive_buffers;
}

void NetState::register_transport(int fd, BaseTransport* transport, ClosableAtLoopClose* closable) {
    _transports[fd] = Entry{transport, closable};
}

void NetState::unregister_transport(int fd) noexcept { _transports.erase(fd); }

BaseTransport* NetState::transport_for(int fd) const noexcept {
    auto it = _transports.find(fd);
    return it == _transports.end() ? nullptr : it->second.transport;
}

void NetState::ensure_fd_no_transport(int fd) const {
    if (BaseTransport* transport = transport_for(fd)) {
        throw RuntimeError("File descriptor " + std::to_string(fd) + " is used by transport " +
                           transport->repr());
    }
}

void NetState::close() noexcept {
    std::vector<ClosableAtLoopClose*> open;
    for (auto& [fd, entry] : _transports) {
        if (entry.closable != nullptr) {
            open.push_back(entry.closable);
        }
    }
    for (ClosableAtLoopClose* closable : open) {
        closable->abort_at_loop_close();
    }
}

}  // namespace shardloop::detail
