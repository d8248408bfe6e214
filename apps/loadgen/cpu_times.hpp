#pragma once

// CPU time, sampled at the edges of the measured window: the load
// generator's own and, with --server-pid, the server's.

#include <optional>
#include <span>
#include <string>

namespace shardloop::loadgen {

struct CpuTimes {
    double user_s = 0;
    double system_s = 0;

    double total_s() const noexcept { return user_s + system_s; }
    CpuTimes operator-(const CpuTimes& earlier) const noexcept {
        return {user_s - earlier.user_s, system_s - earlier.system_s};
    }
};

// utime and stime of each process in `pids`, all its threads, summed
// (fields 14 and 15 of /proc/PID/stat; resolution one clock tick, 10 ms).
// nullopt when one cannot be read (it exited), with `error` saying which.
std::optional<CpuTimes> process_cpu_times(std::span<const int> pids, std::string* error = nullptr);

// This process's CPU time, all threads (getrusage(RUSAGE_SELF): the same
// accounting as /proc/self/stat, to the microsecond).
CpuTimes own_cpu_times() noexcept;

}  // namespace shardloop::loadgen
