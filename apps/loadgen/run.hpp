#pragma once

// One run of the load generator: a ShardedPolicy with a Worker per shard,
// driven from shard 0 (connect everywhere, start everywhere at one instant,
// a progress line each second, wait for every shard to finish, gather the
// results, close everything), with SIGINT ending the measured window early.

#include <memory>
#include <stdexcept>
#include <vector>

#include "apps/loadgen/options.hpp"
#include "apps/loadgen/report.hpp"
#include "apps/loadgen/run_config.hpp"

namespace shardloop::loadgen {

// The first connections could not be made (exit status 1).
class ConnectError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Runs the load described by `config` on config->shards shards (pinned to
// `cpus` when given, one each) and returns the report. Call it from the
// main thread; it returns once every shard has stopped. Throws
// ConnectError when the first connections fail, and what the sharding
// layer throws (a bad CPU, io_uring unavailable) otherwise.
Report run_load(const Options& options, std::shared_ptr<const RunConfig> config,
                std::vector<unsigned> cpus);

}  // namespace shardloop::loadgen
