#pragma once

// Creating the io_uring ring of the reactor backend: which setup flags to
// ask for, how to fall back when the kernel does not know one, and how to
// turn a refusal into one message a user can act on. Part of the io_uring
// backend (runtime/io_uring_reactor.cpp); this header keeps liburing's types
// opaque, so nothing that includes it sees liburing.

#include <string>

#include "runtime/reactor.hpp"

struct io_uring;

namespace shardloop::detail {

// Initialises `ring` with the best setup flags this kernel accepts for
// `options` and returns them (IORING_SETUP_*). With single_issuer the ring is
// created disabled (IORING_SETUP_R_DISABLED): it must be enabled, from the
// thread that will submit, before the first io_uring_enter. Throws
// std::system_error, errno kept, whose what() names the cause and the remedy
// when no ring can be created (see describe_io_uring_setup_failure).
unsigned setup_io_uring(const ReactorOptions& options, io_uring* ring);

// The setup flags that matter to a reader of logs, as "SINGLE_ISSUER|...",
// or "no setup flags".
std::string describe_io_uring_setup_flags(unsigned setup_flags);

// The text of the std::system_error thrown when no ring can be created:
// "shardloop: cannot create an event loop: io_uring_setup failed (<strerror>):
// <cause>; <what to do>". `negative_errno` is what io_uring_setup returned.
// Reads /proc/sys/kernel/io_uring_disabled (Linux 6.6+) to tell a sysctl ban
// from a seccomp refusal.
std::string describe_io_uring_setup_failure(int negative_errno);

}  // namespace shardloop::detail
