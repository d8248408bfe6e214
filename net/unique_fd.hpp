#pragma once

// An owning file descriptor. Standard headers only, so that code built
// apart from the library (apps/httpd's request path, which its fuzzer
// compiles alone) can use it too.

#include <unistd.h>

#include <utility>

namespace shardloop::detail {

// Owns an fd until release(); closes it otherwise.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) noexcept : _fd(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : _fd(std::exchange(other._fd, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        reset(std::exchange(other._fd, -1));
        return *this;
    }
    ~UniqueFd() { reset(); }

    int get() const noexcept { return _fd; }
    int release() noexcept { return std::exchange(_fd, -1); }
    void reset(int fd = -1) noexcept {
        if (_fd >= 0) {
            ::close(_fd);
        }
        _fd = fd;
    }
    explicit operator bool() const noexcept { return _fd >= 0; }

private:
    int _fd = -1;
};

}  // namespace shardloop::detail
