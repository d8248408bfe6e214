#include "runtime/io_uring_setup.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <system_error>
#include <utility>

#include "runtime/errors.hpp"

namespace shardloop::detail {
namespace {

// Setup flags, tried in order until the kernel accepts one set (it answers
// -EINVAL to a flag it does not know). Each line names the kernel that
// introduced its newest flag. COOP_TASKRUN is left out next to DEFER_TASKRUN
// (Linux 6.18 accepts the pair, but deferred task work never interrupts the
// task anyway, so it would add nothing). R_DISABLED goes only with
// SINGLE_ISSUER, whose owner it lets us choose.
constexpr unsigned sized = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
// TASKRUN_FLAG (5.19, with COOP or DEFER_TASKRUN) has the kernel raise
// IORING_SQ_TASKRUN when task work waits for us: a loop polling before it
// sleeps sees pending completions without entering the kernel.
constexpr unsigned taskrun_flag = IORING_SETUP_TASKRUN_FLAG;
constexpr std::array<unsigned, 6> setup_attempts = {
    // 6.1: completions are posted only when we ask for them, on our thread.
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
        IORING_SETUP_SUBMIT_ALL | taskrun_flag | sized,
    // 6.0
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED | IORING_SETUP_COOP_TASKRUN |
        IORING_SETUP_SUBMIT_ALL | taskrun_flag | sized,
    // 5.19: the first set tried when single_issuer is off.
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL | taskrun_flag | sized,
    // 5.18
    IORING_SETUP_SUBMIT_ALL | sized,
    // 5.6
    sized,
    // 5.1
    0,
};
constexpr std::size_t first_multi_issuer_attempt = 2;

// The value of kernel.io_uring_disabled (0, 1 or 2), or -1 when the sysctl
// does not exist (it appeared in Linux 6.6) or cannot be read.
int read_io_uring_disabled() {
    int fd = ::open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    char text[16] = {};
    ssize_t length = ::read(fd, text, sizeof(text) - 1);
    ::close(fd);
    if (length <= 0 || text[0] < '0' || text[0] > '9') {
        return -1;
    }
    return text[0] - '0';
}

std::string sysctl_advice(int disabled) {
    std::string value = std::to_string(disabled);
    std::string advice = "io_uring is disabled by sysctl kernel.io_uring_disabled=" + value;
    if (disabled == 1) {
        // 1 still lets CAP_SYS_ADMIN and members of kernel.io_uring_group in.
        advice += " (only root and members of kernel.io_uring_group may use it)";
    }
    advice += "; set it to 0 (sysctl -w kernel.io_uring_disabled=0)";
    if (disabled == 1) {
        advice += " or run as a member of kernel.io_uring_group";
    }
    return advice;
}

std::string errno_advice(int error) {
    switch (error) {
        case EPERM:
            // Docker's and containerd's default seccomp profiles (and Kubernetes'
            // RuntimeDefault) dropped the io_uring calls in 2023 and answer EPERM.
            return "the system call was refused, most likely by a seccomp profile (a container "
                   "runtime's default profile blocks io_uring); run with a seccomp profile that "
                   "allows io_uring_setup, io_uring_enter and io_uring_register (for Docker: "
                   "--security-opt seccomp=<profile allowing them>)";
        case ENOSYS:
            return "this kernel has no io_uring (older than Linux 5.1, or built without "
                   "CONFIG_IO_URING), or a sandbox or seccomp profile hides the system call; "
                   "run on a kernel with io_uring (Linux 6.1 or newer recommended)";
        case EACCES:
            return "a Linux security module (SELinux, AppArmor) denied io_uring; allow it in "
                   "the policy for this program";
        case ENOMEM:
            // Before Linux 5.12 ring memory was charged to the locked-memory limit.
            return "the kernel could not allocate the ring; on kernels before 5.12 its memory "
                   "counts against RLIMIT_MEMLOCK, so raise that limit (ulimit -l) or ask for "
                   "fewer sq_entries";
        case EMFILE:
        case ENFILE:
            return "no file descriptor is free for the ring; raise RLIMIT_NOFILE (ulimit -n)";
        case EINVAL:
            return "the kernel rejected every combination of setup flags shardloop tries, down "
                   "to a plain ring; it is probably too old for io_uring (Linux 5.10 or newer is "
                   "needed)";
        default:
            return "see io_uring_setup(2)";
    }
}

}  // namespace

unsigned setup_io_uring(const ReactorOptions& options, io_uring* ring) {
    if (options.sq_entries == 0) {
        throw_errno(-EINVAL, "shardloop: ReactorOptions::sq_entries must be at least 1");
    }
    unsigned cq_entries = options.cq_entries != 0 ? options.cq_entries : 4 * options.sq_entries;
    // The kernel refuses a CQ smaller than the SQ with -EINVAL; do not let
    // that pass for "flag unknown" and fall back to a plain ring.
    cq_entries = std::max(cq_entries, options.sq_entries);

    std::size_t first = options.single_issuer ? 0 : first_multi_issuer_attempt;
    int result = -EINVAL;
    for (std::size_t i = first; i < setup_attempts.size(); ++i) {
        io_uring_params params{};
        params.flags = setup_attempts[i];
        params.cq_entries = cq_entries;
        result = io_uring_queue_init_params(options.sq_entries, ring, &params);
        if (result == 0) {
            return params.flags;
        }
        if (result != -EINVAL) {
            break;
        }
    }
    throw_errno(result, describe_io_uring_setup_failure(result));
}

std::string describe_io_uring_setup_flags(unsigned setup_flags) {
    static constexpr std::pair<unsigned, const char*> known[] = {
        {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
        {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
        {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
    };
    std::string names;
    for (const auto& [flag, name] : known) {
        if ((setup_flags & flag) != 0) {
            names += names.empty() ? "" : "|";
            names += name;
        }
    }
    return names.empty() ? "no setup flags" : names;
}

std::string describe_io_uring_setup_failure(int negative_errno) {
    int error = -negative_errno;
    std::string message = "shardloop: cannot create an event loop: io_uring_setup failed (" +
                          std::generic_category().message(error) + "): ";
    int disabled = read_io_uring_disabled();
    // The sysctl answers EPERM as a seccomp filter does, so check it first:
    // it is the one cause we can prove rather than guess.
    if (disabled > 0 && (error == EPERM || error == EACCES)) {
        return message + sysctl_advice(disabled);
    }
    return message + errno_advice(error);
}

}  // namespace shardloop::detail
