#pragma once

// Protocols (asyncio.BaseProtocol, Protocol, BufferedProtocol,
// DatagramProtocol): the callbacks a transport makes. They run on the
// loop's own context, like any callback: they must not await, and may
// start tasks. Every method has a do-nothing default but the buffer pair of
// BufferedProtocol.
//
// A transport keeps its protocol alive until connection_lost() has been
// called, then drops it, as asyncio does: a protocol that keeps the
// shared_ptr it got in connection_made() forms no lasting cycle.

#include <cstddef>
#include <exception>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>

#include "net/address.hpp"

namespace shardloop {

class BaseTransport;

class BaseProtocol {
public:
    virtual ~BaseProtocol() = default;

    // The connection is up; `transport` is the ReadTransport, WriteTransport,
    // Transport or DatagramTransport the protocol talks to (cast it).
    virtual void connection_made(std::shared_ptr<BaseTransport> transport) { (void)transport; }
    // The connection is gone; `error` is null after an EOF or close(), else
    // what broke it (a std::system_error with the errno).
    virtual void connection_lost(std::exception_ptr error) { (void)error; }
    // The transport's write buffer went above its high-water mark / came back
    // to or below its low-water mark.
    virtual void pause_writing() {}
    virtual void resume_writing() {}
};

class Protocol : public virtual BaseProtocol {
public:
    // Bytes arrived. `data` is valid during the call only (it points into the
    // loop's receive buffers, which are reused as soon as it returns).
    virtual void data_received(std::string_view data) { (void)data; }
    // The peer closed its side. Return false (the default) to have the
    // transport close; true to keep it half-open and go on writing.
    virtual bool eof_received() { return false; }
};

class BufferedProtocol : public virtual BaseProtocol {
public:
    // A buffer the transport reads into, at least one byte long; `sizehint`
    // is what it would like (0: no preference).
    virtual std::span<char> get_buffer(std::size_t sizehint) = 0;
    // `nbytes` bytes were written at the start of the last get_buffer() span.
    virtual void buffer_updated(std::size_t nbytes) = 0;
    virtual bool eof_received() { return false; }
};

class DatagramProtocol : public virtual BaseProtocol {
public:
    // One datagram arrived from `from`; `data` is valid during the call only.
    virtual void datagram_received(std::string_view data, const SocketAddress& from) {
        (void)data;
        (void)from;
    }
    // A send or receive failed (ICMP port unreachable shows up here as
    // ECONNREFUSED); the endpoint stays open.
    virtual void error_received(const std::system_error& error) { (void)error; }
};

}  // namespace shardloop
