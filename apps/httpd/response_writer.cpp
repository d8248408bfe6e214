// Writing response heads.

#include "response_writer.hpp"

#include <charconv>

namespace shardloop::httpd {

namespace {

void append_number(std::string& out, uint64_t value) {
    char digits[24];
    auto [end, error] = std::to_chars(digits, digits + sizeof digits, value);
    (void)error;  // 24 digits hold any uint64_t
    out.append(digits, static_cast<std::size_t>(end - digits));
}

void append_status_line(std::string& out, int status) {
    out.append("HTTP/1.1 ");
    append_number(out, static_cast<uint64_t>(status));
    out.push_back(' ');
    out.append(reason_phrase(status));
    out.append("\r\nServer: ");
    out.append(server_name);
    out.append("\r\nDate: ");
}

std::string_view connection_line(Persistence persistence) noexcept {
    switch (persistence) {
        case Persistence::keep_alive:
            return {};
        case Persistence::keep_alive_1_0:
            return "Connection: keep-alive\r\n";
        case Persistence::close:
            return "Connection: close\r\n";
    }
    return {};
}

}  // namespace

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
        case 100:
            return "Continue";
        case 200:
            return "OK";
        case 301:
            return "Moved Permanently";
        case 304:
            return "Not Modified";
        case 400:
            return "Bad Request";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Unknown";
    }
}

void append_head(std::string& out, const ResponseHead& head, std::string_view date) {
    append_status_line(out, head.status);
    out.append(date);
    out.append("\r\n");
    if (!head.content_type.empty()) {
        out.append("Content-Type: ");
        out.append(head.content_type);
        out.append("\r\n");
    }
    out.append("Content-Length: ");
    append_number(out, head.content_length);
    out.append("\r\n");
    if (!head.last_modified.empty()) {
        out.append("Last-Modified: ");
        out.append(head.last_modified);
        out.append("\r\n");
    }
    if (!head.location.empty()) {
        out.append("Location: ");
        out.append(head.location);
        out.append("\r\n");
    }
    if (head.allow_get_head) {
        out.append("Allow: GET, HEAD\r\n");
    }
    out.append(connection_line(head.persistence));
    out.append("\r\n");
}

void append_response(std::string& out, ResponseHead head, std::string_view date,
                     std::string_view body, bool head_only) {
    head.content_length = body.size();
    append_head(out, head, date);
    if (!head_only) {
        out.append(body);
    }
}

CannedResponse::CannedResponse(int status, std::string_view content_type, std::string_view body)
    : _body(body) {
    append_status_line(_before_date, status);
    _after_date = "\r\nContent-Type: ";
    _after_date.append(content_type);
    _after_date.append("\r\nContent-Length: ");
    append_number(_after_date, body.size());
    _after_date.append("\r\n");
}

void CannedResponse::append_to(std::string& out, std::string_view date, Persistence persistence,
                               bool head_only) const {
    out.append(_before_date);
    out.append(date);
    out.append(_after_date);
    out.append(connection_line(persistence));
    out.append("\r\n");
    if (!head_only) {
        out.append(_body);
    }
}

}  // namespace shardloop::httpd
