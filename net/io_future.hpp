#pragma once

// One reactor operation as a Future<int>: the raw result (-errno on
// failure). Cancelling the future cancels the operation, but the kernel may
// still be using what the request points to until its completion arrives:
// use it for operations that carry no memory of the caller's (poll, splice,
// close), or own that memory elsewhere.

#include "runtime/event_loop.hpp"
#include "runtime/reactor.hpp"

namespace shardloop::detail {

Future<int> io_operation(EventLoop& loop, const IoRequest& request);

}  // namespace shardloop::detail
