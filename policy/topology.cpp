#include "policy/topology.hpp"

#include <hwloc.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <new>
#include <stdexcept>
#include <system_error>

#include "runtime/errors.hpp"

namespace shardloop {

namespace {

struct BitmapFree {
    void operator()(hwloc_bitmap_t bitmap) const noexcept { hwloc_bitmap_free(bitmap); }
};
using Bitmap = std::unique_ptr<hwloc_bitmap_s, BitmapFree>;

Bitmap new_bitmap() {
    Bitmap bitmap(hwloc_bitmap_alloc());
    if (!bitmap) {
        throw std::bad_alloc();
    }
    return bitmap;
}

// The set bits of a finite bitmap, ascending.
std::vector<unsigned> bits_of(hwloc_const_bitmap_t bitmap) {
    std::vector<unsigned> bits;
    for (int bit = hwloc_bitmap_first(bitmap); bit != -1; bit = hwloc_bitmap_next(bitmap, bit)) {
        bits.push_back(static_cast<unsigned>(bit));
    }
    return bits;
}

int first_numa_node(const hwloc_obj* object) {
    if (object->nodeset == nullptr) {
        return -1;
    }
    return hwloc_bitmap_first(object->nodeset);
}

// Groups the allowed PUs by the core they belong to, cores in topology
// order. Logical indices of one object type follow the tree depth-first, so
// the PUs of a core come one after the other when walked by logical index.
std::vector<CpuCore> group_into_cores(hwloc_topology_t topology, hwloc_const_bitmap_t allowed) {
    std::vector<CpuCore> cores;
    hwloc_obj_t current = nullptr;
    for (hwloc_obj_t pu = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_PU, nullptr);
         pu != nullptr; pu = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_PU, pu)) {
        if (!hwloc_bitmap_isset(allowed, pu->os_index)) {
            continue;
        }
        // Where sysfs describes no cores (some virtual machines and
        // containers), hwloc makes no Core objects; each CPU then counts as a
        // core of its own.
        hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topology, HWLOC_OBJ_CORE, pu);
        if (core == nullptr) {
            core = pu;
        }
        if (core != current) {
            cores.push_back(CpuCore{.cpu = pu->os_index,
                                    .core_index = core->logical_index,
                                    .cpus = {},
                                    .numa_node = first_numa_node(core)});
            current = core;
        }
        cores.back().cpus.push_back(pu->os_index);
    }
    for (CpuCore& core : cores) {
        std::sort(core.cpus.begin(), core.cpus.end());
        core.cpu = core.cpus.front();
    }
    return cores;
}

[[noreturn]] void throw_hwloc_error(int error, const char* call) {
    detail::throw_errno(-error, std::string("Topology::discover: ") + call + " failed");
}

}  // namespace

struct Topology::Impl {
    hwloc_topology_t topology = nullptr;
    std::vector<CpuCore> cores;
    std::vector<unsigned> allowed_cpus;

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() {
        if (topology != nullptr) {
            hwloc_topology_destroy(topology);
        }
    }
};

Topology Topology::discover() {
    auto impl = std::make_unique<Impl>();
    hwloc_topology_t topology = nullptr;
    if (hwloc_topology_init(&topology) < 0) {
        throw_hwloc_error(errno, "hwloc_topology_init");
    }
    impl->topology = topology;
    // IS_THISSYSTEM and THISSYSTEM_ALLOWED_RESOURCES: an HWLOC_XMLFILE or
    // HWLOC_SYNTHETIC in the environment would otherwise turn binding into a
    // silent no-op and drop the cgroup's limits. DONT_CHANGE_BINDING: hwloc's
    // x86 backend, where it runs, rebinds the calling thread to every core in
    // turn to run CPUID there, which would change a binding that the
    // process affinity below reads (it is the union over all threads) and
    // that the caller may have set on purpose.
    const unsigned long flags = HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM |
                                HWLOC_TOPOLOGY_FLAG_THISSYSTEM_ALLOWED_RESOURCES |
                                HWLOC_TOPOLOGY_FLAG_DONT_CHANGE_BINDING;
    if (hwloc_topology_set_flags(impl->topology, flags) < 0) {
        throw_hwloc_error(errno, "hwloc_topology_set_flags");
    }
    if (hwloc_topology_load(impl->topology) < 0) {
        throw_hwloc_error(errno, "hwloc_topology_load");
    }

    // Without INCLUDE_DISALLOWED the loaded topology holds only the CPUs of
    // the cgroup cpuset; taskset's limit is the process's binding, the union
    // over its threads, so a thread pinned before discover() runs (shard 0
    // on the main thread, say) does not hide the others' CPUs.
    Bitmap allowed = new_bitmap();
    if (hwloc_get_cpubind(impl->topology, allowed.get(), HWLOC_CPUBIND_PROCESS) < 0) {
        throw_hwloc_error(errno, "hwloc_get_cpubind(HWLOC_CPUBIND_PROCESS)");
    }
    if (hwloc_bitmap_and(allowed.get(), allowed.get(),
                         hwloc_topology_get_allowed_cpuset(impl->topology)) < 0) {
        throw std::bad_alloc();
    }
    impl->allowed_cpus = bits_of(allowed.get());
    if (impl->allowed_cpus.empty()) {
        throw RuntimeError(
            "Topology::discover: no CPU is both in the process's affinity and in its cgroup "
            "cpuset");
    }
    impl->cores = group_into_cores(impl->topology, allowed.get());
    return Topology(std::move(impl));
}

