// The hwloc topology and thread pinning of the sharding layer
// (policy/topology.cpp). The expected values come from the kernel, not from
// hwloc: sched_getaffinity for the allowed CPUs and the pins, sysfs for the
// cores' hyper-threads and NUMA nodes. Nothing assumes a CPU count; every
// test passes on a one-CPU machine and checks more on a larger one. Pins
// happen on threads the tests start, so the main thread's affinity, the
// oracle of every test, never changes.

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "policy/topology.hpp"
#include "support/leak_check.hpp"

namespace shardloop {
namespace {

using shardloop::testing::FdLeakCheck;

// The calling thread's affinity, straight from the kernel.
std::vector<unsigned> kernel_affinity() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        ADD_FAILURE() << "sched_getaffinity: " << std::strerror(errno);
        return {};
    }
    std::vector<unsigned> cpus;
    for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &set)) {
            cpus.push_back(cpu);
        }
    }
    EXPECT_EQ(cpus.size(), static_cast<std::size_t>(CPU_COUNT(&set)));
    return cpus;
}

// Parses a sysfs CPU list ("0-3,8"); an empty vector when the file is missing.
std::vector<unsigned> read_sysfs_cpu_list(const std::string& path) {
    std::ifstream file(path);
    std::string text;
    std::vector<unsigned> cpus;
    if (!std::getline(file, text)) {
        return cpus;
    }
    std::stringstream ranges(text);
    std::string range;
    while (std::getline(ranges, range, ',')) {
        const std::size_t dash = range.find('-');
        const unsigned first = std::stoul(range.substr(0, dash));
        const unsigned last =
            dash == std::string::npos ? first : std::stoul(range.substr(dash + 1));
        for (unsigned cpu = first; cpu <= last; ++cpu) {
            cpus.push_back(cpu);
        }
    }
    return cpus;
}

std::vector<unsigned> intersect(const std::vector<unsigned>& a, const std::vector<unsigned>& b) {
    std::vector<unsigned> both;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
    return both;
}

// The lowest CPU number the process may not use (CPU_SETSIZE - 1 when every
// lower one is allowed, which is still not allowed on any real machine).
unsigned first_cpu_not_allowed(const Topology& topology) {
    unsigned cpu = 0;
    while (cpu < CPU_SETSIZE - 1 && topology.is_allowed(cpu)) {
        ++cpu;
    }
    return cpu;
}

// Runs `fn` on a new thread, so a pin it makes dies with the thread.
template <class F>
void on_new_thread(F fn) {
    std::thread thread(fn);
    thread.join();
}

// The child half of RestrictedAffinityListsOnlyThatCpu. This test program,
// re-executed with SHARDLOOP_TOPOLOGY_CHILD="<fd> <other cpu>" in its
// environment, discovers the topology before GoogleTest starts, writes what
// it saw to <fd> as one line (the allowed CPUs, the number of cores, the
// first core's CPU, and whether pinning to <other>, a CPU of the parent's
// set, was refused) and exits.
const bool topology_child_ran = [] {
    const char* request = std::getenv("SHARDLOOP_TOPOLOGY_CHILD");
    if (request == nullptr) {
        return false;
    }
    int fd = -1;
    unsigned other = 0;
    if (std::sscanf(request, "%d %u", &fd, &other) != 2) {
        _exit(3);
    }
    std::string report;
    int status = 0;
    try {
        const Topology topology = Topology::discover();
        report = "cpus=" + format_cpu_list(topology.allowed_cpus()) +
                 " cores=" + std::to_string(topology.cores().size()) +
                 " core_cpu=" + std::to_string(topology.cores().at(0).cpu);
        try {
            topology.pin_this_thread_to_cpu(other);
            report += " other=accepted";
        } catch (const std::system_error& e) {
            report +=
                e.code() == std::errc::invalid_argument ? " other=refused" : " other=wrong-errno";
        }
    } catch (const std::exception& e) {
        report = std::string("error: ") + e.what();
        status = 1;
    }
    const ssize_t written = write(fd, report.data(), report.size());
    _exit(written == static_cast<ssize_t>(report.size()) ? status : 2);
}();

