#pragma once

// RequestHandler: the routes. Given a complete request, it appends the
// response to the connection's output, or says what the connection must do
// to finish it (send a file's body; gather the metrics from every shard).
//
//   GET /plaintext   200 text/plain "Hello, World!"
//   GET /json        200 application/json {"message":"Hello, World!"}
//   GET /metrics     200 Prometheus text (gathered by the caller)
//   GET <other>      a static file under the root, or 404 without one
//   HEAD <any>       what GET would answer, without the body
//   other methods    405 with "Allow: GET, HEAD"

#include <cstdint>
#include <string>
#include <string_view>

#include "http_parser.hpp"
#include "response_writer.hpp"
#include "static_files.hpp"

namespace shardloop::httpd {

inline constexpr std::string_view plaintext_body = "Hello, World!";
inline constexpr std::string_view json_body = R"({"message":"Hello, World!"})";
inline constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

// The path of a request target: origin-form "/a/b?q" gives "/a/b";
// absolute-form "http://host/a?q" gives "/a" ("/" when it has no path).
// Empty for anything else ("*", a bare word): a bad request.
std::string_view request_path(std::string_view target) noexcept;

// The short text/plain body of an error response ("Not Found\n").
std::string_view error_body(int status) noexcept;

// What handle() did.
struct Handled {
    enum class Kind : uint8_t {
        done,       // the whole response is in the output
        send_file,  // the head is in the output; `file_size` bytes of `file` follow
        metrics,    // nothing written: the caller gathers the metrics and answers
    };
    Kind kind = Kind::done;
    int status = 200;
    UniqueFd file;
    uint64_t file_size = 0;
};

class RequestHandler {
public:
    explicit RequestHandler(StaticFiles files = StaticFiles()) noexcept;

    // Answers `head`, a complete request. `persistence` is what the
    // response's Connection header must say; `date` the cached date;
    // `scratch` a buffer for the file path (its capacity is reused).
    // Allocates nothing for /plaintext and /json.
    Handled handle(const RequestHead& head, Persistence persistence, std::string_view date,
                   std::string& out, std::string& scratch) const;

private:
    StaticFiles _files;
    CannedResponse _plaintext;
    CannedResponse _json;
};

}  // namespace shardloop::httpd
