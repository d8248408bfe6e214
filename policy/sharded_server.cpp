// ShardedServer: one reuse_port server per shard.

#include "policy/sharded_server.hpp"

#include <stdexcept>

#include "net/address.hpp"

namespace shardloop {

Future<void> ShardedServer::Slot::stop() {
    if (!server) {
        Future<void> done = get_running_loop().create_future<void>();
        done.set_result();
        return done;
    }
    server->close();
    server->close_clients();
    return server->wait_closed();
}

namespace {

// The options of this shard's server.
ServerOptions on_this_shard(ServerOptions options, ConnectionSpread spread) {
    options.reuse_port = true;
    if (spread == ConnectionSpread::incoming_cpu) {
        options.incoming_cpu = this_shard_cpu();
    }
    return options;
}

}  // namespace

Task<void> ShardedServer::start(ProtocolFactory factory, std::string host, uint16_t port,
                                ServerOptions options) {
    if (_spread == ConnectionSpread::incoming_cpu && this_shard_cpu() < 0) {
        throw std::invalid_argument(
            "ShardedServer: ConnectionSpread::incoming_cpu needs shards pinned to their CPUs "
            "(ShardedPolicyOptions::pin)");
    }
    return get_running_loop().create_task([this, factory, host, port, options] {
        await(_servers.start());
        try {
            Slot& here = _servers.local();
            here.server = await(get_running_loop().create_server(factory, host, port,
                                                                 on_this_shard(options, _spread)));
            uint16_t bound = local_address(here.server->sockets().at(0)).port();
            _port.store(bound, std::memory_order_release);
            await(_servers.invoke_on_all([this, factory, host, bound, options](Slot& slot) {
                return get_running_loop().create_task([this, &slot, factory, host, bound, options] {
                    if (!slot.server) {
                        slot.server = await(get_running_loop().create_server(
                            factory, host, bound, on_this_shard(options, _spread)));
                    }
                });
            }));
        } catch (...) {
            _port.store(0, std::memory_order_release);
            await(_servers.stop());
            throw;
        }
    });
}

Task<void> ShardedServer::stop() {
    return get_running_loop().create_task([this] {
        await(_servers.stop());
        _port.store(0, std::memory_order_release);
    });
}

}  // namespace shardloop