// Runs this program restricted to `cpu` the way `taskset -c <cpu>` does it:
// the affinity is set, then a new image is executed, so every thread the
// new process starts (a sanitizer's helpers too) has the narrow set.
// Narrowing only a forked thread would leave such threads, and with them
// the process's set, wide. Returns the child's report.
std::string discover_in_child_restricted_to(unsigned cpu, unsigned other) {
    int fds[2];
    if (pipe(fds) != 0) {
        ADD_FAILURE() << "pipe: " << std::strerror(errno);
        return {};
    }
    // Built before fork: between fork and exec only system calls are made.
    std::vector<std::string> environment{"SHARDLOOP_TOPOLOGY_CHILD=" + std::to_string(fds[1]) +
                                         " " + std::to_string(other)};
    for (char** variable = environ; *variable != nullptr; ++variable) {
        environment.emplace_back(*variable);
    }
    std::vector<char*> envp;
    for (std::string& variable : environment) {
        envp.push_back(variable.data());
    }
    envp.push_back(nullptr);
    char program[] = "/proc/self/exe";
    char* argv[] = {program, nullptr};
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);

    const pid_t pid = fork();
    if (pid < 0) {
        ADD_FAILURE() << "fork: " << std::strerror(errno);
        return {};
    }
    if (pid == 0) {
        close(fds[0]);
        if (sched_setaffinity(0, sizeof(set), &set) != 0) {
            _exit(4);
        }
        execve(program, argv, envp.data());
        _exit(5);
    }
    close(fds[1]);
    std::string report;
    char buffer[256];
    ssize_t n;
    while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) {
        report.append(buffer, static_cast<std::size_t>(n));
    }
    close(fds[0]);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "child status " << status << ": " << report;
    return report;
}

class TopologyTest : public ::testing::Test {
protected:
    // hwloc reads /proc and /sys while loading; none of those files may stay open.
    FdLeakCheck fd_check;
};

TEST_F(TopologyTest, AllowedCpusAreTheProcessAffinity) {
    const std::vector<unsigned> expected = kernel_affinity();
    const Topology topology = Topology::discover();
    EXPECT_EQ(topology.allowed_cpus(), expected);
    EXPECT_EQ(topology.cpu_count(), expected.size());
    for (unsigned cpu : expected) {
        EXPECT_TRUE(topology.is_allowed(cpu)) << cpu;
    }
    EXPECT_FALSE(topology.is_allowed(first_cpu_not_allowed(topology)));
}

TEST_F(TopologyTest, EveryCoreIsPinnedToItsFirstAllowedCpu) {
    const std::vector<unsigned> allowed = kernel_affinity();
    const Topology topology = Topology::discover();
    ASSERT_FALSE(topology.cores().empty());
    EXPECT_LE(topology.cores().size(), topology.cpu_count());
    for (const CpuCore& core : topology.cores()) {
        ASSERT_FALSE(core.cpus.empty());
        EXPECT_TRUE(std::is_sorted(core.cpus.begin(), core.cpus.end()));
        EXPECT_EQ(core.cpu, core.cpus.front());
        EXPECT_TRUE(std::binary_search(allowed.begin(), allowed.end(), core.cpu)) << core.cpu;
    }
}

TEST_F(TopologyTest, CoresPartitionTheAllowedCpus) {
    const Topology topology = Topology::discover();
    std::vector<unsigned> all;
    std::set<unsigned> core_indices;
    for (const CpuCore& core : topology.cores()) {
        all.insert(all.end(), core.cpus.begin(), core.cpus.end());
        EXPECT_TRUE(core_indices.insert(core.core_index).second)
            << "core " << core.core_index << " twice";
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, topology.allowed_cpus());  // each CPU in exactly one core
}

// The kernel's own view of hyper-threads: a core's CPUs are the allowed
// CPUs among the thread siblings of its first one.
TEST_F(TopologyTest, CoresMatchTheKernelsThreadSiblings) {
    const Topology topology = Topology::discover();
    for (const CpuCore& core : topology.cores()) {
        const std::vector<unsigned> siblings =
            read_sysfs_cpu_list("/sys/devices/system/cpu/cpu" + std::to_string(core.cpu) +
                                "/topology/thread_siblings_list");
        if (siblings.empty()) {
            GTEST_SKIP() << "no thread_siblings_list in sysfs";
        }
        EXPECT_EQ(core.cpus, intersect(siblings, topology.allowed_cpus()))
            << "core of cpu " << core.cpu;
    }
}

