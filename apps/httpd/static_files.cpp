// Static files: path normalization, the MIME table, openat2.

#include "static_files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>

namespace shardloop::httpd {

namespace {

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

#if defined(__SANITIZE_THREAD__)
#define HTTPD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HTTPD_TSAN 1
#endif
#endif

// ThreadSanitizer models file descriptors, and learns of new ones from the
// calls it intercepts; it does not intercept syscall(SYS_openat2), nor see
// the io_uring closes of the sockets. An openat2 descriptor may then reuse
// the number of a socket another shard sent on, and its close() looks like
// a race with that send(). Under TSan only, the file is opened again
// through /proc/self/fd with open(), which TSan intercepts and records as a
// new descriptor, and the first descriptor is closed behind TSan's back,
// the way it was made.
int announce_to_tsan(int fd) noexcept {
#if defined(HTTPD_TSAN)
    if (fd >= 0) {
        char path[48];
        std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        int copy = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        int saved = errno;
        ::syscall(SYS_close, fd);
        errno = saved;
        return copy;
    }
#endif
    return fd;
}

// openat2(2) with RESOLVE_BENEATH; where the kernel lacks it (before 5.6),
// openat(2), and the lexical normalization alone keeps ".." out.
int open_beneath(int dir, const char* path) noexcept {
    static std::atomic<bool> have_openat2{true};
    constexpr int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (have_openat2.load(std::memory_order_relaxed)) {
        open_how how{};
        how.flags = flags;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = ::syscall(SYS_openat2, dir, path, &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS) {
            return announce_to_tsan(static_cast<int>(fd));
        }
        have_openat2.store(false, std::memory_order_relaxed);
    }
    return ::openat(dir, path, flags);
}

int status_for_errno(int error) noexcept {
    switch (error) {
        case EACCES:
        case EPERM:
        case EXDEV:  // RESOLVE_BENEATH: a link leading out of the root
        case ELOOP:
            return 403;
        case EMFILE:
        case ENFILE:
        case ENOMEM:
            return 503;
        default:
            return 404;  // ENOENT, ENOTDIR, ENAMETOOLONG...
    }
}

}  // namespace

PathStatus normalize_path(std::string_view path, std::string& out, bool& trailing_slash) {
    out.clear();
    trailing_slash = false;
    if (path.empty() || path.front() != '/') {
        return PathStatus::bad_request;
    }
    // First percent-decode the whole path into `out`.
    bool saw_nul = false;
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%') {
            if (path.size() - i < 3) {
                return PathStatus::bad_request;
            }
            int high = hex_value(path[i + 1]);
            int low = hex_value(path[i + 2]);
            if (high < 0 || low < 0) {
                return PathStatus::bad_request;
            }
            c = static_cast<char>(high * 16 + low);
            i += 2;
        }
        saw_nul = saw_nul || c == '\0';
        out.push_back(c);
    }
    if (saw_nul) {
        return PathStatus::not_found;
    }
    // Then resolve the segments in place: the result is never longer than
    // what has been read, so writing (at `w`) never overtakes reading (at
    // `r`).
    const std::size_t n = out.size();
    std::size_t w = 0;
    std::size_t r = 0;
    bool last_was_dots = false;
    while (r < n) {
        while (r < n && out[r] == '/') {
            ++r;
        }
        std::size_t start = r;
        while (r < n && out[r] != '/') {
            ++r;
        }
        std::string_view segment(out.data() + start, r - start);
        last_was_dots = segment == "." || segment == "..";
        if (segment.empty() || segment == ".") {
            continue;
        }
        if (segment == "..") {
            if (w == 0) {
                return PathStatus::forbidden;
            }
            std::size_t slash = std::string_view(out.data(), w).rfind('/');
            w = slash == std::string_view::npos ? 0 : slash;
            continue;
        }
        if (w > 0) {
            out[w++] = '/';
        }
        for (std::size_t k = 0; k < segment.size(); ++k) {
            out[w + k] = out[start + k];
        }
        w += segment.size();
    }
    trailing_slash = (n > 0 && out[n - 1] == '/') || last_was_dots;
    out.resize(w);
    return PathStatus::ok;
}

std::string_view content_type_for(std::string_view path) noexcept {
    struct Entry {
        std::string_view extension;
        std::string_view type;
    };
    static constexpr Entry table[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"xml", "application/xml"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"avif", "image/avif"},
        {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
        {"mp3", "audio/mpeg"},
    };
    std::size_t slash = path.rfind('/');
    std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    std::size_t dot = name.rfind('.');
    if (dot != std::string_view::npos && dot + 1 < name.size()) {
        std::string_view extension = name.substr(dot + 1);
        for (const Entry& entry : table) {
            if (entry.extension.size() != extension.size()) {
                continue;
            }
            bool same = true;
            for (std::size_t i = 0; i < extension.size() && same; ++i) {
                char c = extension[i];
                c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
                same = c == entry.extension[i];
            }
            if (same) {
                return entry.type;
            }
        }
    }
    return "application/octet-stream";
}

StaticFile StaticFiles::open(std::string_view path, std::string& scratch) const {
    StaticFile result;
    if (_root < 0) {
        return result;  // 404
    }
    bool trailing_slash = false;
    switch (normalize_path(path, scratch, trailing_slash)) {
        case PathStatus::ok:
            break;
        case PathStatus::bad_request:
            result.status = 400;
            return result;
        case PathStatus::forbidden:
            result.status = 403;
            return result;
        case PathStatus::not_found:
            result.status = 404;
            return result;
    }
    if (scratch.empty()) {
        scratch.push_back('.');  // (not = ".", which trips a GCC 12 -Wrestrict false positive)
    }
    UniqueFd fd(open_beneath(_root, scratch.c_str()));
    if (!fd) {
        result.status = status_for_errno(errno);
        return result;
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        result.status = status_for_errno(errno);
        return result;
    }
    if (S_ISDIR(info.st_mode)) {
        if (!trailing_slash && scratch != ".") {
            result.status = 301;  // relative links in its index need the '/'
            return result;
        }
        UniqueFd index(open_beneath(fd.get(), "index.html"));
        if (!index) {
            result.status = errno == ENOENT ? 403 : status_for_errno(errno);
            return result;
        }
        if (::fstat(index.get(), &info) != 0) {
            result.status = status_for_errno(errno);
            return result;
        }
        fd = std::move(index);
        scratch.append("/index.html");
    }
    if (!S_ISREG(info.st_mode)) {
        result.status = 403;
        return result;
    }
    result.status = 200;
    result.fd = std::move(fd);
    result.size = static_cast<uint64_t>(info.st_size);
    result.mtime = static_cast<int64_t>(info.st_mtim.tv_sec);
    result.content_type = content_type_for(scratch);
    return result;
}

}  // namespace shardloop::httpd
