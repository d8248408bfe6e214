#pragma once

// shardloop: asyncio's low-level event-loop API for C++, one loop per core
// over io_uring. This header includes every public part.

#include "net/address.hpp"
#include "net/dns.hpp"
#include "net/net_options.hpp"
#include "net/protocols.hpp"
#include "net/server.hpp"
#include "net/transports.hpp"
#include "policy/event_loop_policy.hpp"
#include "policy/sharded.hpp"
#include "policy/sharded_policy.hpp"
#include "policy/sharded_server.hpp"
#include "policy/topology.hpp"
#include "runtime/async_generator.hpp"
#include "runtime/errors.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/exception_context.hpp"
#include "runtime/executor.hpp"
#include "runtime/future.hpp"
#include "runtime/gather.hpp"
#include "runtime/handle.hpp"
#include "runtime/log.hpp"
#include "runtime/sleep.hpp"
#include "runtime/task.hpp"
#include "runtime/thread_pool_executor.hpp"
#include "runtime/wait_for.hpp"
