#pragma once

// ShardedServer: create_server on every shard, all bound to one port with
// SO_REUSEPORT, so the kernel spreads incoming connections over the shards
// and each connection stays on the shard that accepted it (no connection
// ever moves between cores).
//
//     ShardedServer server;                       // outlives the shards' use of it
//     await(server.start([] { return std::make_shared<Echo>(); }, "127.0.0.1", 0));
//     uint16_t port = server.port();              // port 0 picked one; every shard has it
//     ...
//     await(server.stop());                       // stop accepting, close clients, wait
//
// The protocol factory is copied to every shard and called there, on each
// shard's own thread. start and stop are called on a shard, from a task.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "net/net_options.hpp"
#include "net/server.hpp"
#include "policy/sharded.hpp"

namespace shardloop {

// How the kernel chooses the shard that accepts a new connection.
enum class ConnectionSpread {
    // SO_REUSEPORT's hash of the connection's addresses and ports: even over
    // the shards, wherever the connection's packets are processed.
    hash,
    // The shard pinned to the CPU that processed the connection's first
    // packet (ServerOptions::incoming_cpu on each shard's listener), the
    // hashed one when no shard is on that CPU. Request and response are
    // then handled on one CPU: no wake-up crosses cores, which is what
    // costs most at light load. Connections follow the CPUs that process
    // packets (the NIC's receive queues, RPS, or the client's CPU on
    // loopback), so a machine that processes them on fewer CPUs than it has
    // shards leaves the other shards without connections. Needs pinned
    // shards.
    incoming_cpu,
};

class ShardedServer {
public:
    explicit ShardedServer(ConnectionSpread spread = ConnectionSpread::hash) : _spread(spread) {}

    // Creates the server on the calling shard first (so that port 0 picks
    // the port), then on every other shard at that port, each with
    // reuse_port set. Fails with create_server's error (address in use,
    // say) after closing the servers already created, and with
    // std::invalid_argument when the spread is incoming_cpu and the shards
    // are not pinned.
    Task<void> start(ProtocolFactory factory, std::string host, uint16_t port,
                     ServerOptions options = {});

    // The port every shard listens on; 0 before start.
    uint16_t port() const noexcept { return _port.load(std::memory_order_acquire); }

    // This shard's server.
    Server& local() { return *_servers.local().server; }

    // Stops accepting on every shard, closes every connection (flushing
    // what they have to write), and waits until every server is closed.
    Task<void> stop();

    // Connections open on every shard, summed.
    Task<std::size_t> active_count() {
        return _servers.map_reduce(
            [](Slot& slot) { return slot.server ? slot.server->active_count() : 0; },
            std::size_t{0}, std::plus<>());
    }

private:
    struct Slot {
        std::shared_ptr<Server> server;
        Future<void> stop();
    };

    Sharded<Slot> _servers;
    std::atomic<uint16_t> _port{0};
    ConnectionSpread _spread;
};

}  // namespace shardloop
