#pragma once

// The machine as the sharding layer sees it: the cores this process may run
// on, found with hwloc, and the pinning of a thread to one logical CPU.
//
// "Allowed" means the CPUs that both the cgroup cpuset (what hwloc loads by
// default) and the process's affinity (what `taskset` sets) let the process
// use. A shard is pinned to one CPU of each allowed core, as Seastar does, so
// two shards never share a core's execution units through hyper-threading.
//
// CPU numbers are the kernel's logical CPU numbers, as in taskset,
// /proc/cpuinfo and sched_setaffinity. No hwloc type appears here: the
// hwloc topology lives in topology.cpp.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace shardloop {

// One physical core with at least one allowed logical CPU.
struct CpuCore {
    // The logical CPU a shard on this core is pinned to: the lowest-numbered
    // allowed CPU of the core.
    unsigned cpu = 0;
    // hwloc's logical index of the core: unique in the machine, numbered in
    // topology order (package by package), and the same whatever the
    // process's affinity. A machine where hwloc finds no cores gets one
    // CpuCore per CPU, indexed by the CPU's logical index.
    unsigned core_index = 0;
    // Every allowed logical CPU of the core (hyper-threads), ascending;
    // `cpu` is the first.
    std::vector<unsigned> cpus;
    // The OS number of the first NUMA node local to the core, as in
    // numactl; -1 when hwloc reports none.
    int numa_node = -1;
};

// The loaded hwloc topology restricted to the process's allowed CPUs, as it
// was when discover() ran (a later taskset does not change it).
//
// Threads: every const member function may be called from any thread, also
// from several at once (hwloc topologies are safe for concurrent read-only
// use once loaded, and pinning changes only the calling thread's affinity).
// discover() may run on any thread, also while other threads pin
// themselves. The move operations and the destructor need the object to
// themselves.
class Topology {
public:
    // Loads the topology of this machine and reads the process's CPU
    // affinity: the union over its threads, so a thread pinned earlier does
    // not shrink it (and narrowing one thread with sched_setaffinity does
    // not narrow the process; taskset, which narrows before exec, does).
    // Never changes any thread's affinity. Throws
    // std::system_error with hwloc's errno, naming the failed hwloc call,
    // when hwloc cannot load the topology or read the affinity, and
    // RuntimeError when no allowed CPU is left.
    static Topology discover();

    // A moved-from Topology may only be assigned to or destroyed.
    Topology(Topology&&) noexcept;
    Topology& operator=(Topology&&) noexcept;
    ~Topology();

    // The allowed cores in topology order, each with at least one CPU;
    // never empty. One shard per entry is the default sharding.
    const std::vector<CpuCore>& cores() const noexcept;
    // Every allowed logical CPU, ascending.
    const std::vector<unsigned>& allowed_cpus() const noexcept;
    // allowed_cpus().size(): CPU_COUNT of the process's affinity within the
    // cgroup, what `nproc` prints.
    std::size_t cpu_count() const noexcept;
    // Whether `cpu` is one of allowed_cpus().
    bool is_allowed(unsigned cpu) const noexcept;

    // Checks an explicit list of CPUs given by a user (one shard per entry,
    // in order). Throws std::invalid_argument naming the first bad CPU when
    // the list is empty, names a CPU twice, or names a CPU outside
    // allowed_cpus().
    void validate_cpu_list(std::span<const unsigned> cpus) const;

    // Binds the calling thread to exactly `cpu` (hwloc_set_cpubind with
    // HWLOC_CPUBIND_THREAD | HWLOC_CPUBIND_STRICT; Linux affinity is always
    // strict). Throws std::system_error(EINVAL) naming `cpu` and the allowed
    // set when `cpu` is not allowed, and std::system_error with the errno of
    // the failed binding, naming `cpu`, when the kernel refuses (a cpuset
    // changed since discover(), say). Any thread; binds only the caller.
    void pin_this_thread_to_cpu(unsigned cpu) const;

private:
    struct Impl;
    explicit Topology(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> _impl;
};

// The logical CPUs the calling thread may run on now, ascending, read with
// sched_getaffinity (so it checks pin_this_thread_to_cpu independently of
// hwloc). Throws std::system_error when the system call fails. Any thread.
std::vector<unsigned> this_thread_affinity();

// "0-3,8,10-11": CPUs in taskset's list format, for messages. `cpus` must be
// ascending.
std::string format_cpu_list(std::span<const unsigned> cpus);

}  // namespace shardloop
