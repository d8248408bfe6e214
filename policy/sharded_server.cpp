// ShardedServer: one reuse_port server per shard.

#include "policy/sharded_server.hpp"

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

Task<void> ShardedServer::start(ProtocolFactory factory, std::string host, uint16_t port,
                                ServerOptions options) {
    options.reuse_port = true;
    return get_running_loop().create_task([this, factory, host, port, options] {
        await(_servers.start());
        try {
            Slot& here = _servers.local();
            here.server = await(get_running_loop().create_server(factory, host, port, options));
            uint16_t bound = local_address(here.server->sockets().at(0)).port();
            _port.store(bound, std::memory_order_release);
            await(_servers.invoke_on_all([factory, host, bound, options](Slot& slot) {
                return get_running_loop().create_task([&slot, factory, host, bound, options] {
                    if (!slot.server) {
                        slot.server =
                            await(get_running_loop().create_server(factory, host, bound, options));
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
