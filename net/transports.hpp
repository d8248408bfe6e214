#pragma once

// Transports (asyncio.BaseTransport, ReadTransport, WriteTransport,
// Transport, DatagramTransport): the interfaces; net/ has the socket and
// pipe implementations. Every method is for the loop's thread.

#include <any>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "net/address.hpp"
#include "net/protocols.hpp"

namespace shardloop {

class BaseTransport {
public:
    virtual ~BaseTransport() = default;

    // Closes after the buffered data is sent; connection_lost(null) follows
    // once, on a later iteration. Idempotent.
    virtual void close() = 0;
    virtual bool is_closing() const = 0;

    // asyncio's get_extra_info: "peername" / "sockname" (SocketAddress),
    // "socket" / "pipe" (the fd, int). Anything else, or a key this
    // transport does not have: `default_value`.
    std::any get_extra_info(std::string_view name, std::any default_value = {}) const {
        std::any value = extra_info(name);
        return value.has_value() ? value : default_value;
    }

    // Switches the protocol that gets the callbacks from now on (a Protocol
    // and a BufferedProtocol may replace each other on a stream).
    virtual void set_protocol(std::shared_ptr<BaseProtocol> protocol) = 0;
    virtual std::shared_ptr<BaseProtocol> get_protocol() const = 0;

    // "<_SelectorSocketTransport fd=7 read=polling write=<idle, bufsize=0>>"
    // in asyncio; here the class, the fd and the state, for messages and logs.
    virtual std::string repr() const = 0;

protected:
    virtual std::any extra_info(std::string_view name) const = 0;
};

class ReadTransport : public virtual BaseTransport {
public:
    virtual bool is_reading() const = 0;
    // Both idempotent; no data_received between pause and resume.
    virtual void pause_reading() = 0;
    virtual void resume_reading() = 0;
};

class WriteTransport : public virtual BaseTransport {
public:
    // Sends `data` now when the kernel takes it, else buffers a copy. Never
    // blocks; watch pause_writing() for back-pressure.
    virtual void write(std::string_view data) = 0;
    virtual void writelines(std::span<const std::string_view> pieces) {
        for (std::string_view piece : pieces) {
            write(piece);
        }
    }
    virtual bool can_write_eof() const = 0;
    // Shuts the write side down after the buffered data.
    virtual void write_eof() = 0;
    // Closes at once, dropping the buffered data; connection_lost(null) follows.
    virtual void abort() = 0;
    virtual std::size_t get_write_buffer_size() const = 0;
    // (low, high), as asyncio returns them.
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
    // asyncio's rules: high alone sets low to high / 4; low alone sets high
    // to 4 * low; neither: 64 KiB / 16 KiB. Throws std::invalid_argument
    // unless high >= low >= 0.
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                         std::optional<std::size_t> low = {}) = 0;
};

class Transport : public ReadTransport, public WriteTransport {};

class DatagramTransport : public virtual BaseTransport {
public:
    // Sends one datagram; `to` may be omitted on a connected endpoint and
    // must then be omitted or equal the remote address. A send error goes
    // to the protocol's error_received; the endpoint stays open.
    virtual void sendto(std::string_view data, const std::optional<SocketAddress>& to = {}) = 0;
    virtual void abort() = 0;
    virtual std::size_t get_write_buffer_size() const = 0;
};

// connection_made() hands over a BaseTransport; this gives the interface
// the protocol talks to: a Transport for a stream, a DatagramTransport for
// an endpoint, a ReadTransport or WriteTransport for a pipe. (BaseTransport
// is a virtual base, as asyncio's interfaces share it, so static casts do
// not apply.) Throws std::invalid_argument when the transport is not one.
template <class T>
std::shared_ptr<T> transport_cast(const std::shared_ptr<BaseTransport>& transport) {
    std::shared_ptr<T> result = std::dynamic_pointer_cast<T>(transport);
    if (!result && transport) {
        throw std::invalid_argument("transport_cast: " + transport->repr() +
                                    " does not have the interface asked for");
    }
    return result;
}

// What create_connection and friends complete with.
template <class T>
struct Connection {
    std::shared_ptr<T> transport;
    std::shared_ptr<BaseProtocol> protocol;
};

}  // namespace shardloop
