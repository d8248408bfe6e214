#pragma once

// HTTP dates (RFC 7231 section 7.1.1.1, the IMF-fixdate form:
// "Sun, 06 Nov 1994 08:49:37 GMT", always 29 characters) and the per-shard
// cache of the current one that every response's Date header copies.
// No shardloop dependency: the cache is refreshed by whoever owns it (the
// shard's once-per-second timer, or a test).

#include <array>
#include <cstddef>
#include <ctime>
#include <string_view>

namespace shardloop::httpd {

inline constexpr std::size_t http_date_size = 29;

// Writes the IMF-fixdate of `when` (seconds since the epoch, UTC) into
// `out`, which must hold http_date_size characters; no terminating NUL.
// Returns the written view. Any thread.
std::string_view format_http_date(std::time_t when, char* out) noexcept;

// The current date, formatted once per second rather than per response (as
// nginx does with ngx_cached_http_time). One per shard; touched by that
// shard's thread only.
class DateCache {
public:
    // Starts at `now` (seconds since the epoch).
    explicit DateCache(std::time_t now = std::time(nullptr)) noexcept { update(now); }

    // Formats `now` unless it is the second already cached. Returns whether
    // the text changed.
    bool update(std::time_t now) noexcept {
        if (now == _second) {
            return false;
        }
        _second = now;
        format_http_date(now, _text.data());
        return true;
    }

    // Always http_date_size characters.
    std::string_view value() const noexcept { return {_text.data(), _text.size()}; }

private:
    std::time_t _second = -1;
    std::array<char, http_date_size> _text{};
};

}  // namespace shardloop::httpd
