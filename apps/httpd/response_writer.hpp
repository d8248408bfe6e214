#pragma once

// Response heads and whole responses, appended to a connection's output
// buffer. Appending to a std::string whose capacity has grown to the usual
// batch size allocates nothing, which keeps the /plaintext path free of
// allocations: its response is a CannedResponse, built once, with the
// cached date and the connection header spliced in.

#include <cstdint>
#include <string>
#include <string_view>

namespace shardloop::httpd {

inline constexpr std::string_view server_name = "shardloop";

// What the Connection header says, from what the request allowed and
// whether the server will close.
enum class Persistence : uint8_t {
    keep_alive,      // HTTP/1.1 keep-alive: no header needed
    keep_alive_1_0,  // HTTP/1.0 asked for keep-alive: "Connection: keep-alive"
    close,           // "Connection: close", and the server closes after it
};

// The reason phrase of a status code this server sends ("Not Found");
// "Unknown" for any other.
std::string_view reason_phrase(int status) noexcept;

struct ResponseHead {
    int status = 200;
    std::string_view content_type;  // empty: no Content-Type
    uint64_t content_length = 0;
    Persistence persistence = Persistence::keep_alive;
    std::string_view last_modified;  // an HTTP date, or empty
    std::string_view location;       // for redirects, or empty
    bool allow_get_head = false;     // "Allow: GET, HEAD" (405 responses)
};

// Appends the status line and headers (Server, Date, and those of `head`),
// ending with the empty line. `date` is the cached IMF-fixdate.
void append_head(std::string& out, const ResponseHead& head, std::string_view date);

// append_head, then `body` unless `head_only` (a HEAD request: the same
// headers, Content-Length included, and no body). Content-Length is
// body.size().
void append_response(std::string& out, ResponseHead head, std::string_view date,
                     std::string_view body, bool head_only);

// A fixed response (status, type, body) prepared once: appending it is a
// handful of copies, the date and the Connection header spliced in.
class CannedResponse {
public:
    CannedResponse(int status, std::string_view content_type, std::string_view body);

    void append_to(std::string& out, std::string_view date, Persistence persistence,
                   bool head_only) const;

private:
    std::string _before_date;  // "HTTP/1.1 200 OK\r\nServer: ...\r\nDate: "
    std::string _after_date;   // "\r\nContent-Type: ...\r\nContent-Length: N\r\n"
    std::string _body;
};

}  // namespace shardloop::httpd
