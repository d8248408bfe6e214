#pragma once

// Teardown checks shared by every test: no file descriptor may outlive the
// loop that a test created.

#include <cstddef>

namespace shardloop::testing {

// The number of open file descriptors of this process.
std::size_t open_fd_count();

// Records the open descriptors at construction and, at destruction, fails
// the current test if more are open (an fd leaked).
class FdLeakCheck {
public:
    FdLeakCheck();
    ~FdLeakCheck();
    FdLeakCheck(const FdLeakCheck&) = delete;
    FdLeakCheck& operator=(const FdLeakCheck&) = delete;

private:
    std::size_t _before;
};

}  // namespace shardloop::testing