TEST_F(TopologyTest, NumaNodeOfACoreHoldsItsCpu) {
    const Topology topology = Topology::discover();
    for (const CpuCore& core : topology.cores()) {
        // hwloc makes one NUMA node even when the kernel reports none.
        ASSERT_GE(core.numa_node, 0) << "cpu " << core.cpu;
        const std::vector<unsigned> node_cpus = read_sysfs_cpu_list(
            "/sys/devices/system/node/node" + std::to_string(core.numa_node) + "/cpulist");
        if (node_cpus.empty()) {
            GTEST_SKIP() << "no NUMA nodes in sysfs";
        }
        EXPECT_TRUE(std::binary_search(node_cpus.begin(), node_cpus.end(), core.cpu))
            << "cpu " << core.cpu << " not in node " << core.numa_node;
    }
}

// Under `taskset -c <cpu>` only that CPU is listed, and pinning to a CPU
// the parent could use is refused although the kernel would let the child
// widen its affinity to it.
TEST_F(TopologyTest, RestrictedAffinityListsOnlyThatCpu) {
    const Topology topology = Topology::discover();
    const std::vector<unsigned>& allowed = topology.allowed_cpus();
    for (unsigned cpu : {allowed.front(), allowed.back()}) {
        const unsigned other = cpu == allowed.front() ? allowed.back() : allowed.front();
        const std::string expected = "cpus=" + std::to_string(cpu) +
                                     " cores=1 core_cpu=" + std::to_string(cpu) +
                                     (other == cpu ? " other=accepted" : " other=refused");
        EXPECT_EQ(discover_in_child_restricted_to(cpu, other), expected);
    }
}

// A thread already pinned (the main thread as shard 0, say) does not shrink
// what discover() sees: the process's set is the union over its threads.
TEST_F(TopologyTest, DiscoverOnAPinnedThreadSeesTheWholeProcess) {
    const std::vector<unsigned> expected = kernel_affinity();
    const Topology topology = Topology::discover();
    on_new_thread([&] {
        topology.pin_this_thread_to_cpu(expected.back());
        EXPECT_EQ(this_thread_affinity(), std::vector<unsigned>{expected.back()});
        EXPECT_EQ(Topology::discover().allowed_cpus(), expected);
    });
}

TEST_F(TopologyTest, PinningReadsBackExactlyThatCpu) {
    const std::vector<unsigned> before = kernel_affinity();
    const Topology topology = Topology::discover();
    // Backwards, so that on a machine with several CPUs a pin that leaked
    // to the whole process would leave the main thread on another set than
    // it started with.
    for (auto it = topology.allowed_cpus().rbegin(); it != topology.allowed_cpus().rend(); ++it) {
        const unsigned cpu = *it;
        on_new_thread([&] {
            topology.pin_this_thread_to_cpu(cpu);
            EXPECT_EQ(this_thread_affinity(), std::vector<unsigned>{cpu});
            EXPECT_EQ(kernel_affinity(), std::vector<unsigned>{cpu});
            // sched_setaffinity on oneself migrates before it returns.
            EXPECT_EQ(sched_getcpu(), static_cast<int>(cpu));
        });
    }
    EXPECT_EQ(kernel_affinity(), before);  // only the pinned threads moved
}

TEST_F(TopologyTest, APinnedThreadCanBeRepinned) {
    const Topology topology = Topology::discover();
    on_new_thread([&] {
        for (int round = 0; round < 2; ++round) {
            for (auto it = topology.allowed_cpus().rbegin(); it != topology.allowed_cpus().rend();
                 ++it) {
                topology.pin_this_thread_to_cpu(*it);
                EXPECT_EQ(this_thread_affinity(), std::vector<unsigned>{*it});
            }
        }
    });
}

// What a sharded start-up does: every shard thread pins itself at once,
// sharing one Topology.
TEST_F(TopologyTest, ThreadsPinThemselvesConcurrently) {
    const Topology topology = Topology::discover();
    const std::vector<unsigned>& allowed = topology.allowed_cpus();
    const std::size_t thread_count = std::max<std::size_t>(8, 2 * allowed.size());
    std::vector<std::vector<unsigned>> wrong(thread_count);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < thread_count; ++i) {
        threads.emplace_back([&, i] {
            for (std::size_t round = 0; round < 50; ++round) {
                const unsigned cpu = allowed[(i + round) % allowed.size()];
                topology.pin_this_thread_to_cpu(cpu);
                if (this_thread_affinity() != std::vector<unsigned>{cpu}) {
                    wrong[i].push_back(cpu);
                }
            }
        });
    }
    for (std::thread& thread : threads) {
        thread.join();
    }
    for (std::size_t i = 0; i < thread_count; ++i) {
        EXPECT_TRUE(wrong[i].empty()) << "thread " << i << " misread " << format_cpu_list(wrong[i]);
    }
}

