// CPU time as the load generator samples it at the edges of its measured
// window: the server's (from /proc/PID/stat, as shared/BENCHMARKING.md
// asks), its own (getrusage), and the whole machine's busy time (/proc/stat),
// so that what neither of the two used shows how much other work shared
// the CPUs during the window.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "echo_common.hpp"

namespace echo_bench {

struct CpuTimes {
    double user_us = 0;
    double sys_us = 0;

    CpuTimes operator-(const CpuTimes& earlier) const {
        return {user_us - earlier.user_us, sys_us - earlier.sys_us};
    }
};

inline double us_per_clock_tick() { return 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK)); }

inline std::string read_whole_file(const char* program, const std::string& path) {
    std::ifstream file(path);
    if (!file.is_open()) {
        die(program, ("open " + path).c_str(), errno);
    }
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// utime and stime of a process, all threads (fields 14 and 15 of
// /proc/PID/stat, counted past the ")" that ends the command name, since
// the name may itself hold spaces). Resolution: one clock tick.
inline CpuTimes process_cpu_times(const char* program, int pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    std::string text = read_whole_file(program, path);
    size_t paren = text.rfind(')');
    if (paren == std::string::npos || paren + 2 >= text.size()) {
        die(program, ("unexpected contents of " + path).c_str(), EINVAL);
    }
    std::istringstream fields(text.substr(paren + 2));
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    std::string field;
    // Field 3 (the state) is the first one after ")".
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) {
            utime = std::stoull(field);
        } else if (i == 15) {
            stime = std::stoull(field);
        }
    }
    return {static_cast<double>(utime) * us_per_clock_tick(),
            static_cast<double>(stime) * us_per_clock_tick()};
}

// This process's CPU time, all threads.
inline CpuTimes own_cpu_times(const char* program) {
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) != 0) {
        die(program, "getrusage", errno);
    }
    auto us = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
    };
    return {us(usage.ru_utime), us(usage.ru_stime)};
}

// Non-idle time summed over all CPUs, from the "cpu" line of /proc/stat:
// user nice system idle iowait irq softirq steal (guest time is already
// part of user). Idle and iowait are the not-busy ones.
inline double machine_busy_us(const char* program) {
    std::istringstream line(read_whole_file(program, "/proc/stat"));
    std::string label;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                       steal = 0;
    if (!(line >> label >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) ||
        label != "cpu") {
        die(program, "unexpected contents of /proc/stat", EINVAL);
    }
    return static_cast<double>(user + nice + system + irq + softirq + steal) * us_per_clock_tick();
}

}  // namespace echo_bench
