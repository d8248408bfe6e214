#include "support/leak_check.hpp"

#include <dirent.h>
#include <gtest/gtest.h>

namespace shardloop::testing {

std::size_t open_fd_count() {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
        ADD_FAILURE() << "cannot open /proc/self/fd";
        return 0;
    }
    std::size_t count = 0;
    while (dirent* entry = readdir(dir)) {
        if (entry->d_name[0] != '.') {
            ++count;
        }
    }
    closedir(dir);
    return count - 1;  // the descriptor opendir itself holds
}

FdLeakCheck::FdLeakCheck() : _before(open_fd_count()) {}

FdLeakCheck::~FdLeakCheck() { EXPECT_EQ(open_fd_count(), _before) << "file descriptors leaked"; }

}  // namespace shardloop::testing