TEST_F(TopologyTest, PinningOutsideTheAllowedSetThrowsNamingTheCpu) {
    const Topology topology = Topology::discover();
    for (unsigned cpu : {first_cpu_not_allowed(topology), unsigned{CPU_SETSIZE - 1}, UINT_MAX}) {
        on_new_thread([&] {
            const std::vector<unsigned> before = this_thread_affinity();
            try {
                topology.pin_this_thread_to_cpu(cpu);
                ADD_FAILURE() << "pinning to cpu " << cpu << " did not throw";
            } catch (const std::system_error& e) {
                EXPECT_EQ(e.code(), std::errc::invalid_argument);
                EXPECT_NE(std::string(e.what()).find("cpu " + std::to_string(cpu) + " "),
                          std::string::npos)
                    << e.what();
            }
            EXPECT_EQ(this_thread_affinity(), before);
        });
    }
}

TEST_F(TopologyTest, ValidateCpuListAcceptsAllowedCpusInAnyOrder) {
    const Topology topology = Topology::discover();
    std::vector<unsigned> reversed(topology.allowed_cpus().rbegin(),
                                   topology.allowed_cpus().rend());
    EXPECT_NO_THROW(topology.validate_cpu_list(reversed));
    EXPECT_NO_THROW(
        topology.validate_cpu_list(std::vector<unsigned>{topology.allowed_cpus().back()}));
}

// The message of the std::invalid_argument that validate_cpu_list throws
// for `cpus` ("" when it throws nothing).
std::string validation_error(const Topology& topology, const std::vector<unsigned>& cpus) {
    try {
        topology.validate_cpu_list(cpus);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

TEST_F(TopologyTest, ValidateCpuListRejectsDuplicatesNamingTheCpu) {
    const Topology topology = Topology::discover();
    const unsigned cpu = topology.allowed_cpus().back();
    const std::vector<unsigned> twice{topology.allowed_cpus().front(), cpu, cpu};
    EXPECT_EQ(validation_error(topology, twice),
              "validate_cpu_list: cpu " + std::to_string(cpu) + " is listed twice");
}

TEST_F(TopologyTest, ValidateCpuListRejectsCpusOutsideTheSetNamingThem) {
    const Topology topology = Topology::discover();
    const std::string allowed = format_cpu_list(topology.allowed_cpus());
    for (unsigned cpu : {first_cpu_not_allowed(topology), unsigned{CPU_SETSIZE - 1}, UINT_MAX}) {
        const std::vector<unsigned> cpus{topology.allowed_cpus().front(), cpu};
        EXPECT_EQ(validation_error(topology, cpus),
                  "validate_cpu_list: cpu " + std::to_string(cpu) +
                      " is not one of the process's allowed cpus " + allowed);
    }
}

TEST_F(TopologyTest, ValidateCpuListRejectsAnEmptyList) {
    const Topology topology = Topology::discover();
    EXPECT_EQ(validation_error(topology, {}), "validate_cpu_list: the cpu list is empty");
}

TEST_F(TopologyTest, AMovedTopologyKeepsItsCoresAndStillPins) {
    Topology first = Topology::discover();
    const std::vector<unsigned> allowed = first.allowed_cpus();
    const Topology second = std::move(first);
    EXPECT_EQ(second.allowed_cpus(), allowed);
    on_new_thread([&] {
        second.pin_this_thread_to_cpu(allowed.front());
        EXPECT_EQ(this_thread_affinity(), std::vector<unsigned>{allowed.front()});
    });
}

TEST(FormatCpuList, WritesRangesAsTasksetDoes) {
    EXPECT_EQ(format_cpu_list(std::vector<unsigned>{}), "");
    EXPECT_EQ(format_cpu_list(std::vector<unsigned>{5}), "5");
    EXPECT_EQ(format_cpu_list(std::vector<unsigned>{0, 1}), "0-1");
    EXPECT_EQ(format_cpu_list(std::vector<unsigned>{0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
}

}  // namespace
}  // namespace shardloop