Topology::Topology(std::unique_ptr<Impl> impl) : _impl(std::move(impl)) {}
Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;
Topology::~Topology() = default;

const std::vector<CpuCore>& Topology::cores() const noexcept { return _impl->cores; }

const std::vector<unsigned>& Topology::allowed_cpus() const noexcept { return _impl->allowed_cpus; }

std::size_t Topology::cpu_count() const noexcept { return _impl->allowed_cpus.size(); }

bool Topology::is_allowed(unsigned cpu) const noexcept {
    return std::binary_search(_impl->allowed_cpus.begin(), _impl->allowed_cpus.end(), cpu);
}

void Topology::validate_cpu_list(std::span<const unsigned> cpus) const {
    if (cpus.empty()) {
        throw std::invalid_argument("validate_cpu_list: the cpu list is empty");
    }
    // Indexed by CPU number; every allowed CPU is below the last one.
    std::vector<bool> seen(_impl->allowed_cpus.back() + 1, false);
    for (unsigned cpu : cpus) {
        if (!is_allowed(cpu)) {
            throw std::invalid_argument("validate_cpu_list: cpu " + std::to_string(cpu) +
                                        " is not one of the process's allowed cpus " +
                                        format_cpu_list(_impl->allowed_cpus));
        }
        if (seen[cpu]) {
            throw std::invalid_argument("validate_cpu_list: cpu " + std::to_string(cpu) +
                                        " is listed twice");
        }
        seen[cpu] = true;
    }
}

void Topology::pin_this_thread_to_cpu(unsigned cpu) const {
    // The kernel would accept a CPU outside taskset's list but inside the
    // cgroup (a thread may widen its own affinity), so the check against
    // the process's allowed set is ours to make.
    if (!is_allowed(cpu)) {
        throw std::system_error(EINVAL, std::generic_category(),
                                "pin_this_thread_to_cpu: cpu " + std::to_string(cpu) +
                                    " is not one of the process's allowed cpus " +
                                    format_cpu_list(_impl->allowed_cpus));
    }
    Bitmap set = new_bitmap();
    if (hwloc_bitmap_only(set.get(), cpu) < 0) {
        throw std::bad_alloc();
    }
    // STRICT asks for "never run elsewhere"; Linux affinity always is, and
    // hwloc's Linux backend accepts the flag. Binding only the caller reads
    // nothing but the topology, so threads may pin themselves concurrently.
    if (hwloc_set_cpubind(_impl->topology, set.get(), HWLOC_CPUBIND_THREAD | HWLOC_CPUBIND_STRICT) <
        0) {
        const int error = errno;
        detail::throw_errno(-error, "pin_this_thread_to_cpu: binding to cpu " +
                                        std::to_string(cpu) + " (hwloc_set_cpubind) failed");
    }
}

std::vector<unsigned> this_thread_affinity() {
    struct CpuSetFree {
        void operator()(cpu_set_t* set) const noexcept { CPU_FREE(set); }
    };
    // sched_getaffinity refuses (EINVAL) a mask smaller than the kernel's
    // own, which is larger than glibc's CPU_SETSIZE on machines with more
    // than 1,024 CPUs: grow until it fits.
    for (std::size_t capacity = CPU_SETSIZE;; capacity *= 2) {
        std::unique_ptr<cpu_set_t, CpuSetFree> set(CPU_ALLOC(capacity));
        if (!set) {
            throw std::bad_alloc();
        }
        const std::size_t size = CPU_ALLOC_SIZE(capacity);
        if (sched_getaffinity(0, size, set.get()) < 0) {
            const int error = errno;
            if (error == EINVAL && capacity < (std::size_t{1} << 22)) {
                continue;
            }
            detail::throw_errno(-error, "this_thread_affinity: sched_getaffinity failed");
        }
        std::vector<unsigned> cpus;
        for (std::size_t cpu = 0; cpu < capacity; ++cpu) {
            if (CPU_ISSET_S(cpu, size, set.get())) {
                cpus.push_back(static_cast<unsigned>(cpu));
            }
        }
        return cpus;
    }
}

std::string format_cpu_list(std::span<const unsigned> cpus) {
    std::string text;
    std::size_t i = 0;
    while (i < cpus.size()) {
        std::size_t last = i;
        while (last + 1 < cpus.size() && cpus[last + 1] == cpus[last] + 1) {
            ++last;
        }
        if (!text.empty()) {
            text += ',';
        }
        text += std::to_string(cpus[i]);
        if (last > i) {
            text += '-';
            text += std::to_string(cpus[last]);
        }
        i = last + 1;
    }
    return text;
}

}  // namespace shardloop
