#pragma once

// Static files under a root directory: the request path made safe, then
// opened beneath the root.
//
// Safety comes in two layers. normalize_path() percent-decodes the path
// and resolves "." and ".." lexically, refusing a path that would climb
// above the root (403) or that holds a NUL byte (404). The file is then
// opened with openat2(RESOLVE_BENEATH) relative to the root's descriptor,
// so that no symbolic link inside the root can lead outside it either (the
// kernel refuses with EXDEV: 403). Only regular files are served; a
// directory serves its index.html (403 without one: no listings); FIFOs,
// devices and sockets are refused (403). Files are opened O_NONBLOCK, so
// that a FIFO can never block the shard.

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "net/unique_fd.hpp"

namespace shardloop::httpd {

using UniqueFd = shardloop::detail::UniqueFd;

enum class PathStatus : uint8_t { ok, bad_request, forbidden, not_found };

// Turns an absolute request path (no query) into a path relative to the
// root: percent-decoded ("%2F" becomes a separator, as nginx decodes it),
// empty and "." segments dropped, ".." resolved lexically. `out` gets the
// relative path, "" for the root itself; `trailing_slash` whether the path
// names a directory ("/docs/"). Returns bad_request for a path that does
// not start with '/' or has a malformed escape, forbidden when ".." would
// leave the root, not_found for a decoded NUL byte (no file has one).
PathStatus normalize_path(std::string_view path, std::string& out, bool& trailing_slash);

// The Content-Type for a file name, by extension (a small table, with
// charset=utf-8 for text); application/octet-stream for the rest.
std::string_view content_type_for(std::string_view path) noexcept;

struct StaticFile {
    int status = 404;  // 200 (fd is open), 301 (directory without '/'), 400, 403, 404, 503
    UniqueFd fd;
    uint64_t size = 0;
    int64_t mtime = 0;  // seconds since the epoch
    std::string_view content_type;
};

class StaticFiles {
public:
    // `root_fd` is a directory descriptor the caller keeps open (O_PATH
    // will do), or -1 to serve no files (every open() is then 404).
    explicit StaticFiles(int root_fd = -1) noexcept : _root(root_fd) {}

    bool enabled() const noexcept { return _root >= 0; }

    // Opens the file an absolute request path names. `scratch` holds the
    // normalized path meanwhile (its capacity is reused). A blocking call:
    // opening and fstat-ing a file in the page cache takes microseconds,
    // which is why nginx does it on its event loop too.
    StaticFile open(std::string_view path, std::string& scratch) const;

private:
    int _root;
};

}  // namespace shardloop::httpd
