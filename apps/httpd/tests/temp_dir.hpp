#pragma once

// A temporary directory for the tests' document roots, removed with
// everything in it.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

namespace shardloop::httpd::test_support {

class TempDir {
public:
    TempDir() {
        char pattern[] = "/tmp/httpd-test-XXXXXX";
        const char* made = ::mkdtemp(pattern);
        EXPECT_NE(made, nullptr);
        _path = made != nullptr ? made : "/nonexistent";
        _fd = ::open(_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    ~TempDir() {
        if (_fd >= 0) {
            ::close(_fd);
        }
        std::string command = "rm -rf '" + _path + "'";
        (void)std::system(command.c_str());
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return _path; }
    // The directory, opened O_PATH: what the server's --root becomes.
    int fd() const { return _fd; }

    void write(const std::string& name, std::string_view content) const {
        std::string full = _path + "/" + name;
        int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << full;
        ASSERT_EQ(::write(fd, content.data(), content.size()),
                  static_cast<ssize_t>(content.size()));
        ::close(fd);
    }

    // A file of `size` bytes of letters, written out (no holes).
    void write_sized(const std::string& name, std::size_t size) const {
        std::string chunk(std::size_t{1} << 20, 'x');
        for (std::size_t i = 0; i < chunk.size(); ++i) {
            chunk[i] = static_cast<char>('a' + i % 26);
        }
        std::string full = _path + "/" + name;
        int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << full;
        for (std::size_t done = 0; done < size;) {
            std::size_t n = std::min(chunk.size(), size - done);
            ASSERT_EQ(::write(fd, chunk.data(), n), static_cast<ssize_t>(n));
            done += n;
        }
        ::close(fd);
    }

    void mkdir(const std::string& name) const {
        ASSERT_EQ(::mkdir((_path + "/" + name).c_str(), 0755), 0);
    }

private:
    std::string _path;
    int _fd = -1;
};

}  // namespace shardloop::httpd::test_support
