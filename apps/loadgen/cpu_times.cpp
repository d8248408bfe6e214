#include "apps/loadgen/cpu_times.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

namespace shardloop::loadgen {

namespace {

// Fields 14 and 15, counted past the ")" that ends the command name (which
// may itself hold spaces and parentheses).
std::optional<CpuTimes> one_process(int pid, std::string* error) {
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    std::ifstream file(path);
    std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    std::size_t paren = text.rfind(')');
    if (!file.is_open() || paren == std::string::npos) {
        if (error != nullptr) {
            *error = "cannot read " + path + " (no such process?)";
        }
        return std::nullopt;
    }
    std::istringstream fields(text.substr(paren + 1));
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    // Field 3 (the state) is the first one after ")".
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) {
            utime = std::stoull(field);
        } else if (i == 15) {
            stime = std::stoull(field);
        }
    }
    double tick = 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
    return CpuTimes{static_cast<double>(utime) * tick, static_cast<double>(stime) * tick};
}

}  // namespace

std::optional<CpuTimes> process_cpu_times(std::span<const int> pids, std::string* error) {
    CpuTimes sum;
    for (int pid : pids) {
        std::optional<CpuTimes> times = one_process(pid, error);
        if (!times) {
            return std::nullopt;
        }
        sum.user_s += times->user_s;
        sum.system_s += times->system_s;
    }
    return sum;
}

CpuTimes own_cpu_times() noexcept {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
    };
    return {seconds(usage.ru_utime), seconds(usage.ru_stime)};
}

}  // namespace shardloop::loadgen
