#include "net/io_future.hpp"

#include <memory>

#include "runtime/errors.hpp"

namespace shardloop::detail {

namespace {

struct PendingIo {
    IoCompletion completion;  // first: the reactor hands back its address
    Future<int> result;
    std::shared_ptr<PendingIo> self;  // held until the completion arrives
    bool finished = false;

    static void on_complete(IoCompletion* completion, int value, uint32_t /*flags*/) {
        auto* io = reinterpret_cast<PendingIo*>(completion);
        io->finished = true;
        // At close() the loop drains what is still in the kernel; nobody can
        // hear of the result then, and setting it would schedule the done
        // callbacks on a closed loop (which throws).
        if (!io->result.done() && !io->result.get_loop().is_closed()) {
            io->result.set_result(value);
        }
        std::shared_ptr<PendingIo> last = std::move(io->self);
    }
};

}  // namespace

Future<int> io_operation(EventLoop& loop, const IoRequest& request) {
    auto io = std::make_shared<PendingIo>();
    io->completion.on_complete = &PendingIo::on_complete;
    io->result = loop.create_future<int>();
    io->self = io;
    loop.reactor().submit(request, &io->completion);
    io->result.add_done_callback([weak = std::weak_ptr<PendingIo>(io), &loop](Future<int> done) {
        std::shared_ptr<PendingIo> pending = weak.lock();
        if (pending && !pending->finished && done.cancelled()) {
            loop.reactor().cancel(&pending->completion);
        }
    });
    return io->result;
}

}  // namespace shardloop::detail
